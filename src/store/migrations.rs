//! Applies the numbered files of `sql/` in order, each in its own transaction, recorded in
//! `model_lens_migrations`, under a session advisory lock so that two processes starting at
//! the same moment do not race (the second waits, then finds nothing left to do).

use crate::store::{Database, StoreError};

/// Key of the advisory lock that serializes migrations (arbitrary, fixed, documented).
pub const MIGRATION_LOCK_KEY: i64 = 0x6d6c_6d69_6772; // "mlmigr"

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations compiled into the binary, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_schema.sql",
        sql: include_str!("../../sql/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "0002_snapshots_without_fk.sql",
        sql: include_str!("../../sql/0002_snapshots_without_fk.sql"),
    },
    Migration {
        version: 3,
        name: "0003_sources_2026.sql",
        sql: include_str!("../../sql/0003_sources_2026.sql"),
    },
    Migration {
        version: 4,
        name: "0004_source_fields.sql",
        sql: include_str!("../../sql/0004_source_fields.sql"),
    },
    Migration {
        version: 5,
        name: "0005_sync_fencing_and_pages.sql",
        sql: include_str!("../../sql/0005_sync_fencing_and_pages.sql"),
    },
    Migration {
        version: 6,
        name: "0006_history.sql",
        sql: include_str!("../../sql/0006_history.sql"),
    },
    Migration {
        version: 7,
        name: "0007_catalog_indexes.sql",
        sql: include_str!("../../sql/0007_catalog_indexes.sql"),
    },
];

fn checksum(sql: &str) -> String {
    blake3::hash(sql.as_bytes()).to_hex().to_string()
}

/// Applies what is missing; returns the names of the migrations applied now.
pub async fn migrate(database: &Database) -> Result<Vec<&'static str>, StoreError> {
    migrate_up_to(database, i32::MAX).await
}

/// Applies what is missing up to `version` included (the upgrade tests start from an older
/// schema holding data).
pub async fn migrate_up_to(database: &Database, version: i32) -> Result<Vec<&'static str>, StoreError> {
    // A dedicated connection: if this process dies, the lock dies with the session.
    let mut client = database.dedicated_connection().await?;
    // Lock first: even `CREATE TABLE IF NOT EXISTS` races between two sessions.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let applied = create_table_and_apply(&mut client, version).await;
    // Unlock even on failure; closing the connection would release it too.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    applied
}

async fn create_table_and_apply(
    client: &mut tokio_postgres::Client,
    up_to: i32,
) -> Result<Vec<&'static str>, StoreError> {
    // Only when missing: the runtime role (docs/operations.md, "Database roles") may not create
    // anything, and an up-to-date database needs no DDL at all.
    let exists: bool = client
        .query_one("SELECT to_regclass('model_lens_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS model_lens_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await
            .map_err(|error| explain_privileges("cannot create model_lens_migrations", error))?;
    }
    apply_missing(client, up_to).await
}

/// A migration refused for lack of privileges is a deployment mistake with a known fix.
fn explain_privileges(what: &str, error: tokio_postgres::Error) -> StoreError {
    if error.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
        return StoreError::Migration(format!(
            "{what}: this database role may not change the schema ({}); run `model-lens-sync migrate` \
             with the migration owner's DATABASE_URL first (docs/operations.md, \"Database roles\")",
            error
                .as_db_error()
                .map(|db| db.message())
                .unwrap_or("permission denied")
        ));
    }
    StoreError::from(error)
}

async fn apply_missing(client: &mut tokio_postgres::Client, up_to: i32) -> Result<Vec<&'static str>, StoreError> {
    let rows = client
        .query("SELECT version, name, checksum FROM model_lens_migrations", &[])
        .await?;
    let mut applied_now = Vec::new();
    for migration in MIGRATIONS.iter().filter(|migration| migration.version <= up_to) {
        let recorded = rows.iter().find(|row| row.get::<_, i32>(0) == migration.version);
        if let Some(row) = recorded {
            let recorded_checksum: String = row.get(2);
            if recorded_checksum != checksum(migration.sql) {
                return Err(StoreError::Migration(format!(
                    "migration {} was changed after it was applied (checksum differs); \
                     add a new migration file instead of editing an applied one",
                    migration.name
                )));
            }
            continue;
        }
        let transaction = client.transaction().await?;
        transaction.batch_execute(migration.sql).await.map_err(|source| {
            if source.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                return explain_privileges(&format!("migration {} failed", migration.name), source);
            }
            // Keeps the cause's class: a dropped connection is retried, a syntax error is not.
            StoreError::MigrationFailed {
                name: migration.name,
                source,
            }
        })?;
        transaction
            .execute(
                "INSERT INTO model_lens_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&migration.version, &migration.name, &checksum(migration.sql)],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(migration = migration.name, "applied migration");
        applied_now.push(migration.name);
    }
    Ok(applied_now)
}

/// Whether every migration of this binary is applied (readiness).
pub async fn is_up_to_date(database: &Database) -> Result<bool, StoreError> {
    let client = database.pool.get().await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('model_lens_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(false);
    }
    // Every version, not the highest: numbers are reserved per feature and may land out of
    // order (0007 before 0006), so a database can hold a later migration and miss an earlier one.
    let applied: Vec<i32> = client
        .query("SELECT version FROM model_lens_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(MIGRATIONS.iter().all(|migration| applied.contains(&migration.version)))
}
