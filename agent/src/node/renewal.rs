//! Renewal of the agent's own X509-SVID shortly before half its lifetime.

use std::time::{Duration, SystemTime};

use signet_core::ids::redacted_agent_id;

use super::{Backoff, Node, NodeError};

/// Minimum time between two successful renewals.
const MIN_WAIT: Duration = Duration::from_secs(1);
/// Failed attempts logged at warn before further failures go to debug.
const WARN_ATTEMPTS: u32 = 3;

impl Node {
    /// Renews the agent SVID at [`Node::renew_at`], retrying failures with backoff, for as long
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
        // Failures other than an unreachable server, which are logged at warn at first.
        let mut failures = 0u32;
        let mut retrying = false;
        loop {
            let wait = if !retrying {
                // An SVID due again at once (clock skew, tiny TTL) must not spin the loop.
                until(self.renew_at()).max(MIN_WAIT)
            } else {
                backoff.next_delay().min(until(self.expires_at()))
            };
            tokio::time::sleep(wait).await;

            match self.renew().await {
                Ok(()) => {
                    retrying = false;
                    if failures > 0 {
                        tracing::info!(attempts = failures + 1, "Agent SVID renewal recovered");
                    }
                    failures = 0;
                    backoff.reset();
                }
                Err(error) => {
                    retrying = true;
                    if SystemTime::now() >= self.expires_at() {
                        return NodeError::SvidExpired {
                            agent_id: redacted_agent_id(&self.agent_id),
                            data_dir: self.data_dir.clone(),
                            expired_at: humantime::format_rfc3339_seconds(self.expires_at())
                                .to_string(),
                        };
                    }
                    if error.is_server_unreachable() {
                        // The node's outage log reported the outage once.
                        tracing::debug!(error = %error, "Failed to renew the agent SVID, retrying");
                    } else {
                        failures = failures.saturating_add(1);
                        log_failure(&error, failures);
                    }
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
