//! The current catalog (`model_catalog`, what the read API, `models` and Redis read) compared
//! with what `model_snapshots` shows for a sync: history's contract says the current versions
//! are the latest listing's models, with their volatile values as of then.

use super::TestDb;

/// The catalog's columns that `model_snapshots` has too (every one but the sync's).
const COLUMNS: &str = "source, provider, model_id, name, context_length, max_output_tokens,
    input_price_per_mtok, output_price_per_mtok, cache_read_price_per_mtok,
    cache_write_price_per_mtok, price_tiers, input_modalities, output_modalities,
    supports_tools, supports_reasoning, open_weights, release_date, status, expires_on,
    downloads, likes, intelligence_index, intelligence_index_version";

/// Asserts that `source`'s current catalog is, row for row and column for column, what
/// `model_snapshots` shows for `sync_id`, and returns its size.
pub async fn assert_catalog_is_snapshot(db: &TestDb, sync_id: i64, source: &str) -> i64 {
    let catalog = format!("SELECT {COLUMNS} FROM model_catalog WHERE source = '{source}'");
    let snapshot = format!("SELECT {COLUMNS} FROM model_snapshots WHERE sync_id = {sync_id} AND source = '{source}'");
    let only_in_catalog = db
        .count(&format!("SELECT count(*) FROM ({catalog} EXCEPT ALL {snapshot}) x"))
        .await;
    let only_in_snapshot = db
        .count(&format!("SELECT count(*) FROM ({snapshot} EXCEPT ALL {catalog}) x"))
        .await;
    if (only_in_catalog, only_in_snapshot) != (0, 0) {
        let differing = db
            .text(&format!(
                "SELECT string_agg(x::text, E'\\n') FROM (({catalog} EXCEPT ALL {snapshot}) UNION ALL
                 ({snapshot} EXCEPT ALL {catalog})) x"
            ))
            .await;
        panic!(
            "{source}: {only_in_catalog} rows of the catalog are not in sync {sync_id}'s snapshot, \
             {only_in_snapshot} the reverse:\n{differing}"
        );
    }
    db.count(&format!("SELECT count(*) FROM ({catalog}) x")).await
}
