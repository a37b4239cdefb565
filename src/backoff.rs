//! One rule for waiting before trying again, used by everything that retries: the fetchers'
//! HTTP retries (with full jitter), the writer's batch retries, the restarts of crashed actors
//! and `serve` waiting for its database. Each delay doubles the one before, from `first` up to
//! `max`.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait before retry number `retry` (0: the first retry): `first · 2^retry`, at most `max`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.first
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(self.max)
    }

    /// "Full jitter": uniform in `0..=delay(retry)`, so that many clients of one server do not
    /// retry in step.
    pub fn jittered(&self, retry: u32) -> Duration {
        let ceiling = self.delay(retry).as_millis().min(u128::from(u64::MAX)) as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let delays: Vec<u128> = (0..8).map(|retry| backoff.delay(retry).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_within_the_delay() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        for retry in 0..12 {
            assert!(backoff.jittered(retry) <= backoff.delay(retry));
        }
        assert_eq!(Backoff::new(Duration::ZERO, Duration::ZERO).jittered(3), Duration::ZERO);
    }
}
