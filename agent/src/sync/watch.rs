//! The server's change stream: wakes the sync loop whenever entries or the bundle change.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::node::{Backoff, Node, describe_status};

/// Keeps a `WatchChanges` stream open and calls `notify_one` on every notice and after every
/// reconnect, since notices sent while the stream was down are lost.
///
/// Never returns. An outage is logged once at warn and the recovery once at info.
///
/// # Cancel safety
///
/// Cancel safe: dropping the future closes the stream.
pub(crate) async fn watch_changes(node: Arc<Node>, changed: Arc<Notify>) {
    let mut backoff = Backoff::new();
    let mut is_down = false;
    loop {
        let error = match node.client().watch_changes().await {
            Ok(mut notices) => {
                if is_down {
                    tracing::info!("Change stream from the server restored");
                    is_down = false;
                }
                backoff.reset();
                changed.notify_one();
                loop {
                    match notices.message().await {
                        Ok(Some(notice)) => {
                            tracing::debug!(
                                revision = notice.revision,
                                bundle_sequence_number = notice.bundle_sequence_number,
                                "Server reported a change"
                            );
                            changed.notify_one();
                        }
                        Ok(None) => break "the server closed the stream".to_owned(),
                        Err(status) => break describe_status(&status),
                    }
                }
            }
            Err(status) => describe_status(&status),
        };

        if !is_down {
            tracing::warn!(error = %error, "Change stream from the server lost, reconnecting");
            is_down = true;
        } else {
            tracing::debug!(error = %error, "Change stream reconnect failed");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
