#![allow(dead_code)]
//! The write path of the release before history (migrations 0001–0003): one `model_snapshots`
//! row per model per sync, binary COPY of exactly these columns, `content_hash` the first 16
//! bytes of blake3 of the raw record, `synced_at` the sync's start. The upgrade test fills a
//! database with it, then migrates.

use chrono::{DateTime, Utc};
use futures::pin_mut;
use model_lens_sync::model::Model;
use model_lens_sync::store::batch::JsonText;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

const SNAPSHOT_COLUMNS: &str = "sync_id, source, provider, model_id, name, context_length, \
    max_output_tokens, input_price_per_mtok, output_price_per_mtok, cache_read_price_per_mtok, \
    cache_write_price_per_mtok, input_modalities, output_modalities, supports_tools, \
    supports_reasoning, open_weights, release_date, downloads, likes, intelligence_index, data, \
    content_hash, synced_at, price_tiers, status, expires_on, intelligence_index_version";

const SNAPSHOT_TYPES: [Type; 27] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::BOOL,
    Type::BOOL,
    Type::BOOL,
    Type::DATE,
    Type::INT8,
    Type::INT8,
    Type::NUMERIC,
    Type::JSONB,
    Type::BYTEA,
    Type::TIMESTAMPTZ,
    Type::JSONB,
    Type::TEXT,
    Type::DATE,
    Type::TEXT,
];

/// Writes `models` as the old writer did: one snapshot row each, in one transaction.
pub async fn write_snapshot_rows(
    client: &mut tokio_postgres::Client,
    sync_id: i64,
    synced_at: DateTime<Utc>,
    models: &[Model],
) {
    let transaction = client.transaction().await.unwrap();
    let sink = transaction
        .copy_in(&format!(
            "COPY model_snapshots ({SNAPSHOT_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &SNAPSHOT_TYPES);
    pin_mut!(writer);
    for model in models {
        let hash = model.record_hash();
        let price_tiers = model.price_tiers_json();
        writer
            .as_mut()
            .write(&[
                &sync_id,
                &model.source.as_str(),
                &model.provider,
                &model.model_id,
                &model.name,
                &model.context_length,
                &model.max_output_tokens,
                &model.input_price_per_mtok,
                &model.output_price_per_mtok,
                &model.cache_read_price_per_mtok,
                &model.cache_write_price_per_mtok,
                &model.input_modalities,
                &model.output_modalities,
                &model.supports_tools,
                &model.supports_reasoning,
                &model.open_weights,
                &model.release_date,
                &model.downloads,
                &model.likes,
                &model.intelligence_index,
                &JsonText(&model.raw),
                &&hash[..],
                &synced_at,
                &price_tiers.as_deref().map(JsonText),
                &model.status,
                &model.expires_on,
                &model.intelligence_index_version,
            ])
            .await
            .unwrap();
    }
    writer.finish().await.unwrap();
    transaction.commit().await.unwrap();
}
