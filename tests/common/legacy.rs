#![allow(dead_code)]
//! The write path of the release before history (main at 11f856c, migrations 0001–0005): one
//! `model_snapshots` row per model per sync, binary COPY of exactly these columns,
//! `content_hash` the first 16 bytes of blake3 of the raw record, `synced_at` the sync's start,
//! with the page's entry in `model_sync_pages` and its record keys in `model_source_fields` in
//! the same transaction; and its final record, counts taken from the tables. The upgrade test
//! fills a database with it, then migrates.

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

/// Writes `models` as the old writer did: one snapshot row each, in one transaction with the
/// page's entry and the record keys.
pub async fn write_snapshot_rows(
    client: &mut tokio_postgres::Client,
    sync_id: i64,
    synced_at: DateTime<Utc>,
    models: &[Model],
) {
    let transaction = client.transaction().await.unwrap();
    let source = models[0].source.as_str();
    transaction
        .execute(
            "INSERT INTO model_sync_pages (sync_id, source, page_no, records)
             VALUES ($1, $2, coalesce((SELECT max(page_no) + 1 FROM model_sync_pages WHERE sync_id = $1 AND source = $2), 1), $3)",
            &[&sync_id, &source, &(models.len() as i64)],
        )
        .await
        .unwrap();
    let mut fields: Vec<String> = models
        .iter()
        .filter_map(|model| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&model.raw).ok())
        .flat_map(|record| record.keys().cloned().collect::<Vec<_>>())
        .collect();
    fields.sort();
    fields.dedup();
    transaction
        .execute(
            "INSERT INTO model_source_fields (source, field, first_sync_id)
             SELECT $1, field, $3 FROM unnest($2::text[]) AS field ON CONFLICT DO NOTHING",
            &[&source, &fields, &sync_id],
        )
        .await
        .unwrap();
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

/// The old final record of a sync: each source's status, its counts from the tables, then the
/// sync's (as `store::syncs::finalize_sync` of that release did).
pub async fn finish_sync(client: &tokio_postgres::Client, sync_id: i64, sources: &[(&str, &str)], status: &str) {
    for (source, source_status) in sources {
        client
            .execute(
                "UPDATE model_sync_sources s
                    SET status = $3, duration_ms = 10, http_requests = 1, bytes = 100,
                        models_fetched = (SELECT coalesce(sum(records), 0)::bigint FROM model_sync_pages p
                                           WHERE p.sync_id = $1 AND p.source = $2),
                        models_stored = (SELECT count(*) FROM model_snapshots m WHERE m.sync_id = $1 AND m.source = $2),
                        models_rejected = (SELECT count(*) FROM model_rejects r WHERE r.sync_id = $1 AND r.source = $2),
                        models_duplicates = coalesce(s.models_duplicates, 0), new_fields = '{}'
                  WHERE s.sync_id = $1 AND s.source = $2",
                &[&sync_id, source, source_status],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "UPDATE model_syncs s
                SET status = $2, finished_at = now(),
                    duration_ms = (extract(epoch FROM now() - s.started_at) * 1000)::bigint,
                    models_fetched = t.fetched, models_stored = t.stored, models_rejected = t.rejected,
                    models_duplicates = t.duplicates
               FROM (SELECT coalesce(sum(models_fetched), 0)::bigint AS fetched,
                            coalesce(sum(models_stored), 0)::bigint AS stored,
                            coalesce(sum(models_rejected), 0)::bigint AS rejected,
                            coalesce(sum(models_duplicates), 0)::bigint AS duplicates
                       FROM model_sync_sources WHERE sync_id = $1) t
              WHERE s.id = $1",
            &[&sync_id, &status],
        )
        .await
        .unwrap();
}

/// What the old release did at its next start with a sync a killed process left running: marks
/// it `interrupted` and its unfinished sources failed. Returns the ids.
pub async fn mark_orphans_interrupted(client: &tokio_postgres::Client) -> Vec<i64> {
    let ids: Vec<i64> = client
        .query(
            "UPDATE model_syncs
                SET status = 'interrupted', finished_at = now(),
                    duration_ms = (extract(epoch FROM now() - started_at) * 1000)::bigint,
                    error = coalesce(error, 'the process running this sync stopped before it finished')
              WHERE status = 'running'
          RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    client
        .execute(
            "UPDATE model_sync_sources SET status = 'failed', error = coalesce(error, 'interrupted')
              WHERE sync_id = ANY($1) AND status = 'running'",
            &[&ids],
        )
        .await
        .unwrap();
    ids
}
