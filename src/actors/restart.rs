//! Restart intensity and backoff, since ractor has no restart strategy of its own: a child may
//! be restarted at most `max_restarts` times within `window`; each restart waits twice as long
//! as the one before (100 ms, 200 ms, … up to 5 s), so a crash loop neither spins nor hides.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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
        let exponent = (self.recent.len() - 1).min(6) as u32;
        Some((Duration::from_millis(100) * 2u32.pow(exponent)).min(Duration::from_secs(5)))
    }

    pub fn restarts(&self) -> usize {
        self.recent.len()
    }

    pub fn window(&self) -> Duration {
        self.window
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
}
