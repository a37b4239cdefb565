//! Reading history: the changes (a list for people, a cursor feed for systems) and one
//! model's versions with their validity, price timeline and volatile series.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::history::ChangeKind;
use crate::model::Source;
use crate::sources::fields::owner_of;
use crate::store::history::{key_text, key_text_of};
use crate::store::{Database, StoreError};

/// One row of `model_changes`, plus the model's lifecycle as its current version states it
/// (`status`, `expires_on`: not columns of `model_changes`; NULL when the model is gone).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRecord {
    pub id: i64,
    pub sync_id: i64,
    pub source: String,
    pub provider: String,
    pub model_id: String,
    pub kind: String,
    pub fields: Vec<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub hold_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub status: Option<String>,
    pub expires_on: Option<NaiveDate>,
}

/// Which changes to list.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    /// Changes recorded by syncs after this one.
    pub after_sync: Option<i64>,
    /// Changes recorded by syncs that started at or after this time.
    pub syncs_started_since: Option<DateTime<Utc>>,
    pub source: Option<Source>,
    pub kind: Option<ChangeKind>,
    /// Changes with an id above this one (the feed's cursor).
    pub after_id: Option<i64>,
    pub limit: i64,
}

const CHANGE_COLUMNS: &str = "c.id, c.sync_id, c.source, c.provider, c.model_id, c.kind, c.fields, c.before,
       c.after, c.hold_reason, c.created_at, cv.status, cv.expires_on";

/// Joins each change to its key (probing the key's hash index) and current version.
fn change_from() -> String {
    format!(
        "FROM model_changes c
           LEFT JOIN model_keys k ON {} = {}
                                 AND k.source = c.source AND k.provider = c.provider AND k.model_id = c.model_id
           LEFT JOIN model_versions cv ON cv.key_id = k.id AND cv.valid_to_sync IS NULL",
        key_text("k"),
        key_text_of("c.source", "c.provider", "c.model_id")
    )
}

const CHANGE_WHERE: &str = "WHERE ($1::bigint IS NULL OR c.sync_id > $1)
   AND ($2::timestamptz IS NULL OR c.sync_id >= (SELECT coalesce(min(id), 9223372036854775807)
                                                   FROM model_syncs WHERE started_at >= $2))
   AND ($3::text IS NULL OR c.source = $3)
   AND ($4::text IS NULL OR c.kind = $4)
   AND ($5::bigint IS NULL OR c.id > $5)";

/// Changes matching `filter`, oldest first, at most `filter.limit`.
pub async fn list_changes(database: &Database, filter: &ChangeFilter) -> Result<Vec<ChangeRecord>, StoreError> {
    let client = database.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {CHANGE_COLUMNS} {} {CHANGE_WHERE} ORDER BY c.id LIMIT $6",
                change_from()
            ),
            &[
                &filter.after_sync,
                &filter.syncs_started_since,
                &filter.source.map(Source::as_str),
                &filter.kind.map(ChangeKind::as_str),
                &filter.after_id,
                &filter.limit.max(0),
            ],
        )
        .await?;
    Ok(rows.iter().map(change_from_row).collect())
}

/// How many changes match `filter` (ignoring its limit), per source and kind.
pub async fn count_changes(
    database: &Database,
    filter: &ChangeFilter,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let client = database.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT c.source, c.kind, count(*) FROM model_changes c {CHANGE_WHERE}
                  GROUP BY c.source, c.kind ORDER BY c.source, c.kind"
            ),
            &[
                &filter.after_sync,
                &filter.syncs_started_since,
                &filter.source.map(Source::as_str),
                &filter.kind.map(ChangeKind::as_str),
                &filter.after_id,
            ],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect())
}

fn change_from_row(row: &tokio_postgres::Row) -> ChangeRecord {
    ChangeRecord {
        id: row.get(0),
        sync_id: row.get(1),
        source: row.get(2),
        provider: row.get(3),
        model_id: row.get(4),
        kind: row.get(5),
        fields: row.get(6),
        before: row.get(7),
        after: row.get(8),
        hold_reason: row.get(9),
        created_at: row.get(10),
        status: row.get(11),
        expires_on: row.get(12),
    }
}

/// One version of a model: its validity (syncs and their start times) and its content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRecord {
    pub valid_from_sync: i64,
    pub valid_from: DateTime<Utc>,
    pub valid_to_sync: Option<i64>,
    pub valid_to: Option<DateTime<Utc>>,
    /// Why it stopped being current: `replaced`, `removed`, `out_of_window`.
    pub end_reason: Option<String>,
    pub name: Option<String>,
    pub context_length: Option<i64>,
    pub max_output_tokens: Option<i64>,
    pub input_price_per_mtok: Option<Decimal>,
    pub output_price_per_mtok: Option<Decimal>,
    pub cache_read_price_per_mtok: Option<Decimal>,
    pub cache_write_price_per_mtok: Option<Decimal>,
    pub price_tiers: Option<serde_json::Value>,
    pub input_modalities: Option<Vec<String>>,
    pub output_modalities: Option<Vec<String>>,
    pub supports_tools: Option<bool>,
    pub supports_reasoning: Option<bool>,
    pub open_weights: Option<bool>,
    pub release_date: Option<NaiveDate>,
    pub intelligence_index: Option<Decimal>,
    pub intelligence_index_version: Option<String>,
    pub status: Option<String>,
    pub expires_on: Option<NaiveDate>,
    /// The record without its volatile members.
    pub data: serde_json::Value,
}

/// Volatile values at a sync where they moved (the first point is the first version's start).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolatilePoint {
    pub sync_id: i64,
    pub synced_at: DateTime<Utc>,
    pub downloads: Option<i64>,
    pub likes: Option<i64>,
    pub volatile: Option<serde_json::Value>,
}

/// Everything history knows of one model key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelHistory {
    pub source: String,
    pub provider: String,
    pub model_id: String,
    /// Whether the model has a current version (is in the catalog now).
    pub current: bool,
    pub versions: Vec<VersionRecord>,
    pub volatile: Vec<VolatilePoint>,
    pub changes: Vec<ChangeRecord>,
}

/// The histories of `model_id` in `source`: of that provider's key, or, without a provider,
/// of every key with that id (models.dev lists one model under many providers).
pub async fn model_history(
    database: &Database,
    source: Source,
    provider: Option<&str>,
    model_id: &str,
) -> Result<Vec<ModelHistory>, StoreError> {
    let client = database.pool.get().await?;
    let keys_query = format!(
        "SELECT id, provider, closed_as IS NULL FROM model_keys k
          WHERE {} = {} AND source = $1 AND provider = $2 AND model_id = $3",
        key_text("k"),
        key_text_of("$1", "$2", "$3")
    );
    let keys_query = keys_query.as_str();
    let mut keys = match provider {
        Some(provider) => {
            client
                .query(keys_query, &[&source.as_str(), &provider, &model_id])
                .await?
        }
        // Most sources name the owner in the id: try that key first (one index probe).
        None => {
            client
                .query(keys_query, &[&source.as_str(), &owner_of(model_id), &model_id])
                .await?
        }
    };
    if keys.is_empty() && provider.is_none() {
        keys = client
            .query(
                "SELECT id, provider, closed_as IS NULL FROM model_keys
                  WHERE source = $1 AND model_id = $2 ORDER BY provider LIMIT 100",
                &[&source.as_str(), &model_id],
            )
            .await?;
    }
    let mut histories = Vec::with_capacity(keys.len());
    for key in keys {
        let key_id: i64 = key.get(0);
        let provider: String = key.get(1);
        let versions = client
            .query(
                "SELECT v.valid_from_sync, f.started_at, v.valid_to_sync, t.started_at, v.end_reason,
                        v.name, v.context_length, v.max_output_tokens, v.input_price_per_mtok,
                        v.output_price_per_mtok, v.cache_read_price_per_mtok, v.cache_write_price_per_mtok,
                        v.price_tiers, v.input_modalities, v.output_modalities, v.supports_tools,
                        v.supports_reasoning, v.open_weights, v.release_date, v.intelligence_index,
                        v.intelligence_index_version, v.status, v.expires_on, v.data,
                        v.downloads, v.likes, v.volatile
                   FROM model_versions v
                   JOIN model_syncs f ON f.id = v.valid_from_sync
                   LEFT JOIN model_syncs t ON t.id = v.valid_to_sync
                  WHERE v.key_id = $1
                  ORDER BY v.valid_from_sync",
                &[&key_id],
            )
            .await?;
        let mut volatile: Vec<VolatilePoint> = versions
            .iter()
            .map(|row| VolatilePoint {
                sync_id: row.get(0),
                synced_at: row.get(1),
                downloads: row.get(24),
                likes: row.get(25),
                volatile: row.get(26),
            })
            .collect();
        let series = client
            .query(
                "SELECT x.sync_id, s.started_at, x.downloads, x.likes, x.volatile
                   FROM model_volatile_series x JOIN model_syncs s ON s.id = x.sync_id
                  WHERE x.key_id = $1 ORDER BY x.sync_id",
                &[&key_id],
            )
            .await?;
        volatile.extend(series.iter().map(|row| VolatilePoint {
            sync_id: row.get(0),
            synced_at: row.get(1),
            downloads: row.get(2),
            likes: row.get(3),
            volatile: row.get(4),
        }));
        volatile.sort_by_key(|point| point.sync_id);
        volatile.dedup_by(|later, earlier| {
            later.downloads == earlier.downloads && later.likes == earlier.likes && later.volatile == earlier.volatile
        });
        let changes = client
            .query(
                &format!(
                    "SELECT {CHANGE_COLUMNS} {}
                      WHERE c.source = $1 AND c.provider = $2 AND c.model_id = $3 ORDER BY c.id",
                    change_from()
                ),
                &[&source.as_str(), &provider, &model_id],
            )
            .await?;
        histories.push(ModelHistory {
            source: source.as_str().to_string(),
            provider,
            model_id: model_id.to_string(),
            current: key.get(2),
            versions: versions.iter().map(version_from_row).collect(),
            volatile,
            changes: changes.iter().map(change_from_row).collect(),
        });
    }
    Ok(histories)
}

fn version_from_row(row: &tokio_postgres::Row) -> VersionRecord {
    VersionRecord {
        valid_from_sync: row.get(0),
        valid_from: row.get(1),
        valid_to_sync: row.get(2),
        valid_to: row.get(3),
        end_reason: row.get(4),
        name: row.get(5),
        context_length: row.get(6),
        max_output_tokens: row.get(7),
        input_price_per_mtok: row.get(8),
        output_price_per_mtok: row.get(9),
        cache_read_price_per_mtok: row.get(10),
        cache_write_price_per_mtok: row.get(11),
        price_tiers: row.get(12),
        input_modalities: row.get(13),
        output_modalities: row.get(14),
        supports_tools: row.get(15),
        supports_reasoning: row.get(16),
        open_weights: row.get(17),
        release_date: row.get(18),
        intelligence_index: row.get(19),
        intelligence_index_version: row.get(20),
        status: row.get(21),
        expires_on: row.get(22),
        data: row.get(23),
    }
}

/// The newest sync, and when it started (to tell a reader what "recent" means).
pub async fn latest_sync(database: &Database) -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
    let client = database.pool.get().await?;
    let row = client
        .query_opt("SELECT id, started_at FROM model_syncs ORDER BY id DESC LIMIT 1", &[])
        .await?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}
