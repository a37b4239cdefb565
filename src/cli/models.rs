//! `models`: the current catalog in the terminal (or as the JSON of `GET /api/models`).

use crate::catalog::{CatalogModel, CatalogPage, CatalogParams};
use crate::cli::{print_stdout, thousands, DatabaseSession};
use crate::config::Config;
use crate::store::catalog;

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Only this source: models_dev, openrouter, huggingface, artificial_analysis.
    #[arg(long)]
    source: Option<String>,
    /// Only this provider (exact, as stored: `openai`, `meta-llama`, …).
    #[arg(long)]
    provider: Option<String>,
    /// A case-insensitive substring of the model id or name.
    #[arg(short, long = "query", value_name = "TEXT")]
    q: Option<String>,
    /// input_price, output_price, context_length, intelligence_index, downloads (default: by
    /// source, provider and id). Prices sort cheapest first, the others biggest first; NULLs last.
    #[arg(long)]
    sort: Option<String>,
    /// asc or desc, to override the sort's natural order.
    #[arg(long)]
    order: Option<String>,
    /// Models per page (1 to 1000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// The cursor printed under the previous page.
    #[arg(long)]
    after: Option<String>,
    /// Print `{"models": [...], "next_after": ...}` like the HTTP API.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: Config, args: ModelsArgs) -> anyhow::Result<i32> {
    let params = CatalogParams {
        source: args.source,
        provider: args.provider,
        q: args.q,
        sort: args.sort,
        order: args.order,
        limit: Some(args.limit.to_string()),
        after: args.after,
    };
    let query = match params.validate() {
        Ok(query) => query,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(2);
        }
    };
    let session = DatabaseSession::open(&config).await?;
    let page = catalog::page(&session.database, &query).await;
    session.close().await;
    let page = page?;
    if args.json {
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&page)?))?;
    } else {
        print_stdout(&render_table(&page))?;
    }
    Ok(0)
}

/// Column title, cap on its width, whether it is right-aligned, and the cell of a model.
type Column = (&'static str, usize, bool, fn(&CatalogModel) -> String);

const COLUMNS: [Column; 9] = [
    ("source", 19, false, |m| m.source.clone()),
    ("provider", 20, false, |m| m.provider.clone()),
    ("model_id", 48, false, |m| m.model_id.clone()),
    ("name", 32, false, |m| m.name.clone().unwrap_or_default()),
    ("context", 10, true, |m| number(m.context_length)),
    ("input $/M", 12, true, |m| text(&m.input_price_per_mtok)),
    ("output $/M", 12, true, |m| text(&m.output_price_per_mtok)),
    ("index", 8, true, |m| text(&m.intelligence_index)),
    ("downloads", 13, true, |m| number(m.downloads)),
];

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".into())
}

fn number(value: Option<i64>) -> String {
    value.map(thousands).unwrap_or_else(|| "-".into())
}

/// Cuts a cell to `width` characters, marking the cut.
fn fit(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        return cell.to_string();
    }
    let mut cut: String = cell.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A table sized to the page's content (each column capped), then how to get the next page.
pub fn render_table(page: &CatalogPage) -> String {
    if page.models.is_empty() {
        return "no models match (has a sync succeeded yet? `model-lens-sync syncs`)\n".into();
    }
    let cells: Vec<Vec<String>> = page
        .models
        .iter()
        .map(|model| {
            COLUMNS
                .iter()
                .map(|(_, cap, _, cell)| fit(&cell(model), *cap))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (title, _, _, _))| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: Vec<String>| -> String {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(&COLUMNS)
            .map(|((cell, width), (_, _, right, _))| {
                let pad = " ".repeat(width - cell.chars().count());
                if *right {
                    format!("{pad}{cell}")
                } else {
                    format!("{cell}{pad}")
                }
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(COLUMNS.iter().map(|(title, ..)| title.to_string()).collect());
    for row in cells {
        out.push_str(&line(row));
    }
    match &page.next_after {
        Some(cursor) => out.push_str(&format!("{} models; more with --after {cursor}\n", page.models.len())),
        None => out.push_str(&format!("{} models\n", page.models.len())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_at_a_glance_and_long_cells_are_cut() {
        assert_eq!(number(Some(1_234_567)), "1,234,567");
        assert_eq!(number(Some(999)), "999");
        assert_eq!(number(Some(-1000)), "-1,000");
        assert_eq!(number(None), "-");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
