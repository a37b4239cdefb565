use crate::cli::DatabaseSession;
use crate::config::Config;
use crate::health;

/// Exit code 0 healthy, 1 warning, 2 critical (including "the database is unreachable").
pub async fn run(config: Config, json: bool) -> anyhow::Result<i32> {
    let report = match DatabaseSession::connect(&config).await {
        Ok(session) => {
            let report = health::check(&session.database, &config.health, &config.sources.enabled()).await;
            session.close().await;
            report
        }
        Err(error) => {
            let facts = health::HealthFacts {
                database: Err(format!("PostgreSQL is unreachable: {error:#}")),
                ..Default::default()
            };
            health::evaluate(&facts, &config.health, chrono::Utc::now())
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(i32::from(report.exit_code))
}
