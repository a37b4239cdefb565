-- History: versions instead of copies (DESIGN.md §8). Each distinct content of a model is stored
-- once in model_versions, valid over a range of syncs; volatile values (Hugging Face downloads,
-- likes, trendingScore; Artificial Analysis median_*) go to model_volatile_series only when they
-- change; model_changes says what changed. model_snapshots becomes a view with its old columns,
-- rebuilt from the versions valid at each sync. The old snapshot rows are converted below.
--
-- The rules (what is volatile, what a change is, when a removal is held) live in src/history.rs;
-- the SQL that applies them in src/store/history/. ARCHITECTURE.md has the write path.

-- One row per model key ever listed. `id` is the surrogate key of versions and series (kept
-- narrow: 8 bytes instead of three texts). The other columns describe the key's latest version,
-- a copy kept in the same transactions as model_versions and model_volatile_series, so a
-- re-sync finds everything it compares with one index probe per model:
--   latest_from_sync  valid_from_sync of the key's latest version (open or closed)
--   closed_as         NULL while that version is current; else why it closed
--                     ('removed', 'out_of_window')
--   content_hash      the latest version's content hash (NULL: converted from old snapshots,
--                     not hashed yet; the next sync compares the content itself)
--   record_hash       the hash of the record as last fetched (volatile values included)
--   columns_hash      the hash of the latest version's parsed content columns: the same record
--                     and the same columns mean the same content, so a re-sync computes the
--                     content hash only for records that differ (NULL like content_hash)
-- One index serves both needs of the key: uniqueness, and the probe of every record of every
-- sync. It is a hash index (an exclusion constraint, since hash indexes cannot be UNIQUE) on the
-- key as one text, `source || length(provider) || ':' || provider || model_id` (the length
-- makes it unambiguous): a probe reads one bucket page where a B-tree on three text columns
-- walks three or four levels (re-syncs about 3x faster, measured in bench/), and it costs half
-- of a B-tree plus a hash index on every new key. Nothing looks a key up by `id` (versions
-- and series are found by key_id through their own keys), so `id` has no index.
CREATE SEQUENCE model_keys_id_seq AS bigint;
CREATE TABLE model_keys (
    source           text NOT NULL,
    provider         text NOT NULL,
    model_id         text NOT NULL,
    id               bigint NOT NULL DEFAULT nextval('model_keys_id_seq'),
    first_sync_id    bigint NOT NULL,
    latest_from_sync bigint NOT NULL,
    closed_as        text CHECK (closed_as IN ('removed', 'out_of_window')),
    content_hash     bytea,
    record_hash      bytea NOT NULL,
    columns_hash     bytea,
    CONSTRAINT model_keys_unique EXCLUDE USING hash (
        (source || length(provider)::text || ':' || provider || model_id) WITH =)
) WITH (fillfactor = 90);
ALTER SEQUENCE model_keys_id_seq OWNED BY model_keys.id;

-- One row per model key per distinct content. Valid from sync `valid_from_sync` up to, not
-- including, `valid_to_sync` (NULL: still current). `data` is the record without its volatile
-- keys; `volatile`, `downloads` and `likes` are the volatile values at `valid_from_sync` (later
-- ones are in model_volatile_series). `content_hash` excludes the volatile fields; NULL for a
-- version converted from old snapshot rows. `record_hash` is the hash of the whole record at
-- `valid_from_sync` (what model_snapshots.content_hash always held).
CREATE TABLE model_versions (
    key_id                     bigint NOT NULL,
    valid_from_sync            bigint NOT NULL,
    valid_to_sync              bigint,
    end_reason                 text CHECK (end_reason IN ('replaced', 'removed', 'out_of_window')),
    source                     text NOT NULL,
    provider                   text NOT NULL,
    model_id                   text NOT NULL,
    name                       text,
    context_length             bigint,
    max_output_tokens          bigint,
    input_price_per_mtok       numeric,
    output_price_per_mtok      numeric,
    cache_read_price_per_mtok  numeric,
    cache_write_price_per_mtok numeric,
    input_modalities           text[],
    output_modalities          text[],
    supports_tools             boolean,
    supports_reasoning         boolean,
    open_weights               boolean,
    release_date               date,
    downloads                  bigint,
    likes                      bigint,
    intelligence_index         numeric,
    price_tiers                jsonb,
    status                     text,
    expires_on                 date,
    intelligence_index_version text,
    data                       jsonb NOT NULL,
    volatile                   jsonb,
    content_hash               bytea,
    record_hash                bytea NOT NULL,
    PRIMARY KEY (key_id, valid_from_sync),
    CHECK (valid_to_sync IS NULL OR valid_to_sync > valid_from_sync),
    CHECK ((valid_to_sync IS NULL) = (end_reason IS NULL))
);
-- At most one current version per key.
CREATE UNIQUE INDEX model_versions_current ON model_versions (key_id) WHERE valid_to_sync IS NULL;
-- "The versions of a source valid at sync N": the current ones and those closed after N.
CREATE INDEX model_versions_source_valid_to ON model_versions (source, valid_to_sync);

-- Volatile values of a model at the syncs where they differed from the previous ones (the
-- values at a version's start are in the version itself).
CREATE TABLE model_volatile_series (
    key_id      bigint NOT NULL,
    sync_id     bigint NOT NULL,
    downloads   bigint,
    likes       bigint,
    volatile    jsonb,
    record_hash bytea NOT NULL,
    PRIMARY KEY (key_id, sync_id)
);

-- What changed, written in the transactions that open and close the versions. `fields` lists
-- the content columns that changed (`data` when the stored record changed); `before` and
-- `after` hold content columns only, prices as exact decimal strings. A non-NULL
-- `hold_reason` asks consumers to hold the change (a price jump): the store keeps it as
-- upstream said it.
CREATE TABLE model_changes (
    id          bigserial PRIMARY KEY,
    sync_id     bigint NOT NULL,
    source      text NOT NULL,
    provider    text NOT NULL,
    model_id    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('added', 'removed', 'changed', 'reappeared')),
    fields      text[] NOT NULL DEFAULT '{}',
    before      jsonb,
    after       jsonb,
    hold_reason text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_model_changes_sync_id ON model_changes (sync_id);
CREATE INDEX idx_model_changes_model ON model_changes (source, provider, model_id);

-- Models a complete listing lacked while its removals were held: model_snapshots leaves them
-- out of that sync (it shows what the sync fetched) while they stay current.
CREATE TABLE model_held_absences (
    sync_id bigint NOT NULL,
    key_id  bigint NOT NULL,
    PRIMARY KEY (sync_id, key_id)
);

-- What a running sync recorded: per batch, the ids of the keys it wrote or found unchanged
-- (the end of a listing compares the source's current models with them; a restarted writer
-- reloads them). One row per batch, deleted in the sync's final transaction (or by the
-- recovery of an interrupted sync): it never grows the database. DELETE, not TRUNCATE: the
-- runtime role has no TRUNCATE.
CREATE TABLE model_sync_seen (
    sync_id bigint NOT NULL,
    source  text NOT NULL,
    key_ids bigint[] NOT NULL
);
-- Arrays of ids barely compress and live for one sync: store them without trying.
ALTER TABLE model_sync_seen ALTER COLUMN key_ids SET STORAGE EXTERNAL;

--   snapshot_rows      the models this sync recorded for the source (its rows of
--                      model_snapshots), counted by the writer in its own transactions
--   listing_truncated  whether the listing was cut by max_models (NULL: not finished, failed)
--   removals_held      a complete listing lacked more than history.max_removed_percent of the
--                      source's models: nothing was removed
ALTER TABLE model_sync_sources
    ADD COLUMN snapshot_rows bigint NOT NULL DEFAULT 0,
    ADD COLUMN listing_truncated boolean,
    ADD COLUMN removals_held boolean NOT NULL DEFAULT false;

-- The content columns of a version as the JSON of model_changes.before / after: prices and
-- the intelligence index as exact decimal strings, dates as ISO strings. Volatile values
-- (downloads, likes) are not content.
CREATE FUNCTION model_lens_content(v model_versions) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'name', v.name,
        'context_length', v.context_length,
        'max_output_tokens', v.max_output_tokens,
        'input_price_per_mtok', v.input_price_per_mtok::text,
        'output_price_per_mtok', v.output_price_per_mtok::text,
        'cache_read_price_per_mtok', v.cache_read_price_per_mtok::text,
        'cache_write_price_per_mtok', v.cache_write_price_per_mtok::text,
        'input_modalities', to_jsonb(v.input_modalities),
        'output_modalities', to_jsonb(v.output_modalities),
        'supports_tools', v.supports_tools,
        'supports_reasoning', v.supports_reasoning,
        'open_weights', v.open_weights,
        'release_date', to_jsonb(v.release_date),
        'intelligence_index', v.intelligence_index::text,
        'price_tiers', v.price_tiers,
        'status', v.status,
        'expires_on', to_jsonb(v.expires_on),
        'intelligence_index_version', v.intelligence_index_version)
$$;

-- ---------------------------------------------------------------------------------------------
-- Conversion of the old snapshot rows (one row per model per sync) into keys, versions and
-- series. For every key, in sync order:
--   * a sync of the source that did not succeed (failed, skipped, interrupted) and lacks the
--     key breaks nothing: the key keeps its last known state, as model_snapshots now shows it;
--   * a successful sync of the source that lacks the key closes its version there
--     ('out_of_window': old syncs did not record whether a listing was complete);
--   * a row whose content (every column but the volatile ones) differs from the key's previous
--     row starts a new version; one whose volatile values or record hash differ adds a series
--     row.
-- Rows of syncs without a model_sync_sources row (deleted syncs) cannot be shown by the view
-- and are not converted.
-- ---------------------------------------------------------------------------------------------

-- The volatile keys of a record: the same rule as src/history.rs (`is_volatile`).
CREATE FUNCTION pg_temp.volatile_keys(source text, data jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(key), '{}') FROM jsonb_object_keys(
        CASE WHEN jsonb_typeof(data) = 'object' THEN data ELSE '{}'::jsonb END) AS key
     WHERE (source = 'huggingface' AND key IN ('downloads', 'likes', 'trendingScore'))
        OR (source = 'artificial_analysis' AND key LIKE 'median\_%')
$$;

-- For every sync of every source, the next sync in which that source succeeded.
CREATE TEMP TABLE conversion_next_success ON COMMIT DROP AS
SELECT ss.source, ss.sync_id,
       (SELECT min(later.sync_id) FROM model_sync_sources later
         WHERE later.source = ss.source AND later.status = 'success'
           AND later.sync_id > ss.sync_id) AS next_success
  FROM model_sync_sources ss;
CREATE UNIQUE INDEX ON conversion_next_success (source, sync_id);

CREATE TEMP TABLE conversion_rows ON COMMIT DROP AS
SELECT r.*,
       -- the successful sync after this row and before the key's next row: the key is gone there
       CASE WHEN n.next_success < coalesce(r.next_row_sync, 9223372036854775807)
            THEN n.next_success END AS gap_close
  FROM (SELECT s.sync_id, s.source, s.provider, s.model_id,
               md5(row(s.name, s.context_length, s.max_output_tokens, s.input_price_per_mtok,
                       s.output_price_per_mtok, s.cache_read_price_per_mtok,
                       s.cache_write_price_per_mtok, s.input_modalities, s.output_modalities,
                       s.supports_tools, s.supports_reasoning, s.open_weights, s.release_date,
                       s.intelligence_index, s.price_tiers, s.status, s.expires_on,
                       s.intelligence_index_version,
                       s.data - pg_temp.volatile_keys(s.source, s.data))::text) AS content,
               md5(row(s.downloads, s.likes, s.content_hash)::text) AS volatile_state,
               lead(s.sync_id) OVER key_order AS next_row_sync
          FROM model_snapshots s
         WHERE EXISTS (SELECT 1 FROM model_sync_sources ss
                        WHERE ss.sync_id = s.sync_id AND ss.source = s.source)
        WINDOW key_order AS (PARTITION BY s.source, s.provider, s.model_id ORDER BY s.sync_id)) r
  JOIN conversion_next_success n ON n.source = r.source AND n.sync_id = r.sync_id;

-- Number the versions of each key: a row starts one when it is the key's first, when the key
-- was gone before it, or when its content differs from the previous row's.
CREATE TEMP TABLE conversion_versioned ON COMMIT DROP AS
SELECT v.*, sum(v.starts::int) OVER (PARTITION BY v.source, v.provider, v.model_id
                                       ORDER BY v.sync_id) AS version_no
  FROM (SELECT r.*,
               coalesce(lag(r.gap_close) OVER w IS NOT NULL OR lag(r.content) OVER w <> r.content,
                        true) AS starts,
               lag(r.volatile_state) OVER w AS previous_volatile_state
          FROM conversion_rows r
        WINDOW w AS (PARTITION BY r.source, r.provider, r.model_id ORDER BY r.sync_id)) v;

CREATE TEMP TABLE conversion_versions ON COMMIT DROP AS
SELECT source, provider, model_id, version_no,
       min(sync_id) AS valid_from_sync,
       max(sync_id) AS last_row_sync,
       -- of the version's last row: closed by a gap, or replaced by the next version, or open
       (array_agg(gap_close ORDER BY sync_id DESC))[1] AS gap_close,
       (array_agg(next_row_sync ORDER BY sync_id DESC))[1] AS next_row_sync
  FROM conversion_versioned
 GROUP BY source, provider, model_id, version_no;

INSERT INTO model_keys (source, provider, model_id, id, first_sync_id, latest_from_sync, closed_as,
                        content_hash, record_hash)
SELECT k.source, k.provider, k.model_id,
       nextval('model_keys_id_seq'), k.first_sync_id, k.latest_from_sync,
       CASE WHEN k.latest_closed THEN 'out_of_window' END, NULL, s.content_hash
  FROM (SELECT source, provider, model_id,
               min(valid_from_sync) AS first_sync_id,
               max(valid_from_sync) AS latest_from_sync,
               max(last_row_sync) AS last_row_sync,
               bool_or(gap_close IS NOT NULL AND next_row_sync IS NULL) AS latest_closed
          FROM conversion_versions
         GROUP BY source, provider, model_id
         ORDER BY first_sync_id, source, provider, model_id) k
  JOIN model_snapshots s ON s.sync_id = k.last_row_sync AND s.source = k.source
                        AND s.provider = k.provider AND s.model_id = k.model_id;

INSERT INTO model_versions (key_id, valid_from_sync, valid_to_sync, end_reason, source, provider,
    model_id, name, context_length, max_output_tokens, input_price_per_mtok, output_price_per_mtok,
    cache_read_price_per_mtok, cache_write_price_per_mtok, input_modalities, output_modalities,
    supports_tools, supports_reasoning, open_weights, release_date, downloads, likes,
    intelligence_index, price_tiers, status, expires_on, intelligence_index_version, data,
    volatile, content_hash, record_hash)
SELECT k.id, v.valid_from_sync,
       coalesce(v.gap_close, v.next_row_sync),
       CASE WHEN v.gap_close IS NOT NULL THEN 'out_of_window'
            WHEN v.next_row_sync IS NOT NULL THEN 'replaced' END,
       s.source, s.provider, s.model_id, s.name, s.context_length, s.max_output_tokens,
       s.input_price_per_mtok, s.output_price_per_mtok, s.cache_read_price_per_mtok,
       s.cache_write_price_per_mtok, s.input_modalities, s.output_modalities, s.supports_tools,
       s.supports_reasoning, s.open_weights, s.release_date, s.downloads, s.likes,
       s.intelligence_index, s.price_tiers, s.status, s.expires_on, s.intelligence_index_version,
       s.data - vk.keys,
       CASE WHEN cardinality(vk.keys) > 0 THEN
           (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(s.data) e WHERE e.key = ANY (vk.keys))
       END,
       NULL, s.content_hash
  FROM conversion_versions v
  JOIN model_keys k ON k.source = v.source AND k.provider = v.provider AND k.model_id = v.model_id
  JOIN model_snapshots s ON s.sync_id = v.valid_from_sync AND s.source = v.source
                        AND s.provider = v.provider AND s.model_id = v.model_id
 CROSS JOIN LATERAL (SELECT pg_temp.volatile_keys(s.source, s.data) AS keys) vk;

INSERT INTO model_volatile_series (key_id, sync_id, downloads, likes, volatile, record_hash)
SELECT k.id, r.sync_id, s.downloads, s.likes,
       CASE WHEN cardinality(vk.keys) > 0 THEN
           (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(s.data) e WHERE e.key = ANY (vk.keys))
       END,
       s.content_hash
  FROM conversion_versioned r
  JOIN model_keys k ON k.source = r.source AND k.provider = r.provider AND k.model_id = r.model_id
  JOIN model_snapshots s ON s.sync_id = r.sync_id AND s.source = r.source
                        AND s.provider = r.provider AND s.model_id = r.model_id
 CROSS JOIN LATERAL (SELECT pg_temp.volatile_keys(s.source, s.data) AS keys) vk
 WHERE NOT r.starts AND r.volatile_state IS DISTINCT FROM r.previous_volatile_state;

UPDATE model_sync_sources ss
   SET snapshot_rows = c.rows
  FROM (SELECT sync_id, source, count(*) AS rows FROM model_snapshots GROUP BY sync_id, source) c
 WHERE ss.sync_id = c.sync_id AND ss.source = c.source;

DROP TABLE model_snapshots;

-- DESIGN.md §4's table, now read from the versions. For sync N and each source of N: the
-- versions valid at N, with the volatile values as of N, minus the models a held listing lacked.
-- For a source that succeeded in N that is exactly what N fetched; for one that failed or was
-- skipped, its last known state.
CREATE VIEW model_snapshots AS
SELECT ss.sync_id, v.source, v.provider, v.model_id, v.name, v.context_length,
       v.max_output_tokens, v.input_price_per_mtok, v.output_price_per_mtok,
       v.cache_read_price_per_mtok, v.cache_write_price_per_mtok, v.input_modalities,
       v.output_modalities, v.supports_tools, v.supports_reasoning, v.open_weights,
       v.release_date,
       CASE WHEN p.sync_id IS NULL THEN v.downloads ELSE p.downloads END AS downloads,
       CASE WHEN p.sync_id IS NULL THEN v.likes ELSE p.likes END AS likes,
       v.intelligence_index,
       CASE WHEN p.sync_id IS NULL THEN coalesce(v.data || v.volatile, v.data)
            ELSE coalesce(v.data || p.volatile, v.data) END AS data,
       CASE WHEN p.sync_id IS NULL THEN v.record_hash ELSE p.record_hash END AS content_hash,
       s.started_at AS synced_at,
       v.price_tiers, v.status, v.expires_on, v.intelligence_index_version
  FROM model_sync_sources ss
  JOIN model_syncs s ON s.id = ss.sync_id
  JOIN model_versions v
    ON v.source = ss.source
   AND v.valid_from_sync <= ss.sync_id
   AND (v.valid_to_sync IS NULL OR v.valid_to_sync > ss.sync_id)
  LEFT JOIN LATERAL (
        SELECT x.sync_id, x.downloads, x.likes, x.volatile, x.record_hash
          FROM model_volatile_series x
         WHERE x.key_id = v.key_id AND x.sync_id <= ss.sync_id AND x.sync_id > v.valid_from_sync
         ORDER BY x.sync_id DESC
         LIMIT 1) p ON true
 WHERE NOT EXISTS (SELECT 1 FROM model_held_absences h
                    WHERE h.sync_id = ss.sync_id AND h.key_id = v.key_id);
