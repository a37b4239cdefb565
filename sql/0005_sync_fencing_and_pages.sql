-- The supervisor's correctness core (issue 11). Nullable columns without defaults and a new
-- table: this rewrites nothing and runs in milliseconds on a database that already holds
-- millions of snapshot rows. Rows written before this migration keep NULL where a value was
-- never counted.

-- Who owns a running sync: a random token the process records when it starts the sync (and
-- logs). Every bookkeeping write of that process, and every batch it commits, checks
-- `status = 'running' AND owner_token = <its token>`, so a process that lost the sync lock can
-- never write into, or flip back, a sync that another process has since ended.
ALTER TABLE model_syncs ADD COLUMN owner_token text;

-- Records that were identical to one already stored or quarantined in the same sync (an id
-- listed twice with the same content, in one page or in two). The rule, per source and per
-- sync: models_fetched = models_stored + models_rejected + models_duplicates.
-- NULL: a sync recorded before duplicates were counted.
ALTER TABLE model_syncs ADD COLUMN models_duplicates bigint;
ALTER TABLE model_sync_sources ADD COLUMN models_duplicates bigint;

-- The pages each sync committed, written in the same transaction as their rows: a page sent
-- again (after a restart, or a retried batch whose commit was acknowledged late) finds its row
-- here and is skipped, so rows and counts are exact whatever was re-sent. `records` is what
-- the page held (rows + rejects + duplicates); summed, it is the source's models_fetched.
CREATE TABLE model_sync_pages (
    sync_id      bigint NOT NULL REFERENCES model_syncs (id) ON DELETE CASCADE,
    source       text NOT NULL,
    page_no      bigint NOT NULL,
    records      bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync_id, source, page_no)
);
