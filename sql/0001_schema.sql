-- The four tables of DESIGN.md §4. Applied once, in a transaction, by `migrate` (and at the
-- start of `serve` / `sync`), recorded in model_lens_migrations.

CREATE TABLE model_syncs (
    id              bigserial PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'success', 'partial', 'failed', 'interrupted')),
    trigger         text NOT NULL CHECK (trigger IN ('schedule', 'manual', 'startup', 'cli')),
    models_fetched  bigint NOT NULL DEFAULT 0,
    models_stored   bigint NOT NULL DEFAULT 0,
    models_rejected bigint NOT NULL DEFAULT 0,
    duration_ms     bigint,
    error           text
);
CREATE INDEX idx_model_syncs_started_at ON model_syncs (started_at DESC);
CREATE INDEX idx_model_syncs_status ON model_syncs (status);

CREATE TABLE model_sync_sources (
    sync_id         bigint NOT NULL REFERENCES model_syncs (id) ON DELETE CASCADE,
    source          text NOT NULL,
    status          text NOT NULL CHECK (status IN ('running', 'success', 'failed', 'skipped')),
    models_fetched  bigint NOT NULL DEFAULT 0,
    models_stored   bigint NOT NULL DEFAULT 0,
    models_rejected bigint NOT NULL DEFAULT 0,
    http_requests   bigint NOT NULL DEFAULT 0,
    bytes           bigint NOT NULL DEFAULT 0,
    duration_ms     bigint,
    error           text,
    PRIMARY KEY (sync_id, source)
);

CREATE TABLE model_snapshots (
    sync_id                    bigint NOT NULL REFERENCES model_syncs (id) ON DELETE CASCADE,
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
    data                       jsonb NOT NULL,
    content_hash               bytea NOT NULL,
    synced_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT model_snapshots_sync_source_provider_model_key
        UNIQUE (sync_id, source, provider, model_id)
);
CREATE INDEX idx_model_snapshots_sync_id ON model_snapshots (sync_id);
CREATE INDEX idx_model_snapshots_synced_at ON model_snapshots (synced_at);
CREATE INDEX idx_model_snapshots_source ON model_snapshots (source);
CREATE INDEX idx_model_snapshots_provider ON model_snapshots (provider);

-- Records that did not become rows, with why. `raw` is text, not jsonb, because a record may
-- hold what jsonb refuses (a NUL escape). `raw_hash` makes re-sent rejects idempotent.
CREATE TABLE model_rejects (
    id          bigserial PRIMARY KEY,
    sync_id     bigint NOT NULL REFERENCES model_syncs (id) ON DELETE CASCADE,
    source      text NOT NULL,
    reason      text NOT NULL,
    detail      text,
    model_id    text,
    raw         text NOT NULL,
    raw_hash    bytea NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT model_rejects_once UNIQUE (sync_id, source, reason, raw_hash)
);
CREATE INDEX idx_model_rejects_sync_id ON model_rejects (sync_id);
