//! Server outages as the operator sees them: one warning when the server becomes unreachable
//! and one info line when it responds again, whichever task's call noticed.
//!
//! Sync, the change stream, agent SVID renewal and JWT-SVID requests all retry on their own.
//! Each reports the outcome of its calls here and logs its own retries at debug, so an outage
//! leaves two lines in the log instead of one per retry.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Code, Status};

use super::describe_status;

/// Start of the current outage, if any, shared by every client of one node. Clones share it.
#[derive(Clone, Debug, Default)]
pub(crate) struct OutageLog {
    down_since: Arc<Mutex<Option<Instant>>>,
}

impl OutageLog {
    /// Records a failed call. Logs a warning with the error, and returns true, when `status`
    /// is the first sign of an outage. Any other status is a response from the server.
    pub(crate) fn record_failure(&self, status: &Status) -> bool {
        if !is_server_unreachable(status.code()) {
            self.record_response();
            return false;
        }
        let mut down_since = self.lock();
        if down_since.is_some() {
            return false;
        }
        *down_since = Some(Instant::now());
        tracing::warn!(
            error = %describe_status(status),
            "Server unreachable: serving the cached SVIDs and bundles, retrying with backoff"
        );
        true
    }

    /// Records a response from the server. Logs how long the outage lasted, and returns true,
    /// when the server was unreachable until now.
    pub(crate) fn record_response(&self) -> bool {
        let Some(since) = self.lock().take() else {
            return false;
        };
        // Whole seconds: the retries that notice the recovery are seconds apart anyway.
        let downtime = Duration::from_secs(since.elapsed().as_secs());
        tracing::info!(
            downtime = %humantime::format_duration(downtime),
            "Server reachable again"
        );
        true
    }

    fn lock(&self) -> MutexGuard<'_, Option<Instant>> {
        // The value is replaced whole, so it is consistent even if a holder panicked.
        self.down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Returns true for the status code of a call that did not reach the server, or that the
/// server could not serve for the time being (tonic reports refused and broken connections as
/// `Unavailable`).
pub(crate) fn is_server_unreachable(code: Code) -> bool {
    code == Code::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_logged_once_until_response() {
        let outage = OutageLog::default();
        let refused = Status::unavailable("connection refused");

        let other_client = outage.clone();

        assert!(outage.record_failure(&refused));
        assert!(!outage.record_failure(&refused));
        assert!(!other_client.record_failure(&refused));
        assert!(outage.record_response());
        assert!(!outage.record_response());
        assert!(outage.record_failure(&refused));
    }

    #[test]
    fn error_from_the_server_ends_an_outage() {
        let outage = OutageLog::default();
        assert!(!outage.record_failure(&Status::internal("database is locked")));
        outage.record_failure(&Status::unavailable("connection refused"));

        assert!(!outage.record_failure(&Status::permission_denied("agent a is banned")));
        assert!(!outage.record_response());
    }
}
