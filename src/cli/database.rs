//! Opens the database a command works on: `DATABASE_URL` if set, else the embedded cluster;
//! then applies the migrations.

use anyhow::Context;

use crate::config::Config;
use crate::store::embedded::{self, EmbeddedPostgres};
use crate::store::syncs::SyncLock;
use crate::store::{connect_pool, migrations, syncs, Database};

pub struct DatabaseSession {
    pub database: Database,
    embedded: Option<EmbeddedPostgres>,
}

impl DatabaseSession {
    /// Connects (starting the embedded cluster if needed) and migrates.
    pub async fn open(config: &Config) -> anyhow::Result<DatabaseSession> {
        let session = DatabaseSession::connect(config).await?;
        migrations::migrate(&session.database)
            .await
            .context("cannot apply the database migrations")?;
        Ok(session)
    }

    /// Connects without migrating.
    pub async fn connect(config: &Config) -> anyhow::Result<DatabaseSession> {
        let (url, embedded) = if config.uses_embedded_database() {
            let not_started = "DATABASE_URL is not set and the embedded PostgreSQL could not start";
            let dir = if config.embedded_dir_is_default() {
                embedded::default_cluster_dir(config.embedded_dir(), &config.database.embedded_fallback_dir)
                    .context(not_started)?
            } else {
                config.embedded_dir().to_path_buf()
            };
            let cluster = EmbeddedPostgres::start(&dir, config.database.postgres_bin_dir.as_deref())
                .await
                .context(not_started)?;
            (cluster.url(), Some(cluster))
        } else {
            (config.database.url.expose().to_string(), None)
        };
        let database = connect_pool(&url, &config.database)?;
        Ok(DatabaseSession { database, embedded })
    }

    /// Marks syncs left `running` by a dead process as `interrupted`, if no live process holds
    /// the sync lock (a sync of another replica is left alone).
    pub async fn recover_interrupted_syncs(&self) -> anyhow::Result<()> {
        if let Some(lock) = SyncLock::try_acquire(&self.database).await? {
            let ids = syncs::mark_orphans_interrupted(&self.database, &lock).await;
            lock.release().await;
            let ids = ids?;
            if !ids.is_empty() {
                tracing::warn!(?ids, "marked syncs left running by a stopped process as interrupted");
            }
        }
        Ok(())
    }

    pub async fn close(self) {
        self.database.pool.close();
        if let Some(cluster) = self.embedded {
            cluster.stop().await;
        }
    }
}
