//! The health checks of DESIGN.md §6, shared by the `health` command, the health actor and
//! `GET /api/health`. Gathering facts touches the database; judging them is a pure function.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::HealthConfig;
use crate::model::Source;
use crate::store::{syncs, Database, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    Warning,
    Critical,
}

impl HealthStatus {
    /// The `health` command's exit code and the `model_lens_health_status` value.
    pub fn code(self) -> u8 {
        match self {
            HealthStatus::Healthy => 0,
            HealthStatus::Warning => 1,
            HealthStatus::Critical => 2,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    /// What failing this check means.
    pub severity: HealthStatus,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastSuccess {
    pub sync_id: i64,
    pub finished_at: DateTime<Utc>,
    pub models_stored: i64,
}

/// When an enabled source last succeeded (the end of the newest finished sync in which it
/// did); `None`: never.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFreshness {
    pub source: Source,
    pub last_success: Option<DateTime<Utc>>,
}

/// What the checks look at, read from the database.
#[derive(Debug, Clone)]
pub struct HealthFacts {
    /// `Err` with the reason when PostgreSQL could not be queried.
    pub database: Result<(), String>,
    pub last_success: Option<LastSuccess>,
    /// Statuses of the most recent finished syncs, newest first.
    pub recent_statuses: Vec<String>,
    /// Every enabled source (disabled ones, and Artificial Analysis without a key, are not
    /// expected to succeed) with its last success.
    pub sources: Vec<SourceFreshness>,
}

impl Default for HealthFacts {
    fn default() -> Self {
        HealthFacts {
            database: Ok(()),
            last_success: None,
            recent_statuses: Vec::new(),
            sources: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub exit_code: u8,
    pub checked_at: DateTime<Utc>,
    pub checks: Vec<CheckResult>,
    pub last_success: Option<LastSuccess>,
    pub failure_rate_percent: Option<f64>,
    pub recent_syncs: usize,
    /// The enabled sources and when each last succeeded.
    pub sources: Vec<SourceFreshness>,
}

pub const CHECK_NAMES: [&str; 6] = [
    "database",
    "has_successful_sync",
    "models_stored",
    "sync_freshness",
    "failure_rate",
    "source_freshness",
];

/// Judges the facts against the thresholds.
pub fn evaluate(facts: &HealthFacts, thresholds: &HealthConfig, now: DateTime<Utc>) -> HealthReport {
    let mut checks = Vec::new();
    let mut check = |name, ok, severity, message: String| {
        checks.push(CheckResult {
            name,
            ok,
            severity,
            message,
        })
    };
    match &facts.database {
        Ok(()) => check("database", true, HealthStatus::Critical, "PostgreSQL answers".into()),
        Err(reason) => check("database", false, HealthStatus::Critical, reason.clone()),
    }
    let failures = facts
        .recent_statuses
        .iter()
        .filter(|status| matches!(status.as_str(), "failed" | "interrupted"))
        .count();
    let failure_rate =
        (!facts.recent_statuses.is_empty()).then(|| failures as f64 * 100.0 / facts.recent_statuses.len() as f64);
    if facts.database.is_ok() {
        match &facts.last_success {
            None => check(
                "has_successful_sync",
                false,
                HealthStatus::Critical,
                "no sync has ever succeeded".into(),
            ),
            Some(last) => {
                check(
                    "has_successful_sync",
                    true,
                    HealthStatus::Critical,
                    format!("sync {} succeeded", last.sync_id),
                );
                let enough = last.models_stored >= thresholds.min_expected_models;
                check(
                    "models_stored",
                    enough,
                    HealthStatus::Critical,
                    format!(
                        "the last successful sync stored {} models (minimum {})",
                        last.models_stored, thresholds.min_expected_models
                    ),
                );
                let age_hours = (now - last.finished_at).num_seconds() as f64 / 3600.0;
                check(
                    "sync_freshness",
                    age_hours <= thresholds.max_sync_age_hours,
                    HealthStatus::Warning,
                    format!(
                        "the last success was {age_hours:.1} h ago (maximum {} h)",
                        thresholds.max_sync_age_hours
                    ),
                );
            }
        }
        if let Some(rate) = failure_rate {
            check(
                "failure_rate",
                rate <= thresholds.max_failure_rate,
                HealthStatus::Warning,
                format!(
                    "{failures} of the last {} syncs failed ({rate:.0}%, maximum {}%)",
                    facts.recent_statuses.len(),
                    thresholds.max_failure_rate
                ),
            );
        }
        if !facts.sources.is_empty() {
            let (ok, message) = judge_sources(&facts.sources, thresholds.max_sync_age_hours, now);
            check("source_freshness", ok, HealthStatus::Warning, message);
        }
    }
    let status = checks
        .iter()
        .filter(|check| !check.ok)
        .map(|check| check.severity)
        .max()
        .unwrap_or(HealthStatus::Healthy);
    HealthReport {
        status,
        exit_code: status.code(),
        checked_at: now,
        checks,
        last_success: facts.last_success.clone(),
        failure_rate_percent: failure_rate,
        recent_syncs: facts.recent_statuses.len(),
        sources: facts.sources.clone(),
    }
}

/// Whether every enabled source succeeded within `max_age_hours`, and the message: the stale
/// ones by name, so that one source failing every night does not hide behind the others
/// (whose successes keep the syncs `partial` rather than `failed`).
fn judge_sources(sources: &[SourceFreshness], max_age_hours: f64, now: DateTime<Utc>) -> (bool, String) {
    let age = |last: DateTime<Utc>| (now - last).num_seconds() as f64 / 3600.0;
    let stale: Vec<String> = sources
        .iter()
        .filter_map(|freshness| match freshness.last_success {
            None => Some(format!("{} never succeeded", freshness.source)),
            Some(last) if age(last) > max_age_hours => {
                Some(format!("{} last succeeded {:.1} h ago", freshness.source, age(last)))
            }
            Some(_) => None,
        })
        .collect();
    if stale.is_empty() {
        let oldest = sources
            .iter()
            .filter_map(|freshness| freshness.last_success.map(|last| (age(last), freshness.source)))
            .fold(None, |oldest: Option<(f64, Source)>, entry| match oldest {
                Some(current) if current.0 >= entry.0 => Some(current),
                _ => Some(entry),
            });
        let detail = oldest
            .map(|(hours, source)| format!(" (the oldest: {source}, {hours:.1} h ago)"))
            .unwrap_or_default();
        (
            true,
            format!("every enabled source succeeded within {max_age_hours} h{detail}"),
        )
    } else {
        (false, format!("{} (maximum {max_age_hours} h)", stale.join("; ")))
    }
}

/// Reads the facts; a database error is a fact too (the `database` check fails). `enabled`:
/// the sources a sync runs ([`crate::config::SourcesConfig::enabled`]).
pub async fn gather(database: &Database, thresholds: &HealthConfig, enabled: &[Source]) -> HealthFacts {
    match read_facts(database, thresholds, enabled).await {
        Ok(facts) => facts,
        Err(error) => {
            let undefined_table = matches!(&error, StoreError::Postgres(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE));
            let reason = if undefined_table {
                "the database is reachable but not migrated; run `model-lens-sync migrate`".to_string()
            } else {
                format!("PostgreSQL is unreachable: {error}")
            };
            HealthFacts {
                database: Err(reason),
                ..HealthFacts::default()
            }
        }
    }
}

async fn read_facts(
    database: &Database,
    thresholds: &HealthConfig,
    enabled: &[Source],
) -> Result<HealthFacts, StoreError> {
    let successes = syncs::last_success_per_source(database).await?;
    let sources = enabled
        .iter()
        .map(|source| SourceFreshness {
            source: *source,
            last_success: successes
                .iter()
                .find(|(succeeded, _)| succeeded == source)
                .map(|(_, at)| *at),
        })
        .collect();
    let client = database.pool.get().await?;
    let last = client
        .query_opt(
            "SELECT id, finished_at, models_stored FROM model_syncs
              WHERE status = 'success' AND finished_at IS NOT NULL
              ORDER BY finished_at DESC LIMIT 1",
            &[],
        )
        .await?;
    let recent = client
        .query(
            "SELECT status FROM model_syncs WHERE status <> 'running' ORDER BY id DESC LIMIT $1",
            &[&thresholds.recent_syncs_to_check],
        )
        .await?;
    Ok(HealthFacts {
        database: Ok(()),
        last_success: last.map(|row| LastSuccess {
            sync_id: row.get(0),
            finished_at: row.get(1),
            models_stored: row.get(2),
        }),
        recent_statuses: recent.iter().map(|row| row.get(0)).collect(),
        sources,
    })
}

pub async fn check(database: &Database, thresholds: &HealthConfig, enabled: &[Source]) -> HealthReport {
    let facts = gather(database, thresholds, enabled).await;
    evaluate(&facts, thresholds, Utc::now())
}

impl HealthReport {
    pub fn render_text(&self) -> String {
        let mut out = format!("health: {:?} (exit {})\n", self.status, self.exit_code).to_lowercase();
        for check in &self.checks {
            let mark = if check.ok {
                "ok  "
            } else if check.severity == HealthStatus::Critical {
                "CRIT"
            } else {
                "WARN"
            };
            out.push_str(&format!("  [{mark}] {:<20} {}\n", check.name, check.message));
        }
        out
    }

    /// `(check, ok)` pairs for `model_lens_health_check_ok`; checks that could not run (the
    /// database is down) count as failing.
    pub fn check_flags(&self) -> Vec<(&'static str, bool)> {
        CHECK_NAMES
            .iter()
            .map(|name| (*name, self.checks.iter().any(|check| check.name == *name && check.ok)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn facts(hours_ago: i64, stored: i64, recent: &[&str]) -> HealthFacts {
        HealthFacts {
            database: Ok(()),
            last_success: Some(LastSuccess {
                sync_id: 1,
                finished_at: Utc::now() - Duration::hours(hours_ago),
                models_stored: stored,
            }),
            recent_statuses: recent.iter().map(|s| s.to_string()).collect(),
            sources: Vec::new(),
        }
    }

    #[test]
    fn statuses_follow_the_design_thresholds() {
        let thresholds = HealthConfig::default();
        let now = Utc::now();
        assert_eq!(
            evaluate(&facts(1, 500, &["success"]), &thresholds, now).status,
            HealthStatus::Healthy
        );
        assert_eq!(
            evaluate(&facts(26, 500, &["success"]), &thresholds, now).status,
            HealthStatus::Warning
        );
        assert_eq!(
            evaluate(&facts(1, 50, &["success"]), &thresholds, now).status,
            HealthStatus::Critical
        );
        let flaky = ["success", "failed", "failed", "success", "success"];
        assert_eq!(
            evaluate(&facts(1, 500, &flaky), &thresholds, now).status,
            HealthStatus::Warning
        );
        let never = HealthFacts {
            database: Ok(()),
            ..HealthFacts::default()
        };
        assert_eq!(evaluate(&never, &thresholds, now).status, HealthStatus::Critical);
        let down = HealthFacts {
            database: Err("connection refused".into()),
            ..HealthFacts::default()
        };
        let report = evaluate(&down, &thresholds, now);
        assert_eq!(report.exit_code, 2);
        assert!(report.check_flags().iter().all(|(_, ok)| !ok));
    }

    fn source(source: Source, hours_ago: Option<i64>, now: DateTime<Utc>) -> SourceFreshness {
        SourceFreshness {
            source,
            last_success: hours_ago.map(|hours| now - Duration::hours(hours)),
        }
    }

    #[test]
    fn an_enabled_source_that_has_not_succeeded_recently_is_a_warning() {
        let thresholds = HealthConfig::default();
        let now = Utc::now();
        use Source::*;
        // (last success of each enabled source in hours, expected status, expected message)
        type Ages<'a> = &'a [(Source, Option<i64>)];
        let cases: [(Ages, HealthStatus, &str); 5] = [
            (
                &[(ModelsDev, Some(1)), (HuggingFace, Some(3))],
                HealthStatus::Healthy,
                "every enabled source succeeded within 25 h (the oldest: huggingface, 3.0 h ago)",
            ),
            (
                // The syncs stay partial thanks to the others; the one failing source warns.
                &[(ModelsDev, Some(1)), (OpenRouter, Some(1)), (HuggingFace, Some(49))],
                HealthStatus::Warning,
                "huggingface last succeeded 49.0 h ago (maximum 25 h)",
            ),
            (
                &[(ModelsDev, Some(1)), (ArtificialAnalysis, None)],
                HealthStatus::Warning,
                "artificial_analysis never succeeded (maximum 25 h)",
            ),
            (
                &[(ModelsDev, Some(30)), (HuggingFace, None)],
                HealthStatus::Warning,
                "models_dev last succeeded 30.0 h ago; huggingface never succeeded (maximum 25 h)",
            ),
            (
                &[(OpenRouter, Some(25))],
                HealthStatus::Healthy,
                "every enabled source succeeded within 25 h (the oldest: openrouter, 25.0 h ago)",
            ),
        ];
        for (sources, status, message) in cases {
            let facts = HealthFacts {
                sources: sources.iter().map(|(name, hours)| source(*name, *hours, now)).collect(),
                ..facts(1, 500, &["partial"])
            };
            let report = evaluate(&facts, &thresholds, now);
            assert_eq!(report.status, status, "{sources:?}");
            let check = report
                .checks
                .iter()
                .find(|check| check.name == "source_freshness")
                .expect("the check ran");
            assert_eq!(
                (check.ok, check.message.as_str()),
                (status == HealthStatus::Healthy, message)
            );
            assert_eq!(report.sources.len(), sources.len());
        }
        // No enabled source: nothing to judge, no check.
        let report = evaluate(&facts(1, 500, &["success"]), &thresholds, now);
        assert!(report.checks.iter().all(|check| check.name != "source_freshness"));
        assert_eq!(report.status, HealthStatus::Healthy);
    }
}
