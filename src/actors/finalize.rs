//! The end of a sync: once every source's ledger is finished, the run's actors and timers
//! are stopped and its final record is handed to the recorder. Nothing here waits for the
//! writer: a source is finished only when its pages are committed or it failed, so whatever
//! the writer still holds belongs to failed sources. The final transaction takes the sync's
//! row lock, which waits for a batch still committing, so the counts are exact.
//!
//! A source's end as the final record needs it, including whether its listing may not be whole
//! (`SourceEnd::truncated`), goes to `store::syncs::finalize_sync`, whose one transaction also
//! applies the end of each succeeded listing to history (what a whole listing lacked is
//! removed, what a truncated one lacked goes out of window) and deletes the sync's scratch.

use chrono::Utc;

use crate::actors::recorder::{FinalRecord, Recorder};
use crate::actors::run::SyncRun;
use crate::report::{SourceStatus, SyncReport, SyncStatus};
use crate::store::syncs::SourceEnd;

impl SyncRun {
    /// Stops what is left of the run and returns its recorder with the final record.
    pub fn finish(mut self) -> (Recorder, FinalRecord) {
        for timer in self.timers.drain(..) {
            timer.abort();
        }
        if let Some(writer) = self.writer.take() {
            // Not drained: it holds nothing of a source that succeeded. Stopped, not killed,
            // so a batch in progress ends cleanly (fenced out once the final record is in).
            writer.stop(None);
        }
        let reports: Vec<_> = self
            .sources
            .iter()
            .map(|(source, run)| run.report(*source, &self.counts))
            .collect();
        let status = match self.interrupted {
            Some(_) => SyncStatus::Interrupted,
            None => SyncStatus::from_sources(reports.iter().map(|report| report.status)),
        };
        let errors: Vec<String> = reports
            .iter()
            .filter(|report| report.status == SourceStatus::Failed)
            .map(|report| format!("{}: {}", report.source, report.error.as_deref().unwrap_or("failed")))
            .collect();
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let sources: Vec<SourceEnd> = self
            .sources
            .iter()
            .zip(&reports)
            .filter(|(_, report)| report.status != SourceStatus::Skipped)
            .map(|((source, run), report)| SourceEnd {
                source: *source,
                status: report.status,
                error: report.error.clone(),
                http_requests: report.http_requests,
                bytes: report.bytes,
                duration_ms: report.duration_ms,
                new_fields: None,
                truncated: run.ledger.truncated(),
            })
            .collect();
        let duration = self.started.elapsed();
        let sum = |count: fn(&crate::report::SourceReport) -> i64| reports.iter().map(count).sum();
        let fallback = SyncReport {
            id: self.id,
            started_at: self.started_at,
            finished_at: Some(Utc::now()),
            status,
            trigger: String::new(),
            models_fetched: sum(|report| report.models_fetched),
            models_stored: sum(|report| report.models_stored),
            models_rejected: sum(|report| report.models_rejected),
            models_duplicates: Some(sum(|report| report.models_duplicates.unwrap_or(0))),
            duration_ms: Some(duration.as_millis() as i64),
            error: error.clone(),
            sources: reports,
        };
        let record = FinalRecord {
            status,
            error,
            sources,
            keeper: self.keeper.take(),
            started: self.started,
            fallback,
        };
        (self.recorder, record)
    }
}
