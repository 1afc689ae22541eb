//! Reconnection of the helper's Workload API calls: exponential backoff, and one warning per
//! outage instead of one per failed attempt.

use std::time::Duration;

/// First wait before reconnecting to an unreachable agent.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Maximum wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Backoff and outage state of one kind of Workload API call, such as the X.509 context stream.
#[derive(Debug)]
pub struct Supervision {
    call: &'static str,
    backoff: Duration,
    in_outage: bool,
}

// === impl Supervision ===

impl Supervision {
    /// Starts with the first backoff and no outage. `call` names the call in logs.
    #[must_use]
    pub fn new(call: &'static str) -> Self {
        Self {
            call,
            backoff: FIRST_BACKOFF,
            in_outage: false,
        }
    }

    /// Records a successful call: logs the end of an outage once and resets the backoff.
    pub fn succeeded(&mut self) {
        if self.in_outage {
            tracing::info!(call = self.call, "The Workload API is available again");
            self.in_outage = false;
        }
        self.backoff = FIRST_BACKOFF;
    }

    /// Records a failed call, logs it (a warning at the start of an outage, then debug), and
    /// waits for the backoff, which doubles up to 30 s.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future only cuts the wait short.
    pub async fn failed(&mut self, error: &anyhow::Error) {
        if self.in_outage {
            tracing::debug!(
                call = self.call,
                error = format!("{error:#}"),
                "The Workload API is still unavailable"
            );
        } else {
            tracing::warn!(
                call = self.call,
                error = format!("{error:#}"),
                "The Workload API is unavailable; retrying with backoff"
            );
            self.in_outage = true;
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn backoff_doubles_then_resets() {
        let mut supervision = Supervision::new("test");
        let error = anyhow::anyhow!("refused");
        let mut waits = Vec::new();
        for _ in 0..7 {
            let started = tokio::time::Instant::now();
            supervision.failed(&error).await;
            waits.push(started.elapsed().as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);

        supervision.succeeded();
        let started = tokio::time::Instant::now();
        supervision.failed(&error).await;
        assert_eq!(started.elapsed(), FIRST_BACKOFF);
    }
}
