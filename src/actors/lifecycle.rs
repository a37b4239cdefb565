//! Starting a sync, off the supervisor's mailbox: take the cluster-wide sync lock, mark the
//! syncs that a dead process (or one that lost the lock) left `running` as `interrupted`, and
//! record the new sync with a fresh owner token. The result comes back as `SyncStarted`; the
//! lock stays with a [`LockKeeper`] for the whole sync.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use ractor::ActorRef;

use crate::actors::lock_keeper::LockKeeper;
use crate::actors::messages::{StartFailure, StartedSync, SupervisorMsg};
use crate::actors::run::Plan;
use crate::actors::Services;
use crate::config::Config;
use crate::model::Source;
use crate::report::{SourceStatus, Trigger};
use crate::store::syncs::{self, SyncFence, SyncLock};

/// Which sources run, and why the others do not.
pub fn plan(config: &Config) -> Plan {
    Source::ALL
        .into_iter()
        .map(|source| match config.sources.skip_reason(source) {
            Some(reason) => (source, SourceStatus::Skipped, Some(reason)),
            None => (source, SourceStatus::Running, None),
        })
        .collect()
}

/// Starts a sync in the background; the supervisor hears `SyncStarted`.
pub fn start_sync(services: Services, trigger: Trigger, supervisor: ActorRef<SupervisorMsg>) {
    tokio::spawn(async move {
        let started = AssertUnwindSafe(start(&services, trigger, &supervisor))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(StartFailure::Failed("starting the sync panicked".into())));
        let _ = supervisor.cast(SupervisorMsg::SyncStarted(started));
    });
}

async fn start(
    services: &Services,
    trigger: Trigger,
    supervisor: &ActorRef<SupervisorMsg>,
) -> Result<StartedSync, StartFailure> {
    let database = &services.database;
    let failed = |error: crate::store::StoreError| StartFailure::Failed(error.to_string());
    let Some(lock) = SyncLock::try_acquire(database).await.map_err(failed)? else {
        // Another process holds the lock: name its sync, as the API promises.
        let id = syncs::running_sync_id(database).await.ok().flatten();
        return Err(StartFailure::AlreadyRunning(id));
    };
    // Holding the lock, no live sync of another process can be `running`: any such sync is
    // an orphan (its process died or lost the lock), and marking it fences that process.
    match syncs::mark_orphans_interrupted(database, &lock).await {
        Ok(ids) if !ids.is_empty() => {
            tracing::warn!(?ids, "marked syncs left running by a stopped process as interrupted")
        }
        Ok(_) => {}
        Err(error) => {
            lock.release().await;
            return Err(failed(error));
        }
    }
    let plan = plan(&services.config);
    let owner_token = SyncFence::new_token();
    let (sync_id, started_at) = match syncs::create_sync(database, trigger, &plan, &owner_token).await {
        Ok(created) => created,
        Err(error) => {
            lock.release().await;
            return Err(failed(error));
        }
    };
    let fence = SyncFence {
        sync_id,
        owner_token: owner_token.clone(),
    };
    let lost_to = supervisor.clone();
    let keeper = LockKeeper::start(
        lock,
        database.clone(),
        fence,
        Duration::from_secs(services.config.sync.lock_check_secs),
        move |error| {
            let _ = lost_to.cast(SupervisorMsg::LockLost { sync_id, error });
        },
    );
    tracing::info!(sync_id, trigger = trigger.as_str(), owner_token, "sync started");
    Ok(StartedSync {
        sync_id,
        started_at,
        owner_token,
        keeper,
        plan,
    })
}
