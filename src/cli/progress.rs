//! The live lines of `sync` on a terminal: one per source on stderr (status, pages, models,
//! models/s, elapsed, and a percentage where a total is known), redrawn from the shared
//! [`SyncProgress`] counters a few times a second. Nothing is drawn when stderr is not a
//! terminal; the lines are cleared before the final table is printed, so the table stays
//! whole. While the lines are up, log lines are printed above them (`telemetry`).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::thousands;
use crate::progress::{Phase, SourceSnapshot, SyncProgress};
use crate::telemetry;

const REDRAW_EVERY: Duration = Duration::from_millis(120);

pub struct LiveLines {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LiveLines {
    /// Starts drawing, or `None` when stderr is not a terminal.
    pub fn start(progress: Arc<SyncProgress>) -> Option<LiveLines> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let style = ProgressStyle::with_template("{prefix:<20} {wide_msg}").expect("a valid template");
        let bars: Vec<ProgressBar> = progress
            .snapshot()
            .iter()
            .map(|source| {
                let bar = multi.add(ProgressBar::hidden());
                bar.set_style(style.clone());
                bar.set_prefix(source.source.as_str());
                bar.set_message(describe(source));
                bar
            })
            .collect();
        telemetry::set_live_display(Some(multi.clone()));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REDRAW_EVERY);
            loop {
                for (bar, source) in bars.iter().zip(progress.snapshot()) {
                    bar.set_message(describe(&source));
                    bar.tick();
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|stop| *stop) => break,
                }
            }
            for bar in &bars {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
            telemetry::set_live_display(None);
        });
        Some(LiveLines { stop, task })
    }

    /// Removes the lines (before the summary is printed).
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// `running  45%    12 pages   11,000 models   2,900/s    3.8s`: fits an 80-column terminal
/// after the source's name. The percentage is there only when a total is known.
pub fn describe(source: &SourceSnapshot) -> String {
    if matches!(source.phase, Phase::Idle | Phase::Skipped) {
        return source.phase.as_str().to_string();
    }
    let percent = source
        .percent()
        .map(|percent| format!("{percent:.0}%"))
        .unwrap_or_default();
    format!(
        "{:<7} {:>4} {:>5} pages {:>9} models {:>7}/s {:>6.1}s",
        source.phase.as_str(),
        percent,
        source.pages,
        grouped(source.records),
        grouped(source.records_per_second().round() as u64),
        source.elapsed.as_secs_f64()
    )
}

fn grouped(value: u64) -> String {
    thousands(i64::try_from(value).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Source;

    #[test]
    fn a_line_shows_counts_rate_time_and_a_known_percentage() {
        let mut source = SourceSnapshot {
            source: Source::HuggingFace,
            phase: Phase::Running,
            pages: 12,
            records: 11_000,
            total: Some(20_000),
            total_pages: None,
            elapsed: Duration::from_millis(4_000),
        };
        let line = describe(&source);
        for part in ["running  55%", "12 pages", "11,000 models", "2,750/s", "4.0s"] {
            assert!(line.contains(part), "{part} missing from {line:?}");
        }
        assert!(format!("{:<20} {line}", "huggingface").len() <= 80, "{line}");
        source.total = None;
        assert!(!describe(&source).contains('%'));
        source.total_pages = Some(48);
        assert!(describe(&source).contains("running  25%"), "{}", describe(&source));
        source.total_pages = None;
        source.phase = Phase::Skipped;
        assert_eq!(describe(&source), "skipped");
    }
}
