//! Reads of the current catalog: one page for `GET /api/models` and `models`, a source's rows
//! streamed in chunks for the Redis publisher, and the size of each source's catalog.
//!
//! "Current" is defined once, in [`CURRENT_CATALOG`]: for each source, the rows of its latest
//! successful sync in a finished sync. Every query here reads through that CTE, so switching
//! to another storage of the current state changes that constant only.

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Portal, Row, Transaction};

use crate::catalog::{CatalogModel, CatalogPage, CatalogQuery, Cursor, Order, SortKey};
use crate::model::Source;
use crate::store::{Database, StoreError};

/// `catalog`: the current rows with the columns of [`CatalogModel`]. A source whose latest
/// success is older than a failed or skipped sync keeps that success's rows (its last known
/// state). Syncs still running are not read: their sources may still be writing.
const CURRENT_CATALOG: &str = "
WITH current_syncs AS (
    SELECT DISTINCT ON (ss.source) ss.source, ss.sync_id, ss.models_stored
      FROM model_sync_sources ss
      JOIN model_syncs s ON s.id = ss.sync_id
     WHERE ss.status = 'success' AND s.status <> 'running'
     ORDER BY ss.source, ss.sync_id DESC
),
catalog AS (
    SELECT m.source, m.provider, m.model_id, m.name, m.context_length, m.max_output_tokens,
           m.input_price_per_mtok, m.output_price_per_mtok, m.cache_read_price_per_mtok,
           m.cache_write_price_per_mtok, m.price_tiers, m.input_modalities, m.output_modalities,
           m.supports_tools, m.supports_reasoning, m.open_weights, m.release_date, m.status,
           m.expires_on, m.downloads, m.likes, m.intelligence_index, m.intelligence_index_version,
           m.sync_id, m.synced_at
      FROM model_snapshots m
      JOIN current_syncs c ON c.sync_id = m.sync_id AND c.source = m.source
)";

/// The select list that turns a `catalog` row into a [`CatalogModel`] (numerics as text, so
/// they reach the reader exactly as PostgreSQL holds them).
const MODEL_COLUMNS: &str = "source, provider, model_id, name, context_length, max_output_tokens,
    input_price_per_mtok::text, output_price_per_mtok::text, cache_read_price_per_mtok::text,
    cache_write_price_per_mtok::text, price_tiers, input_modalities, output_modalities,
    supports_tools, supports_reasoning, open_weights, release_date, status, expires_on,
    downloads, likes, intelligence_index::text, intelligence_index_version, sync_id, synced_at";

fn model_from_row(row: &Row) -> CatalogModel {
    CatalogModel {
        source: row.get(0),
        provider: row.get(1),
        model_id: row.get(2),
        name: row.get(3),
        context_length: row.get(4),
        max_output_tokens: row.get(5),
        input_price_per_mtok: row.get(6),
        output_price_per_mtok: row.get(7),
        cache_read_price_per_mtok: row.get(8),
        cache_write_price_per_mtok: row.get(9),
        price_tiers: row.get(10),
        input_modalities: row.get(11),
        output_modalities: row.get(12),
        supports_tools: row.get(13),
        supports_reasoning: row.get(14),
        open_weights: row.get(15),
        release_date: row.get(16),
        status: row.get(17),
        expires_on: row.get(18),
        downloads: row.get(19),
        likes: row.get(20),
        intelligence_index: row.get(21),
        intelligence_index_version: row.get(22),
        sync_id: row.get(23),
        synced_at: row.get(24),
    }
}

/// The sort column and the SQL type its cursor value is cast to; `None` for the key order.
/// Qualified: in `ORDER BY`, a bare name would mean the output column, which is the text form
/// of the number (and `140` < `15` as text).
fn sort_column(sort: SortKey) -> Option<(&'static str, &'static str)> {
    match sort {
        SortKey::Key => None,
        SortKey::InputPrice => Some(("catalog.input_price_per_mtok", "numeric")),
        SortKey::OutputPrice => Some(("catalog.output_price_per_mtok", "numeric")),
        SortKey::ContextLength => Some(("catalog.context_length", "bigint")),
        SortKey::IntelligenceIndex => Some(("catalog.intelligence_index", "numeric")),
        SortKey::Downloads => Some(("catalog.downloads", "bigint")),
    }
}

/// Escapes `%`, `_` and `\` so that `q` is matched literally by `ILIKE`.
fn like_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Builds the page query: filters, the keyset condition after the cursor, the order (NULLs
/// last in both directions, ties by key ascending) and `limit + 1` rows to know whether
/// another page follows. Only column names chosen by this code are spliced into the text;
/// every value is a parameter.
fn page_sql(query: &CatalogQuery) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut param = |value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        format!("${}", params.len())
    };
    let mut conditions = Vec::new();
    if let Some(source) = query.source {
        conditions.push(format!("source = {}", param(Box::new(source.as_str().to_string()))));
    }
    if let Some(provider) = &query.provider {
        conditions.push(format!("provider = {}", param(Box::new(provider.clone()))));
    }
    if let Some(q) = &query.q {
        let pattern = param(Box::new(like_pattern(q)));
        conditions.push(format!("(model_id ILIKE {pattern} OR name ILIKE {pattern})"));
    }
    let column = sort_column(query.sort);
    if let Some(cursor) = &query.after {
        let (source, provider, model_id) = &cursor.key;
        let key = format!(
            "(source, provider, model_id) > ({}, {}, {})",
            param(Box::new(source.clone())),
            param(Box::new(provider.clone())),
            param(Box::new(model_id.clone()))
        );
        let condition = match (column, &cursor.value) {
            (None, _) => key,
            (Some((column, _)), None) => format!("({column} IS NULL AND {key})"),
            (Some((column, sql_type)), Some(value)) => {
                let value = format!("{}::text::{sql_type}", param(Box::new(value.clone())));
                let beyond = if query.order == Order::Asc { ">" } else { "<" };
                format!("({column} {beyond} {value} OR ({column} = {value} AND {key}) OR {column} IS NULL)")
            }
        };
        conditions.push(condition);
    }
    let order = match column {
        None => "source, provider, model_id".to_string(),
        Some((column, _)) => {
            let direction = if query.order == Order::Asc { "ASC" } else { "DESC" };
            format!("{column} {direction} NULLS LAST, source, provider, model_id")
        }
    };
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let limit = param(Box::new(i64::from(query.limit) + 1));
    let sql = format!("{CURRENT_CATALOG} SELECT {MODEL_COLUMNS} FROM catalog {filter} ORDER BY {order} LIMIT {limit}");
    (sql, params)
}

/// One page of the current catalog and the cursor of the next.
pub async fn page(database: &Database, query: &CatalogQuery) -> Result<CatalogPage, StoreError> {
    let client = database.pool.get().await?;
    let (sql, params) = page_sql(query);
    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&sql, &params).await?;
    let mut models: Vec<CatalogModel> = rows.iter().map(model_from_row).collect();
    let more = models.len() > query.limit as usize;
    models.truncate(query.limit as usize);
    let next_after = more
        .then(|| models.last())
        .flatten()
        .map(|last| Cursor::after(last, query.sort, query.order).encode());
    Ok(CatalogPage { models, next_after })
}

/// A source's catalog: its rows, the sync they come from and when it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCatalog {
    pub source: Source,
    pub sync_id: i64,
    pub synced_at: DateTime<Utc>,
    pub models: i64,
}

/// The size of each source's current catalog, as counted in the database when its sync ended
/// (cheap: no scan of the rows). Sources that never succeeded are absent.
pub async fn source_sizes(database: &Database) -> Result<Vec<SourceCatalog>, StoreError> {
    let client = database.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "{CURRENT_CATALOG} SELECT c.source, c.sync_id, s.started_at, c.models_stored
                   FROM current_syncs c JOIN model_syncs s ON s.id = c.sync_id ORDER BY c.source"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some(SourceCatalog {
                source: Source::parse(row.get(0))?,
                sync_id: row.get(1),
                synced_at: row.get(2),
                models: row.get(3),
            })
        })
        .collect())
}

/// A source's current rows, read through a portal a chunk at a time, so that memory stays
/// bounded by the chunk size whatever the size of the source. Lives inside a transaction
/// (a portal does); a `REPEATABLE READ` one gives a consistent view for the whole read.
pub struct SourceRows<'a> {
    transaction: &'a Transaction<'a>,
    portal: Portal,
    chunk: i32,
}

impl<'a> SourceRows<'a> {
    pub async fn open(transaction: &'a Transaction<'a>, source: Source, chunk: usize) -> Result<Self, StoreError> {
        let statement = transaction
            .prepare(&format!(
                "{CURRENT_CATALOG} SELECT {MODEL_COLUMNS} FROM catalog WHERE source = $1"
            ))
            .await?;
        let portal = transaction.bind(&statement, &[&source.as_str()]).await?;
        Ok(SourceRows {
            transaction,
            portal,
            chunk: i32::try_from(chunk.max(1)).unwrap_or(i32::MAX),
        })
    }

    /// The next rows; empty when the source is exhausted.
    pub async fn next_chunk(&mut self) -> Result<Vec<CatalogModel>, StoreError> {
        let rows = self.transaction.query_portal(&self.portal, self.chunk).await?;
        Ok(rows.iter().map(model_from_row).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogParams;

    fn query(pairs: &[(&str, &str)]) -> CatalogQuery {
        CatalogParams::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(like_pattern("gpt-4"), "%gpt-4%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn values_are_parameters_and_nulls_sort_last() {
        let cursor = Cursor {
            sort: SortKey::Downloads,
            order: Order::Desc,
            value: Some("42".into()),
            key: ("huggingface".into(), "x'); DROP TABLE y; --".into(), "m".into()),
        };
        let mut query = query(&[("sort", "downloads"), ("provider", "o'brien"), ("q", "llama")]);
        query.after = Some(cursor);
        let (sql, params) = page_sql(&query);
        assert!(!sql.contains("o'brien") && !sql.contains("DROP TABLE"), "{sql}");
        assert!(
            sql.contains("catalog.downloads DESC NULLS LAST, source, provider, model_id"),
            "{sql}"
        );
        assert!(sql.contains("catalog.downloads < $"), "{sql}");
        assert_eq!(params.len(), 7, "provider, q, three key parts, value, limit: {sql}");
    }
}
