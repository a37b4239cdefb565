//! The health checks of DESIGN.md §6, shared by the `health` command, the health actor and
//! `GET /api/health`. Gathering facts touches the database; judging them is a pure function.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::HealthConfig;
use crate::store::{catalog, Database, StoreError};

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

/// What the checks look at, read from the database.
#[derive(Debug, Clone)]
pub struct HealthFacts {
    /// `Err` with the reason when PostgreSQL could not be queried.
    pub database: Result<(), String>,
    pub last_success: Option<LastSuccess>,
    /// Statuses of the most recent finished syncs, newest first.
    pub recent_statuses: Vec<String>,
    /// Models in the current catalog (every source's latest success). With one-source syncs
    /// (`sync --source`) the last success may hold one small source; the catalog is what the
    /// `min_expected_models` floor is about.
    pub catalog_models: Option<i64>,
}

impl Default for HealthFacts {
    fn default() -> Self {
        HealthFacts {
            database: Ok(()),
            last_success: None,
            recent_statuses: Vec::new(),
            catalog_models: None,
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
}

pub const CHECK_NAMES: [&str; 5] = [
    "database",
    "has_successful_sync",
    "models_stored",
    "sync_freshness",
    "failure_rate",
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
                let models = facts.catalog_models.unwrap_or(last.models_stored);
                check(
                    "models_stored",
                    models >= thresholds.min_expected_models,
                    HealthStatus::Critical,
                    format!(
                        "the current catalog holds {models} models (minimum {}); the last successful sync stored {}",
                        thresholds.min_expected_models, last.models_stored
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
    }
}

/// Reads the facts; a database error is a fact too (the `database` check fails).
pub async fn gather(database: &Database, thresholds: &HealthConfig) -> HealthFacts {
    match read_facts(database, thresholds).await {
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

async fn read_facts(database: &Database, thresholds: &HealthConfig) -> Result<HealthFacts, StoreError> {
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
        catalog_models: Some(
            catalog::source_sizes(database)
                .await?
                .iter()
                .map(|source| source.models)
                .sum(),
        ),
    })
}

pub async fn check(database: &Database, thresholds: &HealthConfig) -> HealthReport {
    let facts = gather(database, thresholds).await;
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
            catalog_models: None,
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
        // One small source synced alone: the catalog, not that sync, is what must be big enough.
        let one_source = HealthFacts {
            catalog_models: Some(5000),
            ..facts(1, 12, &["success"])
        };
        assert_eq!(evaluate(&one_source, &thresholds, now).status, HealthStatus::Healthy);
        let shrunk = HealthFacts {
            catalog_models: Some(40),
            ..facts(1, 5000, &["success"])
        };
        assert_eq!(evaluate(&shrunk, &thresholds, now).status, HealthStatus::Critical);
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
}
