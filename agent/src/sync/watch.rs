//! The server's change stream: wakes the sync loop whenever entries or the bundle change.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::node::{Backoff, Node, describe_status, is_server_unreachable};

/// Keeps a `WatchChanges` stream open and calls `notify_one` on every notice and after every
/// reconnect, since notices sent while the stream was down are lost.
///
/// Never returns. A lost stream is logged at debug, because the node's outage log reports an
/// unreachable server. Other reconnect failures are logged once at warn, and the recovery from
/// them once at info.
///
/// # Cancel safety
///
/// Cancel safe: dropping the future closes the stream.
pub(crate) async fn watch_changes(node: Arc<Node>, changed: Arc<Notify>) {
    let mut backoff = Backoff::new();
    let mut has_warned = false;
    loop {
        match node.client().watch_changes().await {
            Ok(mut notices) => {
                if has_warned {
                    tracing::info!("Change stream from the server restored");
                    has_warned = false;
                }
                backoff.reset();
                changed.notify_one();
                let lost = loop {
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
                };
                tracing::debug!(error = %lost, "Change stream from the server lost, reconnecting");
            }
            Err(status) if is_server_unreachable(status.code()) || has_warned => {
                tracing::debug!(error = %describe_status(&status), "Change stream reconnect failed");
            }
            Err(status) => {
                tracing::warn!(error = %describe_status(&status), "Failed to open the change stream from the server, retrying");
                has_warned = true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = node.recovery() => {}
        }
    }
}
