//! The change counter that the Sync API streams to agents.

use std::sync::Arc;

use signet_proto::signet::server::sync::v1::ChangeNotice;
use tokio::sync::watch;

/// Counts changes to entries, agents and the bundle made through this server; each notice also
/// carries the bundle's sequence number.
///
/// Agents hold a `WatchChanges` stream open and re-fetch their entries and the bundle whenever the
/// revision moves, so every successful write must call [`ChangeFeed::notify`].
#[derive(Clone, Debug)]
pub struct ChangeFeed {
    sender: Arc<watch::Sender<ChangeNotice>>,
    closed: Arc<watch::Sender<bool>>,
}

impl ChangeFeed {
    /// Starts at revision 1 with the bundle's current sequence number.
    pub fn new(bundle_sequence_number: u64) -> Self {
        let notice = ChangeNotice {
            revision: 1,
            bundle_sequence_number,
        };
        Self {
            sender: Arc::new(watch::Sender::new(notice)),
            closed: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Records a change to entries or agents.
    pub fn notify(&self) {
        self.sender.send_modify(|notice| notice.revision += 1);
    }

    /// Records a change of the bundle, which now has `sequence_number`.
    pub fn bundle_changed(&self, sequence_number: u64) {
        self.sender.send_modify(|notice| {
            notice.revision += 1;
            notice.bundle_sequence_number = sequence_number;
        });
    }

    /// Ends every open and future watch, so that a graceful shutdown need not wait for agents
    /// to hang up.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Returns a receiver of the current notice and every later one.
    pub fn subscribe(&self) -> watch::Receiver<ChangeNotice> {
        self.sender.subscribe()
    }

    /// Returns a future that completes once [`ChangeFeed::close`] was called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.closed.subscribe();
        async move {
            // An error means the sender is gone, which also ends the feed.
            let _ = receiver.wait_for(|closed| *closed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_bumps_revision() {
        let feed = ChangeFeed::new(3);
        let receiver = feed.subscribe();

        feed.notify();

        assert_eq!(receiver.borrow().revision, 2);
        assert_eq!(receiver.borrow().bundle_sequence_number, 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn close_ends_current_and_later_watches() {
        let feed = ChangeFeed::new(1);
        let before = feed.closed();

        feed.close();

        let bound = std::time::Duration::from_secs(5);
        assert!(tokio::time::timeout(bound, before).await.is_ok());
        assert!(tokio::time::timeout(bound, feed.closed()).await.is_ok());
    }
}
