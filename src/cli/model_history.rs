//! `history --source S [--provider P] MODEL_ID`: one model's versions with their validity, its
//! price timeline, its volatile values and its changes.

use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::cli::changes::{describe, expiry_note, notes};
use crate::cli::DatabaseSession;
use crate::config::Config;
use crate::model::Source;
use crate::store::changes::{self, ModelHistory, VersionRecord};

/// Volatile points shown on a terminal (the JSON has them all).
const VOLATILE_POINTS_SHOWN: usize = 12;

/// Exit code 0 when the model has a history, 1 when the store never listed it.
pub async fn run(
    config: Config,
    source: Source,
    provider: Option<String>,
    model_id: String,
    json: bool,
) -> anyhow::Result<i32> {
    let session = DatabaseSession::open(&config).await?;
    let result = changes::model_history(&session.database, source, provider.as_deref(), &model_id).await;
    session.close().await;
    let histories = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&histories)?);
        return Ok(if histories.is_empty() { 1 } else { 0 });
    }
    if histories.is_empty() {
        println!(
            "{source} never listed {}{model_id} (ids are the source's own; `model-lens-sync changes` shows recent ones)",
            provider.map(|p| format!("{p}/")).unwrap_or_default()
        );
        return Ok(1);
    }
    let today = Utc::now().date_naive();
    for history in &histories {
        print!("{}", render(history, today));
    }
    Ok(0)
}

fn price(value: Option<Decimal>) -> String {
    value.map_or_else(|| "–".to_string(), |value| value.normalize().to_string())
}

/// The terminal view of one model key's history.
pub fn render(history: &ModelHistory, today: NaiveDate) -> String {
    let latest = history.versions.last();
    let mut out = format!(
        "{} {} / {} — {}",
        history.source,
        if history.provider.is_empty() {
            "(no provider)"
        } else {
            &history.provider
        },
        history.model_id,
        if history.current {
            "current".to_string()
        } else {
            format!(
                "not current ({})",
                latest.and_then(|v| v.end_reason.as_deref()).unwrap_or("closed")
            )
        }
    );
    if let Some(latest) = latest {
        if latest.status.as_deref() == Some("deprecated") {
            out.push_str(" [deprecated]");
        }
        if let Some(note) = latest.expires_on.and_then(|date| expiry_note(date, today)) {
            out.push_str(&format!(" [{note}]"));
        }
    }
    out.push_str("\n\nversions\n");
    out.push_str(&format!(
        "  {:<24}  {:<24}  {:<13}  {:<28}  {:>9}  {:>8}  {:>8}  {:>8}  {:>8}  {}\n",
        "VALID FROM", "VALID TO", "ENDED", "NAME", "CONTEXT", "INPUT", "OUTPUT", "C.READ", "C.WRITE", "STATUS"
    ));
    for version in &history.versions {
        out.push_str(&format!(
            "  {:<24}  {:<24}  {:<13}  {:<28}  {:>9}  {:>8}  {:>8}  {:>8}  {:>8}  {}\n",
            format!(
                "#{} {}",
                version.valid_from_sync,
                version.valid_from.format("%Y-%m-%d %H:%M")
            ),
            match (version.valid_to_sync, version.valid_to) {
                (Some(sync), Some(at)) => format!("#{sync} {}", at.format("%Y-%m-%d %H:%M")),
                (Some(sync), None) => format!("#{sync}"),
                _ => "current".into(),
            },
            version.end_reason.as_deref().unwrap_or(""),
            version.name.as_deref().unwrap_or("–"),
            version.context_length.map_or("–".into(), |v| v.to_string()),
            price(version.input_price_per_mtok),
            price(version.output_price_per_mtok),
            price(version.cache_read_price_per_mtok),
            price(version.cache_write_price_per_mtok),
            version.status.as_deref().unwrap_or(""),
        ));
    }
    let timeline = price_timeline(&history.versions);
    if !timeline.is_empty() {
        out.push_str("\nprice timeline (USD per million tokens)\n");
        for line in timeline {
            out.push_str(&format!("  {line}\n"));
        }
    }
    let points: Vec<_> = history
        .volatile
        .iter()
        .filter(|point| point.downloads.is_some() || point.likes.is_some() || point.volatile.is_some())
        .collect();
    if !points.is_empty() {
        out.push_str("\nvolatile values (written when they move)\n");
        let skipped = points.len().saturating_sub(VOLATILE_POINTS_SHOWN);
        if skipped > 0 {
            out.push_str(&format!("  … {skipped} earlier (--json has them all)\n"));
        }
        for point in &points[skipped..] {
            let mut parts = Vec::new();
            if let Some(downloads) = point.downloads {
                parts.push(format!("downloads {downloads}"));
            }
            if let Some(likes) = point.likes {
                parts.push(format!("likes {likes}"));
            }
            if point.downloads.is_none() && point.likes.is_none() {
                parts.push(crate::cli::changes::shown(point.volatile.as_ref()));
            }
            out.push_str(&format!(
                "  #{} {}  {}\n",
                point.sync_id,
                point.synced_at.format("%Y-%m-%d"),
                parts.join(", ")
            ));
        }
    }
    if !history.changes.is_empty() {
        out.push_str("\nchanges\n");
        for change in &history.changes {
            let mut line = format!("  #{} {:<10} {}", change.sync_id, change.kind, describe(change));
            for note in notes(change, today).into_iter().filter(|n| n.starts_with("HOLD")) {
                line.push_str(&format!("  [{note}]"));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// One line per version whose prices differ from the previous version's (the first always).
pub fn price_timeline(versions: &[VersionRecord]) -> Vec<String> {
    let prices = |v: &VersionRecord| {
        (
            v.input_price_per_mtok.map(|p| p.normalize()),
            v.output_price_per_mtok.map(|p| p.normalize()),
            v.cache_read_price_per_mtok.map(|p| p.normalize()),
            v.cache_write_price_per_mtok.map(|p| p.normalize()),
            v.price_tiers.clone(),
        )
    };
    let mut lines = Vec::new();
    let mut previous = None;
    for version in versions {
        let current = prices(version);
        if previous.as_ref() == Some(&current) {
            continue;
        }
        let mut line = format!(
            "{} (#{})  input {}  output {}  cache read {}  cache write {}",
            version.valid_from.format("%Y-%m-%d"),
            version.valid_from_sync,
            price(version.input_price_per_mtok),
            price(version.output_price_per_mtok),
            price(version.cache_read_price_per_mtok),
            price(version.cache_write_price_per_mtok),
        );
        if let Some(tiers) = version.price_tiers.as_ref().and_then(|t| t.as_array()) {
            for tier in tiers {
                let get = |key: &str| tier.get(key).and_then(|v| v.as_str()).unwrap_or("–");
                line.push_str(&format!(
                    "  | from {} tokens: input {} output {}",
                    tier.get("min_context_tokens")
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    get("input"),
                    get("output")
                ));
            }
        }
        lines.push(line);
        previous = Some(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn version(from: i64, to: Option<i64>, input: &str) -> VersionRecord {
        VersionRecord {
            valid_from_sync: from,
            valid_from: Utc.with_ymd_and_hms(2026, 11, from as u32, 2, 0, 0).unwrap(),
            valid_to_sync: to,
            valid_to: to.map(|to| Utc.with_ymd_and_hms(2026, 11, to as u32, 2, 0, 0).unwrap()),
            end_reason: to.map(|_| "replaced".into()),
            name: Some("Opus".into()),
            context_length: Some(200000),
            max_output_tokens: None,
            input_price_per_mtok: Some(input.parse().unwrap()),
            output_price_per_mtok: Some("75".parse().unwrap()),
            cache_read_price_per_mtok: None,
            cache_write_price_per_mtok: None,
            price_tiers: None,
            input_modalities: None,
            output_modalities: None,
            supports_tools: None,
            supports_reasoning: None,
            open_weights: None,
            release_date: None,
            intelligence_index: None,
            intelligence_index_version: None,
            status: None,
            expires_on: None,
            data: serde_json::json!({}),
        }
    }

    #[test]
    fn the_price_timeline_lists_only_versions_whose_prices_moved() {
        let versions = [
            version(1, Some(3), "15"),
            version(3, Some(5), "15.0"),
            version(5, None, "12"),
        ];
        assert_eq!(
            price_timeline(&versions),
            [
                "2026-11-01 (#1)  input 15  output 75  cache read –  cache write –",
                "2026-11-05 (#5)  input 12  output 75  cache read –  cache write –",
            ]
        );
    }

    #[test]
    fn the_view_names_the_key_its_versions_and_flags_deprecation() {
        let mut latest = version(5, None, "12");
        latest.status = Some("deprecated".into());
        latest.expires_on = NaiveDate::from_ymd_opt(2026, 12, 10);
        let history = ModelHistory {
            source: "models_dev".into(),
            provider: "anthropic".into(),
            model_id: "claude-opus-4".into(),
            current: true,
            versions: vec![version(1, Some(5), "15"), latest],
            volatile: Vec::new(),
            changes: Vec::new(),
        };
        let text = render(&history, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
        assert!(
            text.starts_with(
                "models_dev anthropic / claude-opus-4 — current [deprecated] [expires 2026-12-10 (in 10 days)]"
            ),
            "{text}"
        );
        assert!(text.contains("#1 2026-11-01 02:00"), "{text}");
        assert!(text.contains("current"), "{text}");
        assert!(text.contains("price timeline"), "{text}");
    }
}
