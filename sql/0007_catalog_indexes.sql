-- The catalog for applications (DESIGN.md §10) reads history's current versions (0006): the
-- rows of model_versions with valid_to_sync IS NULL, with the current volatile values. A page is
-- read per source, in the order a reader asked for, after a keyset cursor: each range must be an
-- index range scan, whatever the size of the catalog and the depth of the cursor.
--
-- The current volatile values. A version holds the values at its start; later ones are in
-- model_volatile_series, and looking up a series point per row (as the model_snapshots view
-- does) cannot be sorted by an index. model_keys, which the writer already updates in the same
-- statement whenever a record changed (volatile-only moves included), gains the current
-- downloads and likes: no extra write, and none for an unchanged model.
ALTER TABLE model_keys ADD COLUMN downloads bigint, ADD COLUMN likes bigint;

-- Backfill: the values of each key's latest version, or of the latest series point after its
-- start (the rule of the model_snapshots view).
UPDATE model_keys k
   SET downloads = c.downloads, likes = c.likes
  FROM (SELECT v.key_id,
               CASE WHEN p.sync_id IS NULL THEN v.downloads ELSE p.downloads END AS downloads,
               CASE WHEN p.sync_id IS NULL THEN v.likes ELSE p.likes END AS likes
          FROM model_versions v
          JOIN model_keys lk ON lk.id = v.key_id AND lk.latest_from_sync = v.valid_from_sync
          LEFT JOIN LATERAL (
                SELECT x.sync_id, x.downloads, x.likes
                  FROM model_volatile_series x
                 WHERE x.key_id = v.key_id AND x.sync_id > v.valid_from_sync
                 ORDER BY x.sync_id DESC
                 LIMIT 1) p ON true) c
 WHERE k.id = c.key_id
   AND (c.downloads IS NOT NULL OR c.likes IS NOT NULL);

-- The current catalog, one row per current model: its current version with the current volatile
-- values. What the read API, `models`, Redis and health read (src/store/catalog.rs), and a plain
-- view for SQL readers. The planner inlines it: a page walks the index of its order (below) on
-- the current versions and probes model_keys once per row it returns, through model_keys' hash
-- index (the key text is that index's expression). A lateral probe, not a join: joined, the
-- planner multiplies the selectivities of the key columns, expects one row, and sorts the whole
-- source instead of walking an index.
CREATE VIEW model_catalog AS
SELECT v.source, v.provider, v.model_id, v.name, v.context_length, v.max_output_tokens,
       v.input_price_per_mtok, v.output_price_per_mtok, v.cache_read_price_per_mtok,
       v.cache_write_price_per_mtok, v.price_tiers, v.input_modalities, v.output_modalities,
       v.supports_tools, v.supports_reasoning, v.open_weights, v.release_date, v.status,
       v.expires_on, k.downloads, k.likes, v.intelligence_index, v.intelligence_index_version,
       v.valid_from_sync
  FROM model_versions v
  LEFT JOIN LATERAL (
        SELECT k.downloads, k.likes
          FROM model_keys k
         WHERE (k.source || length(k.provider)::text || ':' || k.provider || k.model_id)
             = (v.source || length(v.provider)::text || ':' || v.provider || v.model_id)
           AND k.id = v.key_id
         LIMIT 1) k ON true
 WHERE v.valid_to_sync IS NULL;

-- The orders. The key order (source, provider, model_id) on the current versions; it also
-- serves the NULL range of every content sort key (rows without a value, in key order).
CREATE INDEX model_versions_catalog_key
    ON model_versions (source, provider, model_id) WHERE valid_to_sync IS NULL;
-- One per content sort key, (source, <key>, provider, model_id): a forward or backward scan
-- serves both directions. Only the rows that have a value: the Hugging Face hub, nearly all of
-- the rows, has no prices, context lengths or indices, so these cost its syncs next to nothing.
CREATE INDEX model_versions_catalog_input_price
    ON model_versions (source, input_price_per_mtok, provider, model_id)
 WHERE valid_to_sync IS NULL AND input_price_per_mtok IS NOT NULL;
CREATE INDEX model_versions_catalog_output_price
    ON model_versions (source, output_price_per_mtok, provider, model_id)
 WHERE valid_to_sync IS NULL AND output_price_per_mtok IS NOT NULL;
CREATE INDEX model_versions_catalog_context_length
    ON model_versions (source, context_length, provider, model_id)
 WHERE valid_to_sync IS NULL AND context_length IS NOT NULL;
CREATE INDEX model_versions_catalog_intelligence_index
    ON model_versions (source, intelligence_index, provider, model_id)
 WHERE valid_to_sync IS NULL AND intelligence_index IS NOT NULL;
-- Downloads are volatile: they live in model_keys, and the downloads order walks this index and
-- joins each key's current version (src/store/catalog.rs, `CATALOG_BY_KEYS`). Every current key,
-- NULLs included (the other sources have none, and this index is their NULL range too).
CREATE INDEX model_keys_catalog_downloads
    ON model_keys (source, downloads, provider, model_id) WHERE closed_as IS NULL;
