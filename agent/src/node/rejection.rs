//! Detection of the server's rejection of this agent, from the status of any call.
//!
//! The server returns `PermissionDenied` to an agent it has no record of (evicted, or never
//! attested to this datastore) and to a banned agent. Retrying such a call cannot succeed, so
//! every client of a node reports these statuses here and the agent acts on the first one.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Code, Status};

/// Reason the server no longer serves this agent.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Rejection {
    /// The server has no record of the agent: it was evicted, or never attested there.
    NotAttested,
    /// An operator banned the agent.
    Banned,
}

/// The first [`Rejection`] any client of one node received. Clones share it.
#[derive(Clone, Debug)]
pub(crate) struct RejectionSignal {
    rejection: Arc<watch::Sender<Option<Rejection>>>,
}

// === impl Rejection ===

impl Rejection {
    /// Classifies a failed call, returning None for errors that a retry may fix.
    ///
    /// The server distinguishes the cases only in the status message (see the agent
    /// authentication in the server's `api/caller.rs`).
    pub fn of(status: &Status) -> Option<Self> {
        if status.code() != Code::PermissionDenied {
            return None;
        }
        let message = status.message();
        if message.contains(NOT_ATTESTED_MARK) {
            Some(Self::NotAttested)
        } else if message.ends_with(BANNED_MARK) {
            Some(Self::Banned)
        } else {
            None
        }
    }
}

// === impl RejectionSignal ===

impl RejectionSignal {
    pub(crate) fn new() -> Self {
        Self {
            rejection: Arc::new(watch::Sender::new(None)),
        }
    }

    /// Records `status` if it is a rejection of the agent. The first rejection wins.
    pub(crate) fn observe(&self, status: &Status) {
        if let Some(rejection) = Rejection::of(status) {
            self.rejection.send_if_modified(|current| {
                let is_first = current.is_none();
                if is_first {
                    *current = Some(rejection);
                }
                is_first
            });
        }
    }

    /// Waits for the first rejection.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn rejected(&self) -> Rejection {
        let mut receiver = self.rejection.subscribe();
        loop {
            if let Some(rejection) = *receiver.borrow_and_update() {
                return rejection;
            }
            // The sender lives in `self`, so `changed` cannot fail while this runs.
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Part of the server's message for an agent without a record.
const NOT_ATTESTED_MARK: &str = " is not attested";
/// End of the server's message for a banned agent.
const BANNED_MARK: &str = " is banned";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_classified() {
        let cases = [
            (
                Status::permission_denied(
                    "agent spiffe://example.org/spire/agent/join_token/sha256:ab is not attested; \
                     it may have been evicted",
                ),
                Some(Rejection::NotAttested),
            ),
            (
                Status::permission_denied(
                    "agent spiffe://example.org/spire/agent/join_token/sha256:ab is banned",
                ),
                Some(Rejection::Banned),
            ),
            (
                Status::permission_denied("this RPC is only served on the admin socket"),
                None,
            ),
            (Status::unavailable("agent x is banned"), None),
        ];
        for (status, expected) in cases {
            assert_eq!(Rejection::of(&status), expected, "{status:?}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn first_rejection_wins() {
        let signal = RejectionSignal::new();
        signal.observe(&Status::unavailable("connection refused"));
        signal.observe(&Status::permission_denied("agent a is banned"));
        signal.observe(&Status::permission_denied("agent a is not attested"));
        assert_eq!(signal.clone().rejected().await, Rejection::Banned);
    }
}
