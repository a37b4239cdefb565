//! `syncs` (one line per recent sync) and `syncs show ID` (one sync, source by source).

use crate::cli::{print_stdout, thousands, DatabaseSession};
use crate::config::Config;
use crate::model::Source;
use crate::report::{SourceStatus, SyncReport};
use crate::store::syncs;

pub async fn run(config: Config, limit: i64, json: bool) -> anyhow::Result<i32> {
    let session = DatabaseSession::open(&config).await?;
    let result = syncs::recent_syncs(&session.database, limit.max(1)).await;
    session.close().await;
    let history = result?;
    if json {
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&history)?))?;
    } else if history.is_empty() {
        print_stdout("no syncs yet; run `model-lens-sync sync`\n")?;
    } else {
        print_stdout(&render_lines(&history))?;
    }
    Ok(0)
}

pub async fn show(config: Config, id: i64, json: bool) -> anyhow::Result<i32> {
    let session = DatabaseSession::open(&config).await?;
    let result = syncs::get_sync(&session.database, id).await;
    session.close().await;
    let Some(sync) = result? else {
        eprintln!("error: there is no sync {id}; `model-lens-sync syncs` lists the recent ones");
        return Ok(2);
    };
    if json {
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&sync)?))?;
    } else {
        print_stdout(&render_detail(&sync))?;
    }
    Ok(0)
}

fn seconds(duration_ms: Option<i64>) -> String {
    duration_ms
        .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn short_status(status: SourceStatus) -> &'static str {
    match status {
        SourceStatus::Success => "ok",
        SourceStatus::Failed => "FAILED",
        SourceStatus::Skipped => "skipped",
        SourceStatus::Running => "running",
    }
}

/// One line per sync, newest first: what happened at a glance.
pub fn render_lines(history: &[SyncReport]) -> String {
    let mut out = format!(
        "{:>6}  {:<19}  {:<8}  {:<11}  {:>8}  {:>9}  {:>8}  {}\n",
        "id", "started (UTC)", "trigger", "status", "duration", "stored", "rejected", "sources"
    );
    for sync in history {
        // In the sources' usual order, not the database's alphabetical one.
        let mut sources: Vec<_> = sync.sources.iter().collect();
        sources.sort_by_key(|source| Source::ALL.iter().position(|known| known.as_str() == source.source));
        let sources: Vec<String> = sources
            .iter()
            .map(|source| format!("{}:{}", source.source, short_status(source.status)))
            .collect();
        out.push_str(&format!(
            "{:>6}  {:<19}  {:<8}  {:<11}  {:>8}  {:>9}  {:>8}  {}\n",
            sync.id,
            sync.started_at.format("%Y-%m-%d %H:%M:%S"),
            sync.trigger,
            sync.status.as_str(),
            seconds(sync.duration_ms),
            thousands(sync.models_stored),
            thousands(sync.models_rejected),
            sources.join(" ")
        ));
    }
    out
}

fn bytes(count: i64) -> String {
    let count = count.max(0) as f64;
    match count {
        c if c >= 1e9 => format!("{:.1} GB", c / 1e9),
        c if c >= 1e6 => format!("{:.1} MB", c / 1e6),
        c if c >= 1e3 => format!("{:.1} kB", c / 1e3),
        c => format!("{c} B"),
    }
}

/// Everything recorded about one sync, one row per source.
pub fn render_detail(sync: &SyncReport) -> String {
    let when = |time: chrono::DateTime<chrono::Utc>| time.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut out = format!("sync {}: {} (trigger: {})\n", sync.id, sync.status, sync.trigger);
    out.push_str(&format!("started   {}\n", when(sync.started_at)));
    match sync.finished_at {
        Some(finished) => out.push_str(&format!(
            "finished  {} (took {})\n",
            when(finished),
            seconds(sync.duration_ms)
        )),
        None => out.push_str("finished  - (still running, or stopped before it could finish)\n"),
    }
    out.push_str(&format!(
        "\n{:<21} {:<8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8}  {}\n",
        "source", "status", "fetched", "stored", "rejected", "requests", "bytes", "time", "error / reason"
    ));
    for source in &sync.sources {
        out.push_str(&format!(
            "{:<21} {:<8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8}  {}\n",
            source.source,
            source.status.as_str(),
            source.models_fetched,
            source.models_stored,
            source.models_rejected,
            source.http_requests,
            bytes(source.bytes),
            seconds(source.duration_ms),
            source.error.as_deref().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "{:<21} {:<8} {:>9} {:>9} {:>9}\n",
        "total", "", sync.models_fetched, sync.models_stored, sync.models_rejected
    ));
    if let Some(error) = &sync.error {
        out.push_str(&format!("\nerror: {error}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{SourceReport, SyncStatus};

    fn sample() -> SyncReport {
        let mut ok = SourceReport::new(Source::ModelsDev, SourceStatus::Success);
        ok.models_stored = 3677;
        ok.duration_ms = Some(812);
        let mut failed = SourceReport::new(Source::HuggingFace, SourceStatus::Failed);
        failed.error = Some("HTTP 500".into());
        SyncReport {
            id: 7,
            started_at: "2026-11-29T10:02:11Z".parse().unwrap(),
            finished_at: Some("2026-11-29T10:02:23Z".parse().unwrap()),
            status: SyncStatus::Partial,
            trigger: "cli".into(),
            models_fetched: 3677,
            models_stored: 3677,
            models_rejected: 0,
            models_duplicates: Some(0),
            duration_ms: Some(12_300),
            error: Some("huggingface: HTTP 500".into()),
            sources: vec![ok, failed],
        }
    }

    #[test]
    fn one_line_per_sync_with_every_source() {
        let text = render_lines(&[sample()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let line = lines[1];
        for part in [
            "7",
            "2026-11-29 10:02:11",
            "cli",
            "partial",
            "12.3s",
            "3,677",
            "models_dev:ok",
            "huggingface:FAILED",
        ] {
            assert!(line.contains(part), "{part} missing from {line:?}");
        }
        assert!(line.find("2026-11-29").unwrap() < line.find("models_dev").unwrap());
    }

    #[test]
    fn the_detail_names_each_source_and_its_error() {
        let text = render_detail(&sample());
        assert!(text.starts_with("sync 7: partial (trigger: cli)\n"), "{text}");
        assert!(text.contains("huggingface           failed"), "{text}");
        assert!(text.contains("HTTP 500"), "{text}");
        assert_eq!(bytes(1_500_000), "1.5 MB");
    }
}
