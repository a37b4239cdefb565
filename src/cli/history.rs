use crate::cli::DatabaseSession;
use crate::config::Config;
use crate::store::syncs;

pub async fn run(config: Config, limit: i64, json: bool) -> anyhow::Result<i32> {
    let session = DatabaseSession::open(&config).await?;
    let result = syncs::recent_syncs(&session.database, limit.max(1)).await;
    session.close().await;
    let history = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&history)?);
        return Ok(0);
    }
    if history.is_empty() {
        println!("no syncs yet; run `model-lens-sync sync`");
    }
    for sync in &history {
        println!(
            "{} started {}",
            sync.render_table().trim_end(),
            sync.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        println!();
    }
    Ok(0)
}
