-- model_snapshots is the one table that grows with the landscape (millions of rows per sync
-- at hub scale). Its foreign key to model_syncs made PostgreSQL look up the parent row for
-- every inserted row, about a third of the ingest time (bench/README.md). Only the writer
-- inserts here, always with the id of the running sync it was given, so the check buys
-- nothing; deleting a sync deletes its snapshots explicitly (docs/operations.md).
ALTER TABLE model_snapshots DROP CONSTRAINT IF EXISTS model_snapshots_sync_id_fkey;
