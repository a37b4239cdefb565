use crate::cli::DatabaseSession;
use crate::config::Config;
use crate::store::migrations;

pub async fn run(config: Config) -> anyhow::Result<i32> {
    let session = DatabaseSession::connect(&config).await?;
    let result = migrations::migrate(&session.database).await;
    session.close().await;
    let applied = result?;
    if applied.is_empty() {
        println!(
            "database schema is up to date ({} migrations)",
            migrations::MIGRATIONS.len()
        );
    } else {
        for name in applied {
            println!("applied {name}");
        }
    }
    Ok(0)
}
