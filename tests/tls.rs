//! TLS to PostgreSQL (`sslmode`, `sslrootcert`) against a local server with `ssl=on`, a
//! certificate for `localhost` signed by a CA made at test time, and a `pg_hba.conf` that
//! admits TCP clients only over TLS. Both the pool and the dedicated connections (the sync lock,
//! migrations) are checked, and the real binary syncs over `verify-full`.

mod common;

use common::tls_cluster::TlsCluster;
use common::{fixture_records, BinaryEnv, FixtureServer, TestDb};
use model_lens_sync::config::DatabaseConfig;
use model_lens_sync::store::{connect_pool, Database, StoreError};

async fn database(url: &str) -> Result<Database, StoreError> {
    connect_pool(url, &DatabaseConfig::default())
}

/// Whether the session of `client` is encrypted, by the server's own account.
async fn session_uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .expect("read pg_stat_ssl")
        .get(0)
}

/// Connects through the pool and a dedicated connection; both must be encrypted.
async fn assert_connects_over_tls(url: &str) {
    let database = database(url).await.unwrap_or_else(|error| panic!("{url}: {error}"));
    let pooled = database
        .pool
        .get()
        .await
        .unwrap_or_else(|error| panic!("{url}: {error}"));
    assert!(
        session_uses_tls(&pooled).await,
        "{url}: the pooled session is not encrypted"
    );
    let dedicated = database
        .dedicated_connection()
        .await
        .unwrap_or_else(|error| panic!("{url}: {error}"));
    assert!(
        session_uses_tls(&dedicated).await,
        "{url}: the dedicated session is not encrypted"
    );
}

/// Both kinds of connection must fail; returns the pool's error text.
async fn connection_error(url: &str) -> String {
    let database = database(url).await.unwrap_or_else(|error| panic!("{url}: {error}"));
    let dedicated = database.dedicated_connection().await;
    assert!(dedicated.is_err(), "{url}: the dedicated connection was accepted");
    match database.ping().await {
        Ok(()) => panic!("{url}: the pool connected"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn verify_full_connects_with_the_right_ca_and_host_name() {
    let server = TlsCluster::get().await;
    let db = server.create_database().await;
    let query = format!("sslmode=verify-full&sslrootcert={}", server.ca_file.display());
    assert_connects_over_tls(&server.url("localhost", &db, &query)).await;
    // The key=value form too.
    let key_value = format!(
        "host=localhost port={} user=postgres dbname={db} sslmode=verify-full sslrootcert='{}'",
        server.port,
        server.ca_file.display()
    );
    assert_connects_over_tls(&key_value).await;
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_does_not_name() {
    let server = TlsCluster::get().await;
    let db = server.create_database().await;
    let query = format!("sslmode=verify-full&sslrootcert={}", server.ca_file.display());
    let error = connection_error(&server.url("127.0.0.1", &db, &query)).await;
    assert!(error.contains("certificate"), "{error}");
    // verify-ca checks the chain only: the same connection is accepted.
    let query = format!("sslmode=verify-ca&sslrootcert={}", server.ca_file.display());
    assert_connects_over_tls(&server.url("127.0.0.1", &db, &query)).await;
}

#[tokio::test]
async fn verify_full_and_verify_ca_refuse_an_unknown_ca() {
    let server = TlsCluster::get().await;
    let db = server.create_database().await;
    for mode in ["verify-full", "verify-ca"] {
        let query = format!("sslmode={mode}&sslrootcert={}", server.other_ca_file.display());
        let error = connection_error(&server.url("localhost", &db, &query)).await;
        assert!(error.contains("certificate"), "{mode}: {error}");
        // Without sslrootcert the system's roots apply, which do not know the test CA either.
        let error = connection_error(&server.url("localhost", &db, &format!("sslmode={mode}"))).await;
        assert!(error.contains("certificate"), "{mode} with the system roots: {error}");
    }
    let error = connection_error(&server.url("localhost", &db, "sslrootcert=system")).await;
    assert!(error.contains("certificate"), "sslrootcert=system: {error}");
}

#[tokio::test]
async fn require_encrypts_and_checks_the_chain_only_when_given_a_root_certificate() {
    let server = TlsCluster::get().await;
    let db = server.create_database().await;
    // libpq's `require`: encrypted, the certificate not checked.
    assert_connects_over_tls(&server.url("127.0.0.1", &db, "sslmode=require")).await;
    // With a root certificate, `require` checks the chain (as libpq does).
    let query = format!("sslmode=require&sslrootcert={}", server.other_ca_file.display());
    let error = connection_error(&server.url("localhost", &db, &query)).await;
    assert!(error.contains("certificate"), "{error}");
}

#[tokio::test]
async fn prefer_is_the_default_and_uses_tls_when_offered_while_disable_is_refused() {
    let server = TlsCluster::get().await;
    let db = server.create_database().await;
    assert_connects_over_tls(&server.url("localhost", &db, "")).await;
    assert_connects_over_tls(&server.url("localhost", &db, "sslmode=prefer")).await;
    // The server admits TCP only over TLS (hostssl): plaintext is turned away.
    let error = connection_error(&server.url("localhost", &db, "sslmode=disable")).await;
    assert!(
        error.contains("no encryption") || error.contains("pg_hba.conf"),
        "{error}"
    );
}

#[tokio::test]
async fn the_binary_migrates_syncs_and_checks_health_over_verify_full() {
    let server = TlsCluster::get().await;
    let db = server.create_database().await;
    let url = server.url(
        "localhost",
        &db,
        &format!("sslmode=verify-full&sslrootcert={}", server.ca_file.display()),
    );
    // BinaryEnv wants a TestDb for its defaults; DATABASE_URL is replaced by the TLS one.
    let plain = TestDb::create().await;
    let fixtures = FixtureServer::start().await;
    let env = BinaryEnv::new(&plain, &fixtures).set("DATABASE_URL", &url);

    let sync = env.run(&["sync"]).await;
    assert_eq!(sync.code, 0, "{sync:?}");
    let health = env.run(&["health", "--json"]).await;
    assert_ne!(health.code, 2, "{health:?}");

    let database = database(&url).await.expect("a pool");
    let client = database.pool.get().await.expect("a connection");
    let stored: i64 = client
        .query_one("SELECT count(*) FROM model_snapshots WHERE source = 'openrouter'", &[])
        .await
        .expect("count the rows")
        .get(0);
    assert_eq!(stored, fixture_records("openrouter"));
    // Every session the binary opened over TCP was encrypted: the server admits no other.
    let wrong_ca = url.replace(
        &server.ca_file.display().to_string(),
        &server.other_ca_file.display().to_string(),
    );
    let refused = env.clone().set("DATABASE_URL", &wrong_ca).run(&["migrate"]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("certificate"), "{refused:?}");
}
