//! The catalog for applications (DESIGN.md §10): what a reader asks for (filters, a sort, a
//! page size, a keyset cursor) and what it gets back (normalized rows with exact decimal
//! strings). Pure: parsing and validating a request, encoding cursors. The SQL lives in
//! `store/catalog.rs`; the HTTP route, the `models` command and the Redis publisher all go
//! through these types, so the three speak the same JSON.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Source, UnknownSource};

/// Rows per page when the reader does not say.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page a reader may ask for.
pub const MAX_LIMIT: u32 = 1000;
/// Longest `q` accepted (a substring search, not a document).
const MAX_QUERY_CHARS: usize = 200;

/// What the catalog can be sorted by. Every order ends with the model key
/// `(source, provider, model_id)` (in the same direction), so ties are stable and a cursor is
/// unambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// The model key alone (the default).
    Key,
    InputPrice,
    OutputPrice,
    ContextLength,
    IntelligenceIndex,
    Downloads,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [
        SortKey::Key,
        SortKey::InputPrice,
        SortKey::OutputPrice,
        SortKey::ContextLength,
        SortKey::IntelligenceIndex,
        SortKey::Downloads,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Key => "key",
            SortKey::InputPrice => "input_price",
            SortKey::OutputPrice => "output_price",
            SortKey::ContextLength => "context_length",
            SortKey::IntelligenceIndex => "intelligence_index",
            SortKey::Downloads => "downloads",
        }
    }

    pub fn parse(text: &str) -> Result<SortKey, QueryError> {
        SortKey::ALL
            .into_iter()
            .find(|key| key.as_str() == text)
            .ok_or_else(|| QueryError::UnknownSort(text.to_string()))
    }

    /// The order a reader most likely wants: cheapest first, biggest first.
    pub fn default_order(self) -> Order {
        match self {
            SortKey::Key | SortKey::InputPrice | SortKey::OutputPrice => Order::Asc,
            SortKey::ContextLength | SortKey::IntelligenceIndex | SortKey::Downloads => Order::Desc,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }

    fn parse(text: &str) -> Result<Order, QueryError> {
        match text {
            "asc" => Ok(Order::Asc),
            "desc" => Ok(Order::Desc),
            other => Err(QueryError::UnknownOrder(other.to_string())),
        }
    }
}

/// Why a catalog request cannot be answered; the message tells the reader what to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    UnknownSource(#[from] UnknownSource),
    #[error(
        "unknown sort {0:?}; valid: input_price, output_price, context_length, intelligence_index, downloads, key"
    )]
    UnknownSort(String),
    #[error("unknown order {0:?}; valid: asc, desc")]
    UnknownOrder(String),
    #[error("limit must be between 1 and {MAX_LIMIT}, got {0}")]
    BadLimit(String),
    #[error("q is longer than {MAX_QUERY_CHARS} characters")]
    QueryTooLong,
    #[error("the `after` cursor is not one this API issued; start again without it")]
    BadCursor,
    #[error("the `after` cursor belongs to sort={0}&order={1}; keep the sort and order of the first page")]
    CursorMismatch(&'static str, &'static str),
    #[error("unknown parameter {0:?}; valid: source, provider, q, sort, order, limit, after")]
    UnknownParameter(String),
}

/// A request as a reader writes it (query string or command-line flags), not yet checked.
#[derive(Debug, Clone, Default)]
pub struct CatalogParams {
    pub source: Option<String>,
    pub provider: Option<String>,
    pub q: Option<String>,
    pub sort: Option<String>,
    pub order: Option<String>,
    pub limit: Option<String>,
    pub after: Option<String>,
}

impl CatalogParams {
    /// From `name=value` pairs (an HTTP query string). An unknown name is an error rather than
    /// silently ignored: a misspelt filter would otherwise return the whole catalog.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<CatalogParams, QueryError> {
        let mut params = CatalogParams::default();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "source" => &mut params.source,
                "provider" => &mut params.provider,
                "q" => &mut params.q,
                "sort" => &mut params.sort,
                "order" => &mut params.order,
                "limit" => &mut params.limit,
                "after" => &mut params.after,
                _ => return Err(QueryError::UnknownParameter(name)),
            };
            // An empty value means "not set" (`?source=&q=` from a form).
            *slot = Some(value).filter(|value| !value.is_empty());
        }
        Ok(params)
    }

    pub fn validate(self) -> Result<CatalogQuery, QueryError> {
        let source = self.source.as_deref().map(Source::from_name).transpose()?;
        let sort = self
            .sort
            .as_deref()
            .map(SortKey::parse)
            .transpose()?
            .unwrap_or(SortKey::Key);
        let order = self
            .order
            .as_deref()
            .map(Order::parse)
            .transpose()?
            .unwrap_or_else(|| sort.default_order());
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                _ => return Err(QueryError::BadLimit(text)),
            },
        };
        if self.q.as_ref().is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
            return Err(QueryError::QueryTooLong);
        }
        let after = self.after.as_deref().map(Cursor::decode).transpose()?;
        if let Some(cursor) = &after {
            if (cursor.sort, cursor.order) != (sort, order) {
                return Err(QueryError::CursorMismatch(cursor.sort.as_str(), cursor.order.as_str()));
            }
        }
        Ok(CatalogQuery {
            source,
            provider: self.provider,
            q: self.q,
            sort,
            order,
            limit,
            after,
        })
    }
}

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogQuery {
    pub source: Option<Source>,
    /// Exact provider.
    pub provider: Option<String>,
    /// Case-insensitive substring of `model_id` or `name`.
    pub q: Option<String>,
    pub sort: SortKey,
    pub order: Order,
    pub limit: u32,
    pub after: Option<Cursor>,
}

/// Where the previous page ended: the sort value of its last row (as exact text; `None` when
/// that row had none, since NULLs sort last) and that row's key. Opaque to readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: SortKey,
    #[serde(rename = "o")]
    pub order: Order,
    #[serde(rename = "v")]
    pub value: Option<String>,
    #[serde(rename = "k")]
    pub key: (String, String, String),
}

impl Cursor {
    /// The cursor that continues after `row` in the given order.
    pub fn after(row: &CatalogModel, sort: SortKey, order: Order) -> Cursor {
        let value = match sort {
            SortKey::Key => None,
            SortKey::InputPrice => row.input_price_per_mtok.clone(),
            SortKey::OutputPrice => row.output_price_per_mtok.clone(),
            SortKey::ContextLength => row.context_length.map(|v| v.to_string()),
            SortKey::IntelligenceIndex => row.intelligence_index.clone(),
            SortKey::Downloads => row.downloads.map(|v| v.to_string()),
        };
        Cursor {
            sort,
            order,
            value,
            key: (row.source.clone(), row.provider.clone(), row.model_id.clone()),
        }
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor is strings and enums only");
        URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(text: &str) -> Result<Cursor, QueryError> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| QueryError::BadCursor)?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| QueryError::BadCursor)?;
        // The value goes into SQL as a parameter cast to the column's type; reject anything
        // that is not a plain decimal number here, with a reader's error instead of a 500.
        if let Some(value) = &cursor.value {
            let numeric = !value.is_empty()
                && value.len() <= 64
                && value
                    .trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.');
            let integer_sort = matches!(cursor.sort, SortKey::ContextLength | SortKey::Downloads);
            if !numeric || (integer_sort && value.contains('.')) || cursor.sort == SortKey::Key {
                return Err(QueryError::BadCursor);
            }
        }
        Ok(cursor)
    }
}

/// One model of the current catalog: the normalized columns, prices and indices as exact
/// decimal strings (USD per million tokens), NULL as JSON null. The raw record (`data`) is
/// not included: it is large and source-specific; SQL readers have it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogModel {
    pub source: String,
    pub provider: String,
    pub model_id: String,
    pub name: Option<String>,
    pub context_length: Option<i64>,
    pub max_output_tokens: Option<i64>,
    pub input_price_per_mtok: Option<String>,
    pub output_price_per_mtok: Option<String>,
    pub cache_read_price_per_mtok: Option<String>,
    pub cache_write_price_per_mtok: Option<String>,
    pub price_tiers: Option<serde_json::Value>,
    pub input_modalities: Option<Vec<String>>,
    pub output_modalities: Option<Vec<String>>,
    pub supports_tools: Option<bool>,
    pub supports_reasoning: Option<bool>,
    pub open_weights: Option<bool>,
    pub release_date: Option<NaiveDate>,
    pub status: Option<String>,
    pub expires_on: Option<NaiveDate>,
    pub downloads: Option<i64>,
    pub likes: Option<i64>,
    pub intelligence_index: Option<String>,
    pub intelligence_index_version: Option<String>,
    /// The sync whose data this row is.
    pub sync_id: i64,
    pub synced_at: DateTime<Utc>,
}

impl CatalogModel {
    /// The field name of the model in a source's Redis hash.
    pub fn redis_field(&self) -> String {
        format!("{}|{}", self.provider, self.model_id)
    }
}

/// One page of the catalog, as `GET /api/models` and `models --json` return it.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogPage {
    pub models: Vec<CatalogModel>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_after: Option<String>,
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Result<CatalogQuery, QueryError> {
        CatalogParams::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))?.validate()
    }

    #[test]
    fn defaults_and_per_key_orders() {
        let query = params(&[]).unwrap();
        assert_eq!(
            (query.sort, query.order, query.limit),
            (SortKey::Key, Order::Asc, DEFAULT_LIMIT)
        );
        assert_eq!(params(&[("sort", "input_price")]).unwrap().order, Order::Asc);
        assert_eq!(params(&[("sort", "downloads")]).unwrap().order, Order::Desc);
        assert_eq!(
            params(&[("sort", "downloads"), ("order", "asc")]).unwrap().order,
            Order::Asc
        );
        let empty = params(&[("source", ""), ("q", "")]).unwrap();
        assert_eq!((empty.source, empty.q), (None, None));
    }

    #[test]
    fn bad_requests_say_what_is_valid() {
        let error = params(&[("source", "hugging_face")]).unwrap_err().to_string();
        assert!(error.contains("huggingface") && error.contains("models_dev"), "{error}");
        let error = params(&[("sort", "price")]).unwrap_err().to_string();
        assert!(error.contains("input_price"), "{error}");
        for limit in ["0", "1001", "ten", "-1"] {
            assert_eq!(
                params(&[("limit", limit)]).unwrap_err(),
                QueryError::BadLimit(limit.into())
            );
        }
        assert!(matches!(
            params(&[("provder", "openai")]).unwrap_err(),
            QueryError::UnknownParameter(_)
        ));
        assert_eq!(
            params(&[("q", &"x".repeat(201))]).unwrap_err(),
            QueryError::QueryTooLong
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let cursor = Cursor {
            sort: SortKey::InputPrice,
            order: Order::Asc,
            value: Some("0.075".into()),
            key: ("openrouter".into(), "google".into(), "google/gemini|x".into()),
        };
        let encoded = cursor.encode();
        assert!(encoded
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(Cursor::decode(&encoded).unwrap(), cursor);
        let query = params(&[("sort", "input_price"), ("after", &encoded)]).unwrap();
        assert_eq!(query.after, Some(cursor.clone()));
        // Another sort with this cursor would skip or repeat rows.
        assert_eq!(
            params(&[("sort", "downloads"), ("after", &encoded)]).unwrap_err(),
            QueryError::CursorMismatch("input_price", "asc")
        );
        assert_eq!(Cursor::decode("not a cursor").unwrap_err(), QueryError::BadCursor);
        for value in ["1; DROP TABLE x", "", "1e5", "NaN"] {
            let forged = Cursor {
                value: Some(value.into()),
                ..cursor.clone()
            };
            assert_eq!(
                Cursor::decode(&forged.encode()).unwrap_err(),
                QueryError::BadCursor,
                "{value}"
            );
        }
        let fractional_downloads = Cursor {
            sort: SortKey::Downloads,
            order: Order::Desc,
            value: Some("1.5".into()),
            key: cursor.key.clone(),
        };
        assert_eq!(
            Cursor::decode(&fractional_downloads.encode()).unwrap_err(),
            QueryError::BadCursor
        );
    }
}
