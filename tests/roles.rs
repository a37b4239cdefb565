//! The least-privilege roles of `deploy/postgres/roles.sql` (what the compose stack creates),
//! against the real binary: the owner migrates, the runtime role syncs, serves its probes and
//! reads, but cannot change the schema; a database migrated earlier by the superuser is handed
//! over by running the script again. Roles are global to the server, so the cases run in one
//! test, one after the other.

mod common;

use common::{BinaryEnv, FixtureServer, TestDb};

const ROLES_SQL: &str = include_str!("../deploy/postgres/roles.sql");

/// The test database's connection string, as another role (trust authentication).
fn as_role(db: &TestDb, role: &str) -> String {
    db.url
        .split_whitespace()
        .map(|part| {
            if part.starts_with("user=") {
                format!("user={role}")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run_roles_script(db: &TestDb) {
    db.client()
        .await
        .batch_execute(ROLES_SQL)
        .await
        .unwrap_or_else(|error| panic!("roles.sql: {error:?}"));
}

async fn connect_as(db: &TestDb, role: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&as_role(db, role), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connect as {role}: {error}"));
    tokio::spawn(connection);
    client
}

async fn owners_of_model_tables(db: &TestDb) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S', 'v') AND c.relname LIKE 'model%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn the_owner_migrates_and_the_runtime_role_syncs_without_schema_rights() {
    let server = FixtureServer::start().await;

    // A fresh database: roles first, then `migrate` as the owner.
    let db = TestDb::create().await;
    run_roles_script(&db).await;
    let env = BinaryEnv::new(&db, &server);
    let as_app = env.clone().set("DATABASE_URL", &as_role(&db, "model_lens_app"));
    let early = as_app.run(&["sync"]).await;
    assert_eq!(early.code, 2, "the runtime role must not create the schema: {early:?}");
    assert!(
        early.stderr.contains("model-lens-sync migrate") && early.stderr.contains("Database roles"),
        "the error says what to do: {early:?}"
    );
    let migrate = env
        .clone()
        .set("DATABASE_URL", &as_role(&db, "model_lens_owner"))
        .run(&["migrate"])
        .await;
    assert_eq!(migrate.code, 0, "{migrate:?}");
    assert_eq!(owners_of_model_tables(&db).await, vec!["model_lens_owner".to_string()]);

    // The runtime role: a whole sync (COPY, temp staging tables, advisory locks), health, history.
    let sync = as_app.run(&["sync"]).await;
    assert_eq!(sync.code, 0, "{sync:?}");
    let stored = db.count("SELECT count(*) FROM model_snapshots").await;
    assert!(stored > 0);
    let health = as_app.run(&["health", "--json"]).await;
    assert_ne!(health.code, 2, "{health:?}");
    let history = as_app.run(&["syncs", "--json"]).await;
    assert_eq!(history.code, 0, "{history:?}");
    // A second sync against another models.dev listing: history versions, changes, removals
    // and the end of the listings in the final transaction (TEMP tables, DELETE of the sync's
    // scratch), all as the runtime role.
    let older = FixtureServer::start_with_models_dev("modelsdev_api_2025-11.json").await;
    let changed = BinaryEnv::new(&db, &older)
        .set("DATABASE_URL", &as_role(&db, "model_lens_app"))
        .set("MODEL_LENS_HISTORY__MAX_REMOVED_PERCENT", "100");
    let second = changed.run(&["sync"]).await;
    assert_eq!(second.code, 0, "{second:?}");
    for kind in ["changed", "removed"] {
        let count = db
            .count(&format!(
                "SELECT count(*) FROM model_changes WHERE source = 'models_dev' AND kind = '{kind}'"
            ))
            .await;
        assert!(count > 0, "{kind}: {count}");
    }
    assert_eq!(db.count("SELECT count(*) FROM model_sync_seen").await, 0);
    let changes = changed.run(&["changes", "--json"]).await;
    assert_eq!(changes.code, 0, "{changes:?}");
    let stored = db.count("SELECT count(*) FROM model_snapshots").await;

    // ...and nothing more.
    let app = connect_as(&db, "model_lens_app").await;
    for statement in [
        "CREATE TABLE model_intruder (id int)",
        "DROP VIEW model_snapshots",
        "DROP TABLE model_versions",
        "ALTER TABLE model_syncs ADD COLUMN intruder int",
        "CREATE SCHEMA intruder",
        "TRUNCATE model_rejects",
        "TRUNCATE model_sync_seen",
    ] {
        let error = app.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {error:?}"
        );
    }
    let reader = connect_as_reader(&db).await;
    let count: i64 = reader
        .query_one("SELECT count(*) FROM model_snapshots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, stored);
    assert!(
        reader.batch_execute("DELETE FROM model_rejects").await.is_err(),
        "the reader wrote"
    );

    // A database the superuser migrated before the roles existed: the script hands it over.
    let legacy = TestDb::create().await;
    let legacy_env = BinaryEnv::new(&legacy, &server);
    assert_eq!(legacy_env.run(&["sync"]).await.code, 0);
    run_roles_script(&legacy).await;
    assert_eq!(
        owners_of_model_tables(&legacy).await,
        vec!["model_lens_owner".to_string()]
    );
    let legacy_app = legacy_env
        .clone()
        .set("DATABASE_URL", &as_role(&legacy, "model_lens_app"))
        .run(&["sync"])
        .await;
    assert_eq!(legacy_app.code, 0, "{legacy_app:?}");
    assert_eq!(
        legacy
            .count("SELECT count(*) FROM model_syncs WHERE status = 'success'")
            .await,
        2
    );
    // Running the script again changes nothing and fails on nothing.
    run_roles_script(&legacy).await;

    // The compose stack's init script: the same SQL through psql, then the two passwords.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/postgres/initdb/10-model-lens-roles.sh"
    );
    let init = tokio::process::Command::new("bash")
        .arg(script)
        .env("POSTGRES_USER", "postgres")
        .env("POSTGRES_DB", &legacy.url)
        .env(
            "MODEL_LENS_ROLES_SQL",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/postgres/roles.sql"),
        )
        .env("MODEL_LENS_OWNER_PASSWORD", "owner-password-for-tests")
        .env("MODEL_LENS_APP_PASSWORD", "app-password-for-tests")
        .output()
        .await
        .expect("bash runs the init script (psql comes with the PostgreSQL packages)");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let with_passwords = legacy
        .count(
            "SELECT count(*) FROM pg_authid WHERE rolname IN ('model_lens_owner', 'model_lens_app')
               AND rolpassword LIKE 'SCRAM-SHA-256$%'",
        )
        .await;
    assert_eq!(with_passwords, 2, "both roles got a (hashed) password");
}

/// `model_lens_reader` is NOLOGIN (granted to people's roles): log in as a member of it.
async fn connect_as_reader(db: &TestDb) -> tokio_postgres::Client {
    db.client()
        .await
        .batch_execute(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'analyst') THEN CREATE ROLE analyst LOGIN; END IF;
             END $$; GRANT model_lens_reader TO analyst",
        )
        .await
        .unwrap();
    connect_as(db, "analyst").await
}
