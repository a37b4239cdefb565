-- The normalized columns the sources gained in 2026 (DESIGN.md §9), and the drift alarm's
-- list per source. Nullable without defaults: adding them rewrites nothing, so this runs in
-- milliseconds on a database that already holds millions of snapshot rows.
--   price_tiers                long-context prices: [{"min_context_tokens": 200000,
--                              "input": "10", "output": "37.5", ...}], decimal strings, USD per
--                              million tokens; NULL when the source states none
--   status                     models.dev `alpha` / `beta` / `deprecated`
--   expires_on                 OpenRouter `expiration_date`
--   intelligence_index_version Artificial Analysis index methodology (scores of different
--                              versions are not comparable)
ALTER TABLE model_snapshots
    ADD COLUMN price_tiers jsonb,
    ADD COLUMN status text,
    ADD COLUMN expires_on date,
    ADD COLUMN intelligence_index_version text;

-- Top-level record keys that no earlier sync of the source stored (NULL: not computed, e.g.
-- the source failed or was skipped).
ALTER TABLE model_sync_sources ADD COLUMN new_fields text[];
