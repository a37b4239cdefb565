-- The schema drift alarm (DESIGN.md §9): every top-level record key that each source has
-- stored, with the sync that stored it first. A sync's `model_sync_sources.new_fields` are
-- the keys whose first sync it is; the first sync of a source in a database is its baseline
-- (it records the keys and reports none). Keys longer than 200 characters are kept cut to 200
-- and a trailing '…' (as the worker records them).
CREATE TABLE model_source_fields (
    source        text        NOT NULL,
    field         text        NOT NULL,
    first_sync_id bigint      NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, field)
);
CREATE INDEX idx_model_source_fields_first_sync ON model_source_fields (source, first_sync_id);

-- Backfill from what the snapshots already hold, so that an upgraded database does not take
-- its next sync for a baseline: each key with the first sync that stored it. One pass over
-- the stored records' keys; nothing else is read or rewritten.
INSERT INTO model_source_fields (source, field, first_sync_id, first_seen_at)
SELECT source, field, min(sync_id), min(synced_at)
  FROM (SELECT s.source,
               CASE WHEN char_length(k.key) > 200 THEN left(k.key, 200) || '…' ELSE k.key END AS field,
               s.sync_id,
               s.synced_at
          FROM model_snapshots s
         CROSS JOIN LATERAL jsonb_object_keys(
                 CASE WHEN jsonb_typeof(s.data) = 'object' THEN s.data ELSE '{}'::jsonb END) AS k(key)
       ) keys
 GROUP BY source, field;
