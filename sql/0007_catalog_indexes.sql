-- The catalog read API (DESIGN.md §10) reads, per source, the rows of its current sync in the
-- order a reader asked for, a page at a time after a keyset cursor. One index per sort key,
-- (sync_id, source, <key>, provider, model_id), serves that order in both directions (a
-- forward or a backward scan; the model key breaks ties in the same direction), so a page
-- costs a few short index range scans per source however large the catalog and however deep
-- the cursor. The key order itself uses the unique key (sync_id, source, provider, model_id).
--
-- On a database that already holds many snapshots, building these takes a while (one pass
-- over model_snapshots per index) and blocks writes meanwhile: apply it between syncs.
--
-- Only while model_snapshots is a table: the history migration (0006) turns it into a view over
-- versioned rows with indexes of its own. Migrations apply by version, not in a contiguous run,
-- so 0007 may run before or after 0006: after it there is nothing to index here; before it,
-- 0006's DROP TABLE drops these indexes with the table.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('model_snapshots') AND relkind = 'r') THEN
        CREATE INDEX IF NOT EXISTS idx_model_snapshots_catalog_input_price
            ON model_snapshots (sync_id, source, input_price_per_mtok, provider, model_id);
        CREATE INDEX IF NOT EXISTS idx_model_snapshots_catalog_output_price
            ON model_snapshots (sync_id, source, output_price_per_mtok, provider, model_id);
        CREATE INDEX IF NOT EXISTS idx_model_snapshots_catalog_context_length
            ON model_snapshots (sync_id, source, context_length, provider, model_id);
        CREATE INDEX IF NOT EXISTS idx_model_snapshots_catalog_intelligence_index
            ON model_snapshots (sync_id, source, intelligence_index, provider, model_id);
        CREATE INDEX IF NOT EXISTS idx_model_snapshots_catalog_downloads
            ON model_snapshots (sync_id, source, downloads, provider, model_id);
    END IF;
END
$$;
