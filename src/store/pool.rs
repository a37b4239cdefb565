//! The connection pool, with every timeout set so a dead or stalled database is noticed in
//! seconds: connect timeout, pool wait/create/recycle timeouts, `statement_timeout` on every
//! session, and TCP keepalives. Every connection (pooled or dedicated) uses TLS as `sslmode`
//! says (`src/store/tls.rs`).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::DatabaseConfig;
use crate::store::tls::{ConnectionSettings, TlsError, TlsPolicy};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database URL: {0} (check DATABASE_URL)")]
    InvalidUrl(String),
    /// A DATABASE_URL that cannot be parsed or a TLS setup that fails (never shows the URL).
    #[error("{0}")]
    Tls(TlsError),
    #[error("cannot get a database connection: {}", describe_pool_error(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", describe_postgres_error(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A migration's SQL failed; the cause keeps its class (a dropped connection is worth
    /// retrying, a syntax error is not).
    #[error("migration {name} failed: {}", describe_postgres_error(.source))]
    MigrationFailed {
        name: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Migration(String),
    /// The sync is no longer `running` under this process's owner token: another process
    /// ended it or took it over (the sync lock was lost). Nothing more may be written for it.
    #[error(
        "sync {sync_id} is no longer running under this process (another process ended it or took it \
         over after the sync lock was lost); nothing more is written for it"
    )]
    Fenced { sync_id: i64 },
}

impl StoreError {
    /// Whether retrying the same work later may succeed (connection trouble, timeouts,
    /// serialization failures) as opposed to bad data or a bug.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Postgres(error) | StoreError::MigrationFailed { source: error, .. } => {
                postgres_error_is_transient(error)
            }
            _ => false,
        }
    }

    /// Whether PostgreSQL refused the data itself (a value out of range, a constraint, a row
    /// too large): writing the same rows again fails again, but other rows would pass.
    pub fn is_data_error(&self) -> bool {
        let StoreError::Postgres(error) = self else {
            return false;
        };
        // 22: data exception, 23: integrity constraint violation, 54: program limit exceeded
        // (a row or index entry too large).
        error
            .code()
            .is_some_and(|code| ["22", "23", "54"].iter().any(|class| code.code().starts_with(class)))
    }
}

fn postgres_error_is_transient(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            // 08: connection exception, 40: transaction rollback, 53: insufficient
            // resources, 57: operator intervention (shutdown, statement timeout).
            ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class))
        }
    }
}

/// deadpool wraps connection errors whose own text is only "db error" or "error performing TLS
/// handshake": show the cause.
fn describe_pool_error(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => describe_postgres_error(error),
        other => other.to_string(),
    }
}

/// tokio-postgres prints only "db error"; show the server's message and SQLSTATE, or the
/// underlying I/O cause.
fn describe_postgres_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} ({}): {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The pool and the connection settings it was built from (the sync lock needs a dedicated
/// connection outside the pool, so that the lock dies with it).
#[derive(Clone)]
pub struct Database {
    pub pool: Pool,
    pub pg_config: tokio_postgres::Config,
    pub tls_policy: TlsPolicy,
    tls: MakeRustlsConnect,
}

impl Database {
    /// A connection outside the pool, whose server session lives exactly as long as the
    /// returned client.
    pub async fn dedicated_connection(&self) -> Result<tokio_postgres::Client, StoreError> {
        let (client, ended) = self.watched_connection().await?;
        tokio::spawn(async move {
            if let Ok(reason) = ended.await {
                tracing::debug!(%reason, "dedicated database connection closed");
            }
        });
        Ok(client)
    }

    /// Like [`Database::dedicated_connection`], with a receiver that says why the session
    /// ended as soon as it does (the server closed it, it was terminated, the network broke).
    pub async fn watched_connection(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::sync::oneshot::Receiver<String>), StoreError> {
        let (client, connection) = self.pg_config.connect(self.tls.clone()).await?;
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let reason = match connection.await {
                Ok(()) => "the server closed the connection".to_string(),
                Err(error) => describe_postgres_error(&error),
            };
            let _ = ended_tx.send(reason);
        });
        Ok((client, ended))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// A second, small pool to the same database for the unauthenticated probes (`/readyz`, the
    /// health monitor), so that probes never wait for the writer's connections and a flood of
    /// probes never takes them. Its sessions are named `model-lens-sync probes`.
    pub fn probe_database(&self, config: &DatabaseConfig) -> Result<Database, StoreError> {
        let mut pg_config = self.pg_config.clone();
        pg_config.application_name(PROBE_APPLICATION_NAME);
        let pool = build_pool(&pg_config, &self.tls, config.probe_pool_size, config)?;
        Ok(Database {
            pool,
            pg_config,
            tls_policy: self.tls_policy.clone(),
            tls: self.tls.clone(),
        })
    }
}

/// `application_name` of the sessions of the worker's main pool and dedicated connections.
pub const APPLICATION_NAME: &str = "model-lens-sync";
/// `application_name` of the probe pool's sessions.
pub const PROBE_APPLICATION_NAME: &str = "model-lens-sync probes";

pub fn connect_pool(url: &str, config: &DatabaseConfig) -> Result<Database, StoreError> {
    let ConnectionSettings {
        config: mut pg_config,
        tls: tls_policy,
    } = ConnectionSettings::parse(url).map_err(StoreError::Tls)?;
    pg_config
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(config.keepalive_idle_secs))
        .application_name(APPLICATION_NAME)
        .options(format!(
            "-c statement_timeout={} -c TimeZone=UTC",
            config.statement_timeout_secs * 1000
        ));
    let tls = tls_policy.connector().map_err(StoreError::Tls)?;
    let pool = build_pool(&pg_config, &tls, config.pool_size, config)?;
    Ok(Database {
        pool,
        pg_config,
        tls_policy,
        tls,
    })
}

fn build_pool(
    pg_config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    size: usize,
    config: &DatabaseConfig,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        pg_config.clone(),
        tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .timeouts(Timeouts {
            wait: Some(Duration::from_secs(config.pool_wait_timeout_secs)),
            create: Some(Duration::from_secs(config.connect_timeout_secs)),
            recycle: Some(Duration::from_secs(config.connect_timeout_secs)),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|error| StoreError::InvalidUrl(error.to_string()))
}
