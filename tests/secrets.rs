//! Secrets through the real binary: configuration and connection errors never print them, and
//! they may come from a credentials directory (systemd `LoadCredential=`) instead of the
//! environment.

mod common;

use common::{BinaryEnv, FixtureServer, TestDb};

#[tokio::test]
async fn configuration_and_connection_errors_never_print_a_secret() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server);
    let secrets = ["831200994455", "0777123456", "hunter2-5e1f", "sk-or-77c1"];
    let cases = [
        // A numeric token is a token, not a number; the bad listen address fails the load.
        env.clone()
            .set("MODEL_LENS_HTTP__ADMIN_TOKEN", "831200994455")
            .set("MODEL_LENS_HTTP__LISTEN", "0777123456"),
        env.clone()
            .set("OPENROUTER_API_KEY", "sk-or-77c1")
            .set("MODEL_LENS_WRITER__BATCH_SIZE", "hunter2-5e1f"),
        env.clone()
            .set("DATABASE_URL", "postgres://model:hunter2-5e1f@localhost:notaport/db"),
        env.clone().set(
            "DATABASE_URL",
            "postgres://model:831200994455@localhost:1/db?sslmode=verify_full",
        ),
        env.clone().set("DATABASE_URL", "host=localhost password='hunter2-5e1f"),
    ];
    for case in cases {
        let run = case.run(&["syncs"]).await;
        assert_eq!(run.code, 2, "{run:?}");
        for secret in secrets {
            assert!(!run.stderr.contains(secret), "{secret} printed: {run:?}");
            assert!(!run.stdout.contains(secret), "{secret} printed: {run:?}");
        }
    }
}

#[tokio::test]
async fn secrets_can_come_from_a_credentials_directory_instead_of_the_environment() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("DATABASE_URL"), format!("{}\n", db.url)).unwrap();
    let env = BinaryEnv::new(&db, &server)
        .unset("DATABASE_URL")
        .set("CREDENTIALS_DIRECTORY", credentials.path().to_str().unwrap());

    let run = env.run(&["migrate"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    let applied = db.count("SELECT count(*) FROM model_lens_migrations").await;
    assert!(
        applied > 0,
        "the migrations went to the database named by the credential"
    );
}
