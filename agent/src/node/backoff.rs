//! Exponential backoff with jitter for retries against the server.

use std::time::Duration;

use rand::Rng;

/// Delays for successive retries: doubling from `initial` up to `max`, each drawn at random from
/// the upper half of its step so that agents restarted together do not retry in step.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Creates a backoff for server retries: 1 s first, at most 60 s.
    pub fn new() -> Self {
        Self::with_bounds(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Creates a backoff whose delays start near `initial` and never exceed `max`.
    pub fn with_bounds(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// Returns the delay before the next retry and counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .initial
            .saturating_mul(2u32.saturating_pow(self.attempt))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        rand::rng().random_range(step / 2..=step)
    }

    /// Starts over from the initial delay, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Returns true when no retry has been counted since the last success.
    pub fn is_reset(&self) -> bool {
        self.attempt == 0
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_bounds() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for _ in 0..50 {
            let mut backoff = Backoff::with_bounds(initial, max);
            for attempt in 0..100u32 {
                let step = initial
                    .saturating_mul(2u32.saturating_pow(attempt))
                    .min(max);
                let delay = backoff.next_delay();
                assert!(
                    delay >= step / 2,
                    "attempt {attempt}: {delay:?} < {step:?}/2"
                );
                assert!(delay <= max, "attempt {attempt}: {delay:?} > {max:?}");
            }
        }
    }

    #[test]
    fn delays_grow_until_max() {
        let mut backoff = Backoff::with_bounds(Duration::from_secs(1), Duration::from_secs(60));
        let first = backoff.next_delay();
        assert!(first <= Duration::from_secs(1));
        for _ in 0..10 {
            backoff.next_delay();
        }
        assert!(backoff.next_delay() >= Duration::from_secs(30));
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::with_bounds(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..10 {
            backoff.next_delay();
        }
        assert!(!backoff.is_reset());
        backoff.reset();
        assert!(backoff.is_reset());
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn max_below_initial_is_raised() {
        let mut backoff = Backoff::with_bounds(Duration::from_secs(4), Duration::from_secs(1));
        let delay = backoff.next_delay();
        assert!(delay >= Duration::from_secs(2));
        assert!(delay <= Duration::from_secs(4));
    }
}
