//! The vocabulary of a sync's outcome: statuses, triggers and the per-source report that the
//! CLI prints, the admin API returns and `model_syncs` / `model_sync_sources` store.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Running,
    Success,
    Partial,
    Failed,
    Interrupted,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Running => "running",
            SyncStatus::Success => "success",
            SyncStatus::Partial => "partial",
            SyncStatus::Failed => "failed",
            SyncStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<SyncStatus> {
        [
            SyncStatus::Running,
            SyncStatus::Success,
            SyncStatus::Partial,
            SyncStatus::Failed,
            SyncStatus::Interrupted,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// The `sync` command's exit code: 0 success, 1 partial, 2 anything worse.
    pub fn exit_code(self) -> i32 {
        match self {
            SyncStatus::Success => 0,
            SyncStatus::Partial => 1,
            _ => 2,
        }
    }

    /// The overall status from the sources' statuses: every source that ran succeeded →
    /// success; some failed and some succeeded → partial; none succeeded → failed.
    pub fn from_sources(statuses: impl IntoIterator<Item = SourceStatus>) -> SyncStatus {
        let (mut succeeded, mut failed) = (0, 0);
        for status in statuses {
            match status {
                SourceStatus::Success => succeeded += 1,
                SourceStatus::Failed | SourceStatus::Running => failed += 1,
                SourceStatus::Skipped => {}
            }
        }
        match (succeeded, failed) {
            (_, 0) => SyncStatus::Success,
            (0, _) => SyncStatus::Failed,
            _ => SyncStatus::Partial,
        }
    }
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    Startup,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Startup => "startup",
            Trigger::Cli => "cli",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    Running,
    Success,
    Failed,
    Skipped,
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Running => "running",
            SourceStatus::Success => "success",
            SourceStatus::Failed => "failed",
            SourceStatus::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<SourceStatus> {
        [
            SourceStatus::Running,
            SourceStatus::Success,
            SourceStatus::Failed,
            SourceStatus::Skipped,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub source: String,
    pub status: SourceStatus,
    pub models_fetched: i64,
    pub models_stored: i64,
    pub models_rejected: i64,
    /// Records identical to one already stored or quarantined in this sync (`None`: a sync
    /// recorded before duplicates were counted). fetched = stored + rejected + duplicates.
    pub models_duplicates: Option<i64>,
    pub http_requests: i64,
    pub bytes: i64,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// Top-level record keys no earlier sync of the source stored (the drift alarm); empty for
    /// the source's first sync in this database (its baseline); `None` when not computed
    /// (the source was skipped, or the sync is still running).
    pub new_fields: Option<Vec<String>>,
}

impl SourceReport {
    pub fn new(source: Source, status: SourceStatus) -> SourceReport {
        SourceReport {
            source: source.as_str().to_string(),
            status,
            models_fetched: 0,
            models_stored: 0,
            models_rejected: 0,
            models_duplicates: Some(0),
            http_requests: 0,
            bytes: 0,
            duration_ms: None,
            error: None,
            new_fields: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: SyncStatus,
    pub trigger: String,
    pub models_fetched: i64,
    pub models_stored: i64,
    pub models_rejected: i64,
    /// See [`SourceReport::models_duplicates`].
    pub models_duplicates: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub sources: Vec<SourceReport>,
}

impl SyncReport {
    /// The human summary `sync` prints: one line per source.
    pub fn render_table(&self) -> String {
        let mut out = format!(
            "sync {} {} in {:.1}s (trigger: {})\n",
            self.id,
            self.status,
            self.duration_ms.unwrap_or(0) as f64 / 1000.0,
            self.trigger
        );
        out.push_str(&format!(
            "{:<21} {:<8} {:>9} {:>9} {:>9} {:>10} {:>9}  {}\n",
            "source", "status", "fetched", "stored", "rejected", "duplicates", "time", "error"
        ));
        let count = |value: Option<i64>| value.map_or_else(|| "-".to_string(), |value| value.to_string());
        for source in &self.sources {
            let time = source
                .duration_ms
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "{:<21} {:<8} {:>9} {:>9} {:>9} {:>10} {:>9}  {}\n",
                source.source,
                source.status.as_str(),
                source.models_fetched,
                source.models_stored,
                source.models_rejected,
                count(source.models_duplicates),
                time,
                source.error.as_deref().unwrap_or("")
            ));
        }
        out.push_str(&format!(
            "{:<21} {:<8} {:>9} {:>9} {:>9} {:>10}\n",
            "total",
            "",
            self.models_fetched,
            self.models_stored,
            self.models_rejected,
            count(self.models_duplicates)
        ));
        for source in &self.sources {
            if let Some(fields) = source.new_fields.as_ref().filter(|fields| !fields.is_empty()) {
                out.push_str(&format!(
                    "new record fields in {}: {}\n",
                    source.source,
                    fields.join(", ")
                ));
            }
        }
        if let Some(error) = &self.error {
            out.push_str(&format!("error: {error}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_status_follows_the_sources() {
        use SourceStatus::*;
        assert_eq!(SyncStatus::from_sources([Success, Skipped]), SyncStatus::Success);
        assert_eq!(SyncStatus::from_sources([Success, Failed]), SyncStatus::Partial);
        assert_eq!(SyncStatus::from_sources([Failed, Skipped]), SyncStatus::Failed);
        assert_eq!(SyncStatus::Partial.exit_code(), 1);
        assert_eq!(SyncStatus::Interrupted.exit_code(), 2);
    }
}
