//! Server outages as the operator sees them: one warning when the server becomes unreachable
//! and one info line when it responds again, whichever task's call noticed.
//!
//! Sync, the change stream, agent SVID renewal and JWT-SVID requests all retry on their own.
//! Each reports the outcome of its calls here and logs its own retries at debug, so an outage
//! leaves two lines in the log instead of one per retry.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::{Code, Status};

use super::describe_status;

/// The current outage, if any, shared by every client of one node. Clones share it.
#[derive(Clone, Debug, Default)]
pub(crate) struct OutageLog {
    outage: Arc<Mutex<Option<Outage>>>,
    recovered: Arc<Notify>,
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    /// The error last logged, so that a new cause is logged once too.
    error: String,
}

impl OutageLog {
    /// Records a failed call. Logs a warning with the error, and returns true, when `status`
    /// is the first sign of an outage. Any other status is a response from the server.
    pub(crate) fn record_failure(&self, status: &Status) -> bool {
        if !is_server_unreachable(status.code()) {
            self.record_response();
            return false;
        }
        let error = describe_status(status);
        let mut outage = self.lock();
        match outage.as_mut() {
            Some(outage) if outage.error == error => false,
            Some(outage) => {
                tracing::warn!(error = %error, "Server still unreachable, now for another reason");
                outage.error = error;
                false
            }
            None => {
                tracing::warn!(
                    error = %error,
                    "Server unreachable: serving the cached SVIDs and bundles, retrying with backoff"
                );
                *outage = Some(Outage {
                    since: Instant::now(),
                    error,
                });
                true
            }
        }
    }

    /// Records a response from the server. Logs how long the outage lasted, and returns true,
    /// when the server was unreachable until now.
    pub(crate) fn record_response(&self) -> bool {
        let Some(outage) = self.lock().take() else {
            return false;
        };
        // Whole seconds: the retries that notice the recovery are seconds apart anyway.
        let downtime = Duration::from_secs(outage.since.elapsed().as_secs());
        tracing::info!(
            downtime = %humantime::format_duration(downtime),
            "Server reachable again"
        );
        self.recovered.notify_waiters();
        true
    }

    /// Returns a future that completes at the next recovery from an outage, so that loops
    /// waiting out a backoff catch up at once.
    pub(crate) fn recovery(&self) -> impl Future<Output = ()> + Send + 'static {
        let recovered = Arc::clone(&self.recovered);
        async move { recovered.notified().await }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Outage>> {
        // The value is replaced whole, so it is consistent even if a holder panicked.
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
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
        let unreachable = Status::unavailable("connection refused");

        let other_client = outage.clone();

        assert!(outage.record_failure(&unreachable));
        assert!(!outage.record_failure(&unreachable));
        assert!(!other_client.record_failure(&unreachable));
        assert!(outage.record_response());
        assert!(!outage.record_response());
        assert!(outage.record_failure(&unreachable));
    }

    #[test]
    fn new_cause_is_logged_without_a_new_outage() {
        let outage = OutageLog::default();
        assert!(outage.record_failure(&Status::unavailable("connection refused")));

        assert!(!outage.record_failure(&Status::unavailable("certificate not trusted")));

        assert_eq!(
            outage.lock().as_ref().unwrap().error,
            describe_status(&Status::unavailable("certificate not trusted"))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn recovery_wakes_waiters() {
        let outage = OutageLog::default();
        outage.record_failure(&Status::unavailable("connection refused"));
        let recovery = tokio::spawn(outage.recovery());
        tokio::task::yield_now().await;

        outage.record_response();

        tokio::time::timeout(Duration::from_secs(5), recovery)
            .await
            .unwrap()
            .unwrap();
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
