//! Renewal of the agent's own X509-SVID at half its lifetime.

use std::time::{Duration, SystemTime};

use super::{Backoff, Node, NodeError};

/// Minimum time between two successful renewals.
const MIN_WAIT: Duration = Duration::from_secs(1);
/// Failed attempts logged at warn before further failures go to debug.
const WARN_ATTEMPTS: u32 = 3;

impl Node {
    /// Renews the agent SVID at half its lifetime, retrying failures with backoff, for as long
    /// as the SVID is valid.
    ///
    /// Returns only when the SVID expired without a successful renewal, because the agent can no
    /// longer authenticate to the server.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a renewal cut short leaves the previous SVID in use.
    pub async fn keep_renewed(&self) -> NodeError {
        let mut backoff = Backoff::new();
        let mut failures = 0u32;
        loop {
            let wait = if failures == 0 {
                // An SVID due again at once (clock skew, tiny TTL) must not spin the loop.
                until(self.renew_at()).max(MIN_WAIT)
            } else {
                backoff.next_delay().min(until(self.expires_at()))
            };
            tokio::time::sleep(wait).await;

            match self.renew().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(attempts = failures + 1, "Agent SVID renewal recovered");
                    }
                    failures = 0;
                    backoff.reset();
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    if SystemTime::now() >= self.expires_at() {
                        return NodeError::SvidExpired {
                            data_dir: self.data_dir.clone(),
                            expired_at: humantime::format_rfc3339_seconds(self.expires_at())
                                .to_string(),
                        };
                    }
                    log_failure(&error, failures);
                }
            }
        }
    }
}

fn until(time: SystemTime) -> Duration {
    time.duration_since(SystemTime::now()).unwrap_or_default()
}

fn log_failure(error: &NodeError, failures: u32) {
    if failures <= WARN_ATTEMPTS {
        tracing::warn!(error = %error, attempt = failures, "Failed to renew the agent SVID, retrying");
    } else {
        tracing::debug!(error = %error, attempt = failures, "Failed to renew the agent SVID, retrying");
    }
}
