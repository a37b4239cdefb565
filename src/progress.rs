//! Live progress of the running sync, for whoever watches it (the `sync` command's terminal
//! lines). A handful of atomics per source in an `Arc` shared through `Services`: the actors
//! update it in one line where the news already is (the supervisor: a source starts and ends;
//! the fetcher: a page arrived; the writer: rows committed), and a reader takes snapshots
//! whenever it likes. No messages, no locks, nothing the pipeline waits on.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::model::Source;
use crate::report::SourceStatus;

/// What a source is doing, as the progress lines show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not part of a sync yet.
    Idle,
    Running,
    Success,
    Failed,
    Skipped,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            1 => Phase::Running,
            2 => Phase::Success,
            3 => Phase::Failed,
            4 => Phase::Skipped,
            _ => Phase::Idle,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Phase::Idle => 0,
            Phase::Running => 1,
            Phase::Success => 2,
            Phase::Failed => 3,
            Phase::Skipped => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "waiting",
            Phase::Running => "running",
            Phase::Success => "done",
            Phase::Failed => "failed",
            Phase::Skipped => "skipped",
        }
    }
}

impl From<SourceStatus> for Phase {
    fn from(status: SourceStatus) -> Phase {
        match status {
            SourceStatus::Running => Phase::Running,
            SourceStatus::Success => Phase::Success,
            SourceStatus::Failed => Phase::Failed,
            SourceStatus::Skipped => Phase::Skipped,
        }
    }
}

#[derive(Debug, Default)]
struct SourceCounters {
    phase: AtomicU8,
    /// The highest page number fetched: a restarted fetcher that fetches a page again does
    /// not count it twice.
    pages: AtomicU64,
    /// Pages the source says its listing has; 0 = unknown.
    total_pages: AtomicU64,
    /// Records committed (rows stored plus rejects): each record once, whatever was re-sent.
    records: AtomicU64,
    /// Records the source says it has (or `max_models`); 0 = unknown.
    total: AtomicU64,
    /// Milliseconds since `epoch` when the source started and ended; -1 = not yet.
    started_ms: AtomicI64,
    finished_ms: AtomicI64,
}

/// The shared handle. One per process; a new sync resets it.
#[derive(Debug)]
pub struct SyncProgress {
    epoch: Instant,
    sync_id: AtomicI64,
    sources: [SourceCounters; 4],
}

impl Default for SyncProgress {
    fn default() -> Self {
        SyncProgress {
            epoch: Instant::now(),
            sync_id: AtomicI64::new(0),
            sources: Default::default(),
        }
    }
}

fn index(source: Source) -> usize {
    match source {
        Source::ModelsDev => 0,
        Source::OpenRouter => 1,
        Source::HuggingFace => 2,
        Source::ArtificialAnalysis => 3,
    }
}

/// One source's progress at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSnapshot {
    pub source: Source,
    pub phase: Phase,
    pub pages: u64,
    pub records: u64,
    pub total: Option<u64>,
    pub total_pages: Option<u64>,
    pub elapsed: Duration,
}

impl SourceSnapshot {
    pub fn records_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.records as f64 / seconds
        } else {
            0.0
        }
    }

    /// Percent done, where a total is known: records against a stated total or `max_models`,
    /// else pages against a stated page count (capped at 100: a total may be an estimate).
    pub fn percent(&self) -> Option<f64> {
        let share = |done: u64, total: Option<u64>| {
            total
                .filter(|total| *total > 0)
                .map(|total| (done as f64 * 100.0 / total as f64).min(100.0))
        };
        share(self.records, self.total).or_else(|| share(self.pages, self.total_pages))
    }
}

impl SyncProgress {
    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    /// A sync starts: every source is reset to its planned phase.
    pub fn begin(&self, sync_id: i64, plan: &[(Source, SourceStatus, Option<String>)]) {
        let now = self.now_ms();
        for (source, status, _) in plan {
            let counters = &self.sources[index(*source)];
            counters.pages.store(0, Ordering::Relaxed);
            counters.records.store(0, Ordering::Relaxed);
            counters.total.store(0, Ordering::Relaxed);
            counters.total_pages.store(0, Ordering::Relaxed);
            counters.started_ms.store(now, Ordering::Relaxed);
            let ended = if *status == SourceStatus::Running { -1 } else { now };
            counters.finished_ms.store(ended, Ordering::Relaxed);
            counters.phase.store(Phase::from(*status).as_u8(), Ordering::Release);
        }
        self.sync_id.store(sync_id, Ordering::Release);
    }

    /// Page `page_no` (1-based, in the listing) of the source was fetched.
    pub fn page_fetched(&self, source: Source, page_no: u64) {
        self.sources[index(source)].pages.fetch_max(page_no, Ordering::Relaxed);
    }

    pub fn records_committed(&self, source: Source, records: u64) {
        self.sources[index(source)]
            .records
            .fetch_add(records, Ordering::Relaxed);
    }

    /// The number of records the source will have, when it is known (a stated total, or
    /// `max_models`).
    pub fn set_total(&self, source: Source, total: u64) {
        self.sources[index(source)].total.store(total, Ordering::Relaxed);
    }

    /// The number of pages the source's listing has, when it says so.
    pub fn set_total_pages(&self, source: Source, pages: u64) {
        self.sources[index(source)].total_pages.store(pages, Ordering::Relaxed);
    }

    pub fn finish(&self, source: Source, status: SourceStatus) {
        let counters = &self.sources[index(source)];
        counters.finished_ms.store(self.now_ms(), Ordering::Relaxed);
        counters.phase.store(Phase::from(status).as_u8(), Ordering::Release);
    }

    /// The sync the counters describe (0: none yet).
    pub fn sync_id(&self) -> i64 {
        self.sync_id.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Vec<SourceSnapshot> {
        let now = self.now_ms();
        Source::ALL
            .into_iter()
            .map(|source| {
                let counters = &self.sources[index(source)];
                let phase = Phase::from_u8(counters.phase.load(Ordering::Acquire));
                let started = counters.started_ms.load(Ordering::Relaxed);
                let finished = counters.finished_ms.load(Ordering::Relaxed);
                let end = if finished >= 0 { finished } else { now };
                let total = counters.total.load(Ordering::Relaxed);
                let total_pages = counters.total_pages.load(Ordering::Relaxed);
                SourceSnapshot {
                    source,
                    phase,
                    pages: counters.pages.load(Ordering::Relaxed),
                    records: counters.records.load(Ordering::Relaxed),
                    total: (total > 0).then_some(total),
                    total_pages: (total_pages > 0).then_some(total_pages),
                    elapsed: Duration::from_millis((end - started).max(0) as u64),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_a_sync_and_reset_for_the_next() {
        let progress = SyncProgress::default();
        progress.begin(
            1,
            &[
                (Source::HuggingFace, SourceStatus::Running, None),
                (Source::ArtificialAnalysis, SourceStatus::Skipped, Some("no key".into())),
            ],
        );
        progress.set_total(Source::HuggingFace, 400);
        progress.page_fetched(Source::HuggingFace, 1);
        // A restarted fetcher fetches page 1 again: still one page.
        progress.page_fetched(Source::HuggingFace, 1);
        progress.records_committed(Source::HuggingFace, 100);
        let snapshot = progress.snapshot();
        let huggingface = &snapshot[2];
        assert_eq!(huggingface.source, Source::HuggingFace);
        assert_eq!(
            (huggingface.phase, huggingface.pages, huggingface.records),
            (Phase::Running, 1, 100)
        );
        assert_eq!(huggingface.percent(), Some(25.0));
        assert_eq!(snapshot[3].phase, Phase::Skipped);
        assert_eq!(snapshot[0].percent(), None);
        // Only a page count known (Artificial Analysis): pages against it.
        progress.set_total_pages(Source::ArtificialAnalysis, 4);
        progress.page_fetched(Source::ArtificialAnalysis, 3);
        assert_eq!(progress.snapshot()[3].percent(), Some(75.0));
        progress.finish(Source::HuggingFace, SourceStatus::Success);
        assert_eq!(progress.snapshot()[2].phase, Phase::Success);

        progress.begin(2, &[(Source::HuggingFace, SourceStatus::Running, None)]);
        let again = &progress.snapshot()[2];
        assert_eq!(
            (again.phase, again.pages, again.records, again.total),
            (Phase::Running, 0, 0, None)
        );
        assert_eq!(progress.sync_id(), 2);
    }
}
