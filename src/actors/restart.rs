//! The restart policy, since ractor has none of its own: each actor role has its own budget.
//! A child may be restarted at most `max_restarts` times within `window`; each restart waits
//! twice as long as the one before (100 ms, 200 ms, … up to 5 s), so a crash loop neither
//! spins nor hides. Only the actor that died is charged: a transformer that stops because its
//! writer is gone costs the writer's budget, not the source's.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::actors::ledger::SourceActor;
use crate::backoff::Backoff;
use crate::config::SyncConfig;

const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// What to do about a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Restart after this delay.
    Restart(Duration),
    /// The budget is spent: give up, for this reason.
    GiveUp(String),
}

#[derive(Debug)]
pub struct RestartBudget {
    max_restarts: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(max_restarts: usize, window: Duration) -> RestartBudget {
        RestartBudget {
            max_restarts,
            window,
            recent: VecDeque::new(),
        }
    }

    pub fn from_config(config: &SyncConfig) -> RestartBudget {
        RestartBudget::new(config.max_restarts, Duration::from_secs(config.restart_window_secs))
    }

    /// Records a restart at `now`; `None` when the budget is spent (give up), else the delay
    /// to wait before restarting.
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max_restarts {
            return None;
        }
        self.recent.push_back(now);
        Some(RESTART_BACKOFF.delay(self.recent.len() as u32 - 1))
    }

    /// The verdict on a crash of `kind` with `error` at `now`.
    pub fn on_crash(&mut self, kind: &str, error: &str, now: Instant) -> Verdict {
        match self.next_delay(now) {
            Some(delay) => Verdict::Restart(delay),
            None => Verdict::GiveUp(format!(
                "the {kind} crashed {} times within {}s; last error: {error}",
                self.recent.len() + 1,
                self.window.as_secs()
            )),
        }
    }
}

/// The budgets of one source's two actors.
#[derive(Debug)]
pub struct SourceBudgets {
    fetcher: RestartBudget,
    transformer: RestartBudget,
}

impl SourceBudgets {
    pub fn from_config(config: &SyncConfig) -> SourceBudgets {
        SourceBudgets {
            fetcher: RestartBudget::from_config(config),
            transformer: RestartBudget::from_config(config),
        }
    }

    pub fn of(&mut self, actor: SourceActor) -> &mut RestartBudget {
        match actor {
            SourceActor::Fetcher => &mut self.fetcher,
            SourceActor::Transformer => &mut self.transformer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_and_gives_up_after_the_limit() {
        let mut budget = RestartBudget::new(3, Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(budget.next_delay(start), Some(Duration::from_millis(100)));
        assert_eq!(budget.next_delay(start), Some(Duration::from_millis(200)));
        assert_eq!(budget.next_delay(start), Some(Duration::from_millis(400)));
        assert_eq!(budget.next_delay(start), None);
        // Restarts older than the window no longer count.
        assert_eq!(
            budget.next_delay(start + Duration::from_secs(61)),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn each_actor_of_a_source_has_its_own_budget() {
        let mut budgets = SourceBudgets::from_config(&SyncConfig {
            max_restarts: 1,
            ..SyncConfig::default()
        });
        let now = Instant::now();
        assert_eq!(
            budgets.of(SourceActor::Fetcher).on_crash("fetcher", "boom", now),
            Verdict::Restart(Duration::from_millis(100))
        );
        assert_eq!(
            budgets
                .of(SourceActor::Transformer)
                .on_crash("transformer", "boom", now),
            Verdict::Restart(Duration::from_millis(100))
        );
        assert_eq!(
            budgets.of(SourceActor::Fetcher).on_crash("fetcher", "boom", now),
            Verdict::GiveUp("the fetcher crashed 2 times within 60s; last error: boom".into())
        );
    }
}
