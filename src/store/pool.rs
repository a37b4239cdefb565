//! The connection pool, with every timeout set so a dead or stalled database is noticed in
//! seconds: connect timeout, pool wait/create/recycle timeouts, `statement_timeout` on every
//! session, and TCP keepalives.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

use crate::config::DatabaseConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database URL: {0} (check DATABASE_URL)")]
    InvalidUrl(String),
    #[error("cannot get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", describe_postgres_error(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Migration(String),
}

impl StoreError {
    /// Whether retrying the same work later may succeed (connection trouble, timeouts,
    /// serialization failures) as opposed to bad data or a bug.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Postgres(error) => match error.code() {
                None => true,
                Some(code) => {
                    let code = code.code();
                    // 08: connection exception, 40: transaction rollback, 53: insufficient
                    // resources, 57: operator intervention (shutdown, statement timeout).
                    ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class))
                }
            },
            _ => false,
        }
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
}

impl Database {
    /// A connection outside the pool, whose server session lives exactly as long as the
    /// returned client.
    pub async fn dedicated_connection(&self) -> Result<tokio_postgres::Client, StoreError> {
        let (client, connection) = self.pg_config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "dedicated database connection closed");
            }
        });
        Ok(client)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }
}

pub fn connect_pool(url: &str, config: &DatabaseConfig) -> Result<Database, StoreError> {
    let mut pg_config: tokio_postgres::Config = url
        .parse()
        .map_err(|error: tokio_postgres::Error| StoreError::InvalidUrl(error.to_string()))?;
    pg_config
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(config.keepalive_idle_secs))
        .application_name("model-lens-sync")
        // NOTICEs (`relation … already exists, skipping`) are not news to anyone.
        .options(format!(
            "-c statement_timeout={} -c TimeZone=UTC -c client_min_messages=warning",
            config.statement_timeout_secs * 1000
        ));
    let manager = Manager::from_config(
        pg_config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let wait = Duration::from_secs(config.pool_wait_timeout_secs);
    let pool = Pool::builder(manager)
        .max_size(config.pool_size)
        .timeouts(Timeouts {
            wait: Some(wait),
            create: Some(Duration::from_secs(config.connect_timeout_secs)),
            recycle: Some(Duration::from_secs(config.connect_timeout_secs)),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|error| StoreError::InvalidUrl(error.to_string()))?;
    Ok(Database { pool, pg_config })
}
