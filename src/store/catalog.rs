//! Reads of the current catalog: one page for `GET /api/models` and `models`, a source's rows
//! streamed in chunks for the Redis publisher, and the size of each source's catalog.
//!
//! "Current" is history's current versions (DESIGN.md §8 and §10): the view `model_catalog`
//! (`sql/0007_catalog_indexes.sql`), one row per model whose version is still valid, with the
//! current volatile values, and [`CATALOG_BY_KEYS`], the same rows read from `model_keys` (the
//! downloads order, and streaming a source). A row's `sync_id` / `synced_at` are those of its
//! source's latest successful sync ([`CURRENT_SYNCS`]); a source that never succeeded has no
//! catalog.
//!
//! A page is read per source, each source's rows in the requested order from an index of
//! `0007`, a few rows each, then merged: the cost follows the page size, not the catalog size,
//! also deep into a cursor walk.

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Portal, Row, Transaction};

use crate::catalog::{CatalogModel, CatalogPage, CatalogQuery, Cursor, Order, SortKey};
use crate::model::Source;
use crate::store::{Database, StoreError};

/// Per source, its latest success in a finished sync: the sync a catalog row names. Syncs still
/// running are not named (their sources may still be writing).
const CURRENT_SYNCS: &str = "
SELECT DISTINCT ON (ss.source) ss.source, ss.sync_id, s.started_at
  FROM model_sync_sources ss
  JOIN model_syncs s ON s.id = ss.sync_id
 WHERE ss.status = 'success' AND s.status <> 'running'
 ORDER BY ss.source, ss.sync_id DESC";

/// The rows of `model_catalog` driven from `model_keys` instead of the versions, for the
/// downloads order: downloads are volatile and live in `model_keys`, whose index
/// `model_keys_catalog_downloads` holds that order; each key's current version is one primary
/// key probe (`latest_from_sync` is the `valid_from_sync` of the key's latest version). Also
/// the cheaper way to stream a whole source (one probe per row, or a hash join).
const CATALOG_BY_KEYS: &str = "(SELECT k.source, k.provider, k.model_id, v.name, v.context_length,
        v.max_output_tokens, v.input_price_per_mtok, v.output_price_per_mtok,
        v.cache_read_price_per_mtok, v.cache_write_price_per_mtok, v.price_tiers,
        v.input_modalities, v.output_modalities, v.supports_tools, v.supports_reasoning,
        v.open_weights, v.release_date, v.status, v.expires_on, k.downloads, k.likes,
        v.intelligence_index, v.intelligence_index_version
   FROM model_keys k
   JOIN model_versions v
     ON v.key_id = k.id AND v.valid_from_sync = k.latest_from_sync AND v.valid_to_sync IS NULL
  WHERE k.closed_as IS NULL) AS catalog_by_keys";

/// The size of each source's catalog: an index-only count of the current versions.
const CURRENT_SIZES: &str = "SELECT source, count(*) FROM model_versions WHERE valid_to_sync IS NULL GROUP BY source";

/// The stored columns of [`CatalogModel`], as read from `model_catalog` (numerics as text, so
/// they reach the reader exactly as PostgreSQL holds them). `sync_id` and `synced_at` come from
/// the source's [`SourceCatalog`].
const MODEL_COLUMNS: &str = "source, provider, model_id, name, context_length, max_output_tokens,
    input_price_per_mtok::text, output_price_per_mtok::text, cache_read_price_per_mtok::text,
    cache_write_price_per_mtok::text, price_tiers, input_modalities, output_modalities,
    supports_tools, supports_reasoning, open_weights, release_date, status, expires_on,
    downloads, likes, intelligence_index::text, intelligence_index_version";

/// The same columns as read inside a source's branch of a page, before the merge converts them.
const RAW_COLUMNS: &str = "source, provider, model_id, name, context_length, max_output_tokens,
    input_price_per_mtok, output_price_per_mtok, cache_read_price_per_mtok,
    cache_write_price_per_mtok, price_tiers, input_modalities, output_modalities,
    supports_tools, supports_reasoning, open_weights, release_date, status, expires_on,
    downloads, likes, intelligence_index, intelligence_index_version";

/// A source's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCatalog {
    pub source: Source,
    /// Its latest successful sync.
    pub sync_id: i64,
    /// When that sync started (the rows' `synced_at`).
    pub synced_at: DateTime<Utc>,
    /// Its current models.
    pub models: i64,
}

/// Every source's catalog: its latest successful sync and its size. Sources that never
/// succeeded are absent.
pub async fn source_sizes(database: &Database) -> Result<Vec<SourceCatalog>, StoreError> {
    let client = database.pool.get().await?;
    let mut current = current_syncs(&**client).await?;
    let sizes = client.query(CURRENT_SIZES, &[]).await?;
    for catalog in &mut current {
        catalog.models = sizes
            .iter()
            .find(|row| row.get::<_, &str>(0) == catalog.source.as_str())
            .map_or(0, |row| row.get(1));
    }
    Ok(current)
}

/// Every source's latest successful sync, without the sizes (`models` is 0).
async fn current_syncs(client: &impl tokio_postgres::GenericClient) -> Result<Vec<SourceCatalog>, StoreError> {
    let rows = client.query(CURRENT_SYNCS, &[]).await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some(SourceCatalog {
                source: Source::parse(row.get(0))?,
                sync_id: row.get(1),
                synced_at: row.get(2),
                models: 0,
            })
        })
        .collect())
}

/// A row of [`MODEL_COLUMNS`], stamped with its source's sync (`None`: a source without a
/// success, which no query reads).
fn model_from_row(row: &Row, current: &[SourceCatalog]) -> Option<CatalogModel> {
    let source: String = row.get(0);
    let sync = current.iter().find(|c| c.source.as_str() == source)?;
    Some(CatalogModel {
        source,
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
        sync_id: sync.sync_id,
        synced_at: sync.synced_at,
    })
}

/// The sort column and the SQL type its cursor value is cast to; `None` for the key order.
fn sort_column(sort: SortKey) -> Option<(&'static str, &'static str)> {
    match sort {
        SortKey::Key => None,
        SortKey::InputPrice => Some(("input_price_per_mtok", "numeric")),
        SortKey::OutputPrice => Some(("output_price_per_mtok", "numeric")),
        SortKey::ContextLength => Some(("context_length", "bigint")),
        SortKey::IntelligenceIndex => Some(("intelligence_index", "numeric")),
        SortKey::Downloads => Some(("downloads", "bigint")),
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

/// SQL parameters, numbered as they are added.
#[derive(Default)]
struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    fn add(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }
}

/// Builds the page query over the sources' catalogs. The order is the sort value, NULLs
/// last, then the key `(source, provider, model_id)`, everything in the requested direction
/// (so one ascending index serves both directions: forward or backward). Each source
/// contributes at most `limit + 1` rows read by ranges an index serves directly: after a
/// cursor `(v, key)`, the rows equal to `v` beyond the key, then the values beyond `v`, then
/// the NULLs. The outer query merges the sources. Only column names chosen here are spliced
/// into the text; every value is a parameter, added only where used (PostgreSQL cannot type
/// an unused one). `None` when no source can contribute.
fn page_sql(query: &CatalogQuery, current: &[SourceCatalog]) -> Option<(String, Params)> {
    let mut params = Params::default();
    let mut filters = String::new();
    if let Some(provider) = &query.provider {
        filters.push_str(&format!(" AND provider = {}", params.add(provider.clone())));
    }
    if let Some(q) = &query.q {
        let pattern = params.add(like_pattern(q));
        filters.push_str(&format!(" AND (model_id ILIKE {pattern} OR name ILIKE {pattern})"));
    }
    let limit = params.add(i64::from(query.limit) + 1);
    let column = sort_column(query.sort);
    let (direction, beyond, later_source) = match query.order {
        Order::Asc => ("ASC", ">", std::cmp::Ordering::Greater),
        Order::Desc => ("DESC", "<", std::cmp::Ordering::Less),
    };
    let by_key = format!("provider {direction}, model_id {direction}");
    let cursor_value = query.after.as_ref().and_then(|cursor| {
        let (_, sql_type) = column?;
        let value = cursor.value.as_ref()?;
        Some(format!("{}::text::{sql_type}", params.add(value.clone())))
    });
    let mut branches = Vec::new();
    for current in current.iter().filter(|c| query.source.is_none_or(|s| s == c.source)) {
        // Whether this source's rows that tie with the cursor's row on the sort value come
        // after it: all of them (a later source), those beyond the key (its source), or none.
        let ties = query.after.as_ref().and_then(|cursor| {
            let (cursor_source, provider, model_id) = &cursor.key;
            match current.source.as_str().cmp(cursor_source.as_str()) {
                std::cmp::Ordering::Equal => Some(format!(
                    " AND (provider, model_id) {beyond} ({}::text, {}::text)",
                    params.add(provider.clone()),
                    params.add(model_id.clone())
                )),
                ordering if ordering == later_source => Some(String::new()),
                _ => None,
            }
        });
        // The condition of each range to read, in page order, with the order that points the
        // planner at the index serving it. Ties name the sort column although it is constant
        // there: its index holds them in key order. The NULLs of a content column are not in
        // its index (`0007` indexes only values): they are read in key order from the key
        // index, skipping the rows that have one (nearly none in the big source, the Hugging
        // Face hub, which has no prices, context lengths or indices). Downloads' index holds
        // the NULLs too: ordered by the model key alone, their range walked the key order and
        // filtered, e.g. 292,000 rows to find no NULL download (0.47 s).
        let nulls_in_index = query.sort == SortKey::Downloads;
        let mut ranges: Vec<(String, bool)> = Vec::new();
        // (condition, whether the range is ordered by the sort column)
        match (column, &query.after, &cursor_value, ties) {
            (None, None, _, _) => ranges.push((String::new(), false)),
            (None, Some(_), _, Some(ties)) => ranges.push((ties, false)),
            (None, Some(_), _, None) => {}
            (Some((column, _)), None, _, _) => {
                ranges.push((format!(" AND {column} IS NOT NULL"), true));
                ranges.push((format!(" AND {column} IS NULL"), nulls_in_index));
            }
            (Some((column, _)), Some(_), Some(value), ties) => {
                if let Some(ties) = ties {
                    ranges.push((format!(" AND {column} = {value}{ties}"), true));
                }
                ranges.push((format!(" AND {column} {beyond} {value}"), true));
                ranges.push((format!(" AND {column} IS NULL"), nulls_in_index));
            }
            // After a row without a value only NULLs remain.
            (Some((column, _)), Some(_), None, Some(ties)) => {
                ranges.push((format!(" AND {column} IS NULL{ties}"), nulls_in_index))
            }
            (Some(_), Some(_), None, None) => {}
        }
        if ranges.is_empty() {
            continue;
        }
        let source = params.add(current.source.as_str().to_string());
        let relation = if query.sort == SortKey::Downloads {
            CATALOG_BY_KEYS
        } else {
            "model_catalog"
        };
        let rows = format!("FROM {relation} WHERE source = {source}{filters}");
        for (condition, by_column) in ranges {
            let order = match column {
                Some((column, _)) if by_column => format!("{column} {direction}, {by_key}"),
                _ => by_key.clone(),
            };
            branches.push(format!(
                "(SELECT {RAW_COLUMNS} {rows}{condition} ORDER BY {order} LIMIT {limit})"
            ));
        }
    }
    if branches.is_empty() {
        return None;
    }
    // Qualified: in `ORDER BY`, a bare name would mean the output column, which is the text
    // form of the number (and `140` < `15` as text).
    let key = format!("catalog.source {direction}, catalog.provider {direction}, catalog.model_id {direction}");
    let order = match column {
        None => key,
        Some((column, _)) => format!("catalog.{column} {direction} NULLS LAST, {key}"),
    };
    let sql = format!(
        "SELECT {MODEL_COLUMNS} FROM ({}) AS catalog ORDER BY {order} LIMIT {limit}",
        branches.join(" UNION ALL ")
    );
    Some((sql, params))
}

/// One page of the current catalog and the cursor of the next.
pub async fn page(database: &Database, query: &CatalogQuery) -> Result<CatalogPage, StoreError> {
    let client = database.pool.get().await?;
    let current = current_syncs(&**client).await?;
    let Some((sql, params)) = page_sql(query, &current) else {
        return Ok(CatalogPage {
            models: Vec::new(),
            next_after: None,
        });
    };
    let params: Vec<&(dyn ToSql + Sync)> = params.0.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&sql, &params).await?;
    let mut models: Vec<CatalogModel> = rows.iter().filter_map(|row| model_from_row(row, &current)).collect();
    let more = models.len() > query.limit as usize;
    models.truncate(query.limit as usize);
    let next_after = more
        .then(|| models.last())
        .flatten()
        .map(|last| Cursor::after(last, query.sort, query.order).encode());
    Ok(CatalogPage { models, next_after })
}

/// A source's current rows, read through a portal a chunk at a time, so that memory stays
/// bounded by the chunk size whatever the size of the source. Lives inside a transaction
/// (a portal does); a `REPEATABLE READ` one gives a consistent view for the whole read.
pub struct SourceRows<'a> {
    transaction: &'a Transaction<'a>,
    /// The portal, and the source's sync the rows name; `None` when the source has no catalog.
    portal: Option<(Portal, SourceCatalog)>,
    chunk: i32,
}

impl<'a> SourceRows<'a> {
    /// `None` as the portal when the source has no current catalog (never succeeded).
    pub async fn open(transaction: &'a Transaction<'a>, source: Source, chunk: usize) -> Result<Self, StoreError> {
        let current = current_syncs(transaction)
            .await?
            .into_iter()
            .find(|current| current.source == source);
        let portal = match current {
            None => None,
            Some(current) => {
                let statement = transaction
                    .prepare(&format!(
                        "SELECT {MODEL_COLUMNS} FROM {CATALOG_BY_KEYS} WHERE source = $1"
                    ))
                    .await?;
                Some((transaction.bind(&statement, &[&source.as_str()]).await?, current))
            }
        };
        Ok(SourceRows {
            transaction,
            portal,
            chunk: i32::try_from(chunk.max(1)).unwrap_or(i32::MAX),
        })
    }

    /// The next rows; empty when the source is exhausted.
    pub async fn next_chunk(&mut self) -> Result<Vec<CatalogModel>, StoreError> {
        let Some((portal, current)) = &self.portal else {
            return Ok(Vec::new());
        };
        let rows = self.transaction.query_portal(portal, self.chunk).await?;
        Ok(rows
            .iter()
            .filter_map(|row| model_from_row(row, std::slice::from_ref(current)))
            .collect())
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

    fn every_parameter_used(sql: &str, params: &Params) -> bool {
        (1..=params.0.len()).all(|n| {
            let name = format!("${n}");
            sql.match_indices(&name)
                .any(|(at, _)| !sql[at + name.len()..].starts_with(|c: char| c.is_ascii_digit()))
        })
    }

    fn current() -> Vec<SourceCatalog> {
        ["huggingface", "openrouter"]
            .iter()
            .enumerate()
            .map(|(i, name)| SourceCatalog {
                source: Source::parse(name).unwrap(),
                sync_id: i as i64 + 1,
                synced_at: Utc::now(),
                models: 10,
            })
            .collect()
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
        let (sql, params) = page_sql(&query, &current()).unwrap();
        assert!(!sql.contains("o'brien") && !sql.contains("DROP TABLE"), "{sql}");
        assert!(
            sql.contains("ORDER BY catalog.downloads DESC NULLS LAST, catalog.source DESC, catalog.provider DESC"),
            "{sql}"
        );
        // Descending, ties too: huggingface (the cursor's source) reads its ties before the
        // key, the values below, the NULLs; openrouter sorts before huggingface, so it comes
        // earlier in this order and has nothing left but its values below and its NULLs.
        assert_eq!(
            sql.matches(" LIMIT $").count(),
            5 + 1,
            "five ranges and the merge: {sql}"
        );
        assert_eq!(
            sql.matches("FROM model_keys k").count(),
            5,
            "downloads: from the keys: {sql}"
        );
        assert_eq!(sql.matches("downloads < $").count(), 2, "{sql}");
        assert_eq!(sql.matches("(provider, model_id) < ($").count(), 1, "{sql}");
        assert!(
            every_parameter_used(&sql, &params),
            "PostgreSQL cannot type an unused parameter: {sql}"
        );
        assert_eq!(params.0.len(), 8, "provider, q, limit, value, key x2, source x2: {sql}");
        let mut key_order = query.clone();
        key_order.sort = SortKey::Key;
        key_order.after = Some(Cursor {
            sort: SortKey::Key,
            order: Order::Asc,
            value: None,
            key: ("openrouter".into(), "a".into(), "b".into()),
        });
        let (sql, params) = page_sql(&key_order, &current()).unwrap();
        assert!(every_parameter_used(&sql, &params), "{sql}");
    }

    #[test]
    fn sources_before_the_cursor_contribute_nothing_to_the_key_order() {
        let mut query = query(&[]);
        query.after = Some(Cursor {
            sort: SortKey::Key,
            order: Order::Asc,
            value: None,
            key: ("openrouter".into(), "a".into(), "b".into()),
        });
        let (sql, _) = page_sql(&query, &current()).unwrap();
        assert_eq!(
            sql.matches("(SELECT ").count(),
            1,
            "only openrouter from its key on: {sql}"
        );
        query.source = Some(Source::HuggingFace);
        assert!(page_sql(&query, &current()).is_none());
    }
}
