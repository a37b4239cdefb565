//! Keeps the sync lock for the whole of a sync, on a task of its own (not in the supervisor's
//! mailbox): it notices at once when the lock's session ends (a PostgreSQL restart,
//! `pg_terminate_backend`) and, every `sync.lock_check_secs`, asks the session for a sign of
//! life (a broken network is only noticed on use). When the session is gone it re-takes the
//! lock at once (see [`retake`] for how long it tries) and checks that the sync is still
//! `running` under this process's owner token. If another session holds the lock, or another
//! process has ended the sync in between, it tells the supervisor (`LockLost`), which stops the
//! sync's writes and ends it `interrupted`. Meanwhile every write is fenced by the owner token,
//! so nothing is written into a sync that another process took over.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::store::syncs::{self, SyncFence, SyncLock};
use crate::store::Database;

/// The handle of the keeper task. Dropping it releases the lock too (the task sees the
/// handle go and ends, closing the lock's session).
pub struct LockKeeper {
    release: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LockKeeper {
    /// Starts keeping `lock` for the sync of `fence`; `on_lost` is called (once) if the lock
    /// is lost for good.
    pub fn start(
        lock: SyncLock,
        database: Database,
        fence: SyncFence,
        check_every: Duration,
        on_lost: impl FnOnce(String) + Send + 'static,
    ) -> LockKeeper {
        let (release, released) = oneshot::channel();
        let span = tracing::info_span!("sync_lock", sync_id = fence.sync_id);
        let task = tokio::spawn(keep(lock, database, fence, check_every, released, on_lost).instrument(span));
        LockKeeper {
            release: Some(release),
            task: Some(task),
        }
    }

    /// Releases the lock and waits (at most 10 s) until it is released.
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                tracing::warn!("the sync lock was not released within 10 s; its session will end with the process");
            }
        }
    }
}

async fn keep(
    mut lock: SyncLock,
    database: Database,
    fence: SyncFence,
    check_every: Duration,
    mut released: oneshot::Receiver<()>,
    on_lost: impl FnOnce(String),
) {
    let check_every = check_every.max(Duration::from_millis(100));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + check_every, check_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let lost = tokio::select! {
            // Asked to release, or the handle was dropped (the supervisor is gone): either way.
            _ = &mut released => {
                lock.release().await;
                return;
            }
            reason = lock.lost() => reason,
            _ = ticks.tick() => match tokio::time::timeout(check_every, lock.check()).await {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("the lock's session did not answer within {}s", check_every.as_secs_f32()),
            },
        };
        tracing::warn!(reason = %lost, "the sync lock's session was lost; taking the lock back");
        let lost_session = lock.backend_pid();
        drop(lock);
        match retake(&database, &fence, lost_session, &mut released).await {
            Retaken::Yes(new_lock) => {
                tracing::warn!("took the sync lock back; the sync goes on");
                lock = new_lock;
            }
            Retaken::Released => return,
            Retaken::No(why) => {
                let error = format!("{lost}; {why}");
                tracing::error!(%error, "the sync lock is lost");
                on_lost(error);
                // Keep nothing: the supervisor ends the sync; a release request may still come.
                let _ = released.await;
                return;
            }
        }
    }
}

enum Retaken {
    Yes(SyncLock),
    No(String),
    /// Asked to release while trying.
    Released,
}

/// Takes the lock again. While PostgreSQL cannot be reached (a restart), or the lock is still
/// held by the lost session itself (a terminated or cut-off session keeps it until its server
/// process exits), it keeps trying: nobody else can take the lock meanwhile, and the owner-token
/// fence protects the sync's rows against any process that does later. If another session holds
/// the lock, the sync is given up at once. A lock taken back counts only if the sync is still
/// ours.
async fn retake(
    database: &Database,
    fence: &SyncFence,
    lost_session: i32,
    released: &mut oneshot::Receiver<()>,
) -> Retaken {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    let mut attempt = 0;
    loop {
        match SyncLock::try_acquire(database).await {
            Ok(Some(lock)) => return confirm(database, fence, lock, released).await,
            Ok(None) => match SyncLock::holder(database).await {
                Ok(Some(holder)) if holder != lost_session => {
                    return Retaken::No(format!(
                        "another process holds the sync lock now (PostgreSQL backend {holder})"
                    ));
                }
                // Still the lost session's (it has not exited yet), or released meanwhile.
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot see who holds the sync lock yet; retrying"),
            },
            Err(error) => tracing::warn!(%error, "cannot take the sync lock back yet; retrying"),
        }
        let delay = backoff.delay(attempt);
        attempt += 1;
        tokio::select! {
            _ = &mut *released => return Retaken::Released,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// With the lock taken back, checks that the sync is still ours, keeping the lock (nobody
/// else can take it meanwhile) while the check cannot run yet.
async fn confirm(
    database: &Database,
    fence: &SyncFence,
    lock: SyncLock,
    released: &mut oneshot::Receiver<()>,
) -> Retaken {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    let mut attempt = 0;
    loop {
        match syncs::is_still_ours(database, fence).await {
            Ok(true) => return Retaken::Yes(lock),
            Ok(false) => {
                lock.release().await;
                return Retaken::No("another process has ended or taken over the sync meanwhile".into());
            }
            Err(error) => tracing::warn!(%error, "cannot check the sync's row yet; retrying"),
        }
        let delay = backoff.delay(attempt);
        attempt += 1;
        tokio::select! {
            _ = &mut *released => {
                lock.release().await;
                return Retaken::Released;
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
