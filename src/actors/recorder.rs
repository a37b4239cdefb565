//! The bookkeeping writes of one sync, in order, on a task of their own: a source's end as it
//! happens, then the final record. The supervisor only queues them, so it answers `GetRunning`
//! and `ForceSync` at once however slow PostgreSQL is. Every write is fenced by the sync's
//! owner token ([`SyncFence`]); transient errors are retried with the writer's backoff.
//!
//! The final record always comes back to the supervisor as `SyncFinalized`, whatever
//! happened to the database (or inside this task): a sync never stays "finalizing".

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use chrono::Utc;
use futures::FutureExt;
use ractor::ActorRef;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::actors::lock_keeper::LockKeeper;
use crate::actors::messages::SupervisorMsg;
use crate::backoff::Backoff;
use crate::config::WriterConfig;
use crate::history::{ChangeKind, ListingEnd};
use crate::model::Source;
use crate::report::{SourceReport, SourceStatus, SyncReport, SyncStatus};
use crate::store::fields;
use crate::store::history::{HistoryRules, ListingSummary};
use crate::store::retry::retry_transient;
use crate::store::syncs::{self, SourceEnd, SyncFence};
use crate::store::{Database, StoreError};
use crate::telemetry;

/// How a sync ended, as the supervisor knows it; the counts come from the tables.
pub struct FinalRecord {
    pub status: SyncStatus,
    pub error: Option<String>,
    pub sources: Vec<SourceEnd>,
    pub keeper: Option<LockKeeper>,
    pub started: Instant,
    /// The report to announce if the database cannot give the recorded one.
    pub fallback: SyncReport,
}

enum Job {
    Source(SourceReport),
    Finalize(Box<FinalRecord>),
}

/// The queue of one sync's bookkeeping writes.
pub struct Recorder {
    jobs: mpsc::UnboundedSender<Job>,
    supervisor: ActorRef<SupervisorMsg>,
}

impl Recorder {
    pub fn start(
        database: Database,
        fence: SyncFence,
        retries: &WriterConfig,
        rules: HistoryRules,
        supervisor: ActorRef<SupervisorMsg>,
    ) -> Recorder {
        let (jobs, queue) = mpsc::unbounded_channel();
        let worker = Worker {
            database,
            fence,
            backoff: retries.retry_backoff(),
            max_retries: retries.max_retries,
            rules,
            supervisor: supervisor.clone(),
        };
        let span = tracing::info_span!("recorder", sync_id = worker.fence.sync_id);
        tokio::spawn(worker.run(queue).instrument(span));
        Recorder { jobs, supervisor }
    }

    /// Records a source's end (status and counts so far).
    pub fn source_finished(&self, report: SourceReport) {
        let _ = self.jobs.send(Job::Source(report));
    }

    /// Writes the final record, releases the lock and answers `SyncFinalized`.
    pub fn finalize(&self, record: FinalRecord) {
        if let Err(mpsc::error::SendError(Job::Finalize(record))) = self.jobs.send(Job::Finalize(Box::new(record))) {
            // The task is gone (it cannot be, short of the runtime ending): answer anyway;
            // dropping the keeper releases the lock.
            tracing::error!("the sync's recorder is gone; its final record is not written");
            let report = record.fallback;
            let _ = self.supervisor.cast(SupervisorMsg::SyncFinalized { report });
        }
    }
}

struct Worker {
    database: Database,
    fence: SyncFence,
    backoff: Backoff,
    max_retries: u32,
    rules: HistoryRules,
    supervisor: ActorRef<SupervisorMsg>,
}

impl Worker {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = queue.recv().await {
            match job {
                Job::Source(report) => {
                    let source = report.source.clone();
                    let written = AssertUnwindSafe(self.record_source(&report)).catch_unwind().await;
                    if written.is_err() {
                        tracing::error!(%source, "recording the source's end panicked");
                    }
                }
                Job::Finalize(record) => {
                    let fallback = record.fallback.clone();
                    let report = match AssertUnwindSafe(self.finalize(*record)).catch_unwind().await {
                        Ok(report) => report,
                        Err(_) => {
                            tracing::error!("writing the sync's final record panicked; it will be marked interrupted at the next start");
                            fallback
                        }
                    };
                    let _ = self.supervisor.cast(SupervisorMsg::SyncFinalized { report });
                    return;
                }
            }
        }
    }

    async fn record_source(&self, report: &SourceReport) {
        let written = retry_transient(self.backoff, self.max_retries, "source result", || {
            syncs::record_source(&self.database, &self.fence, report)
        })
        .await;
        match written {
            Ok(()) => {}
            Err(StoreError::Fenced { .. }) => {
                tracing::warn!(source = %report.source, "the sync is no longer ours; the source's result is not recorded")
            }
            // The final record writes every source again.
            Err(error) => tracing::error!(source = %report.source, %error, "could not record the source's result"),
        }
    }

    /// The final record's transaction (`syncs::finalize_sync`), transient errors retried.
    async fn write_final(
        &self,
        status: SyncStatus,
        error: Option<&str>,
        sources: &[SourceEnd],
    ) -> Result<Option<Vec<(Source, ListingSummary)>>, StoreError> {
        retry_transient(self.backoff, self.max_retries, "sync result", || {
            syncs::finalize_sync(&self.database, &self.fence, status, error, sources, &self.rules)
        })
        .await
    }

    async fn finalize(&self, record: FinalRecord) -> SyncReport {
        let FinalRecord {
            mut status,
            mut error,
            mut sources,
            keeper,
            started,
            fallback,
        } = record;
        for end in &mut sources {
            end.new_fields = self.drift(end.source).await;
        }
        let written = self.write_final(status, error.as_deref(), &sources).await;
        let written = match written {
            Err(cause) if sources.iter().any(|end| end.status == SourceStatus::Success) => {
                tracing::error!(
                    error = %cause,
                    "could not record the sync's result with the ends of its listings; recording the sources that succeeded as failed, so that their listings close nothing"
                );
                (status, error) = fail_succeeded_sources(&mut sources, status, error, &cause);
                self.write_final(status, error.as_deref(), &sources).await
            }
            other => other,
        };
        match &written {
            Ok(Some(listings)) => report_listings(listings),
            Ok(None) => tracing::warn!(
                status = status.as_str(),
                "the sync was ended by another process (the sync lock was lost); its record is left as that process wrote it"
            ),
            Err(error) => tracing::error!(
                %error,
                "could not record the sync's result; it will be marked interrupted at the next start"
            ),
        }
        // Released only now: no other process may start (and fence this one) before the
        // final record is in.
        if let Some(keeper) = keeper {
            keeper.release().await;
        }
        let report = match syncs::get_sync(&self.database, self.fence.sync_id).await {
            Ok(Some(report)) => report,
            _ => fallback,
        };
        let now = Utc::now().timestamp_millis() as f64 / 1000.0;
        for source in report
            .sources
            .iter()
            .filter(|source| source.status != SourceStatus::Skipped)
        {
            if let Some(name) = Source::parse(&source.source) {
                telemetry::source_models(name, source.models_stored.max(0) as u64);
                if source.status == SourceStatus::Success {
                    telemetry::source_succeeded(name, now);
                }
            }
        }
        let duration = started.elapsed();
        let success_time = (report.status == SyncStatus::Success).then_some(now);
        telemetry::sync_finished(report.status.as_str(), duration, success_time);
        tracing::info!(
            status = report.status.as_str(),
            duration_ms = duration.as_millis() as u64,
            stored = report.models_stored,
            "sync finished"
        );
        report
    }

    /// The drift alarm of a finished source: the record keys this sync stored first go to its
    /// row (`new_fields`), to the log (once: only this sync stored them first) and to
    /// `model_lens_source_new_fields`. A source's first sync in the database is its baseline
    /// and reports none. `None` when it cannot be computed.
    async fn drift(&self, source: Source) -> Option<Vec<String>> {
        let drift = match fields::drift(&self.database, self.fence.sync_id, source).await {
            Ok(drift) => drift,
            Err(error) => {
                tracing::error!(%source, %error, "could not compute the source's new record fields");
                return None;
            }
        };
        let new_fields = drift.new_fields();
        if drift.baseline && !drift.first_seen.is_empty() {
            tracing::info!(%source, fields = drift.first_seen.len(), "first sync of the source in this database: its record keys are the baseline of the drift alarm");
        } else if !new_fields.is_empty() {
            tracing::warn!(%source, new_fields = %new_fields.join(", "), "the source's records have keys no earlier sync stored");
        }
        telemetry::source_new_fields(source, new_fields.len());
        Some(new_fields)
    }
}

/// What the end of each listing did to history, to the metrics and the log.
/// The final record's second chance, when the first failed for good (a refused write while
/// ending a listing, say): a sync must not stay `running`, and a listing whose end could not be
/// applied must not count as complete. Every source that succeeded becomes failed with the
/// cause (a failed listing closes nothing); the sync's status and error follow.
fn fail_succeeded_sources(
    sources: &mut [SourceEnd],
    status: SyncStatus,
    error: Option<String>,
    cause: &StoreError,
) -> (SyncStatus, Option<String>) {
    let mut errors: Vec<String> = error.into_iter().collect();
    for end in sources.iter_mut().filter(|end| end.status == SourceStatus::Success) {
        let message = format!("its listing could not be recorded in history: {cause}");
        errors.push(format!("{}: {message}", end.source));
        end.status = SourceStatus::Failed;
        end.error = Some(message);
    }
    let status = match status {
        SyncStatus::Interrupted => SyncStatus::Interrupted,
        _ => SyncStatus::from_sources(sources.iter().map(|end| end.status)),
    };
    (status, Some(errors.join("; ")))
}

fn report_listings(listings: &[(Source, ListingSummary)]) {
    for (source, summary) in listings {
        if summary.removed > 0 {
            telemetry::model_changes(*source, ChangeKind::Removed, summary.removed);
        }
        if let ListingEnd::Hold(cause) = summary.end {
            telemetry::removals_held(*source);
            tracing::warn!(%source, %cause, "removals held: the models the listing lacked stay current");
        } else if summary.closed > 0 {
            tracing::info!(%source, closed = summary.closed, removed = summary.removed, "closed the versions the listing lacked");
        }
    }
}
