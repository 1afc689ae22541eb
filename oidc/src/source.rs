//! Reads the server's bundle over its admin socket at a fixed interval and publishes the JWKS.
//!
//! When the server cannot be reached, the last JWKS read stays published: relying parties keep
//! verifying tokens during a server restart, and a key removed from the bundle is unpublished at
//! the first read that succeeds afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use tokio::net::UnixStream;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::jwks::{jwks_from_bundle, key_ids};
use crate::routes::JwksReceiver;

/// Time allowed for connecting to the admin socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed for one `GetBundle` call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the bundle every `interval` and publishes its JWKS.
#[derive(Debug)]
pub struct BundlePoller {
    admin_socket: PathBuf,
    client: BundleClient<Channel>,
    interval: Duration,
    sender: watch::Sender<Option<Bytes>>,
    /// Failed reads since the last success; the first failure is logged at warn, later ones at
    /// debug, and the recovery once at info.
    failures: u32,
    published_key_ids: Option<Vec<String>>,
}

impl BundlePoller {
    /// Prepares a poller for the admin socket at `admin_socket`, and returns it with the
    /// receiver the HTTP routes read. Nothing connects until [`BundlePoller::run`].
    pub fn new(admin_socket: &Path, interval: Duration) -> (Self, JwksReceiver) {
        let (sender, receiver) = watch::channel(None);
        let poller = Self {
            admin_socket: admin_socket.to_owned(),
            client: BundleClient::new(lazy_channel(admin_socket)),
            interval,
            sender,
            failures: 0,
            published_key_ids: None,
        };
        (poller, receiver)
    }

    /// Reads the bundle now and then every interval, until the task is dropped.
    pub async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.poll_once().await;
        }
    }

    async fn poll_once(&mut self) {
        let result = self.client.get_bundle(GetBundleRequest::default()).await;
        match result {
            Ok(response) => {
                let jwks = jwks_from_bundle(&response.into_inner(), unix_now());
                self.publish(&jwks);
            }
            Err(status) => self.record_failure(&status),
        }
    }

    fn publish(&mut self, jwks: &serde_json::Value) {
        if self.failures > 0 {
            tracing::info!(
                admin_socket = %self.admin_socket.display(),
                failures = self.failures,
                "Reading the bundle works again"
            );
            self.failures = 0;
        }
        let ids = key_ids(jwks);
        if self.published_key_ids.as_ref() != Some(&ids) {
            tracing::info!(key_ids = ?ids, "Publishing JWT-SVID keys");
            self.published_key_ids = Some(ids);
        }
        // Serializing a `Value` cannot fail, because its map keys are always strings.
        let body = serde_json::to_vec_pretty(jwks).unwrap_or_default();
        self.sender.send_replace(Some(Bytes::from(body)));
    }

    fn record_failure(&mut self, status: &tonic::Status) {
        self.failures = self.failures.saturating_add(1);
        let serving = if self.sender.borrow().is_some() {
            "the last JWKS read"
        } else {
            "no JWKS"
        };
        if self.failures == 1 {
            tracing::warn!(
                admin_socket = %self.admin_socket.display(),
                grpc.code = ?status.code(),
                error = status.message(),
                serving,
                "Failed to read the bundle from the server; retrying every poll interval"
            );
        } else {
            tracing::debug!(
                grpc.code = ?status.code(),
                error = status.message(),
                failures = self.failures,
                "Failed to read the bundle from the server"
            );
        }
    }
}

/// Builds a channel that connects on first use and reconnects after the server restarts.
fn lazy_channel(admin_socket: &Path) -> Channel {
    let path = admin_socket.to_owned();
    // The URI is required by the builder but unused: every connection goes to the socket.
    Endpoint::from_static("http://localhost")
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .connect_with_connector_lazy(tower::service_fn(move |_| connect_socket(path.clone())))
}

async fn connect_socket(path: PathBuf) -> std::io::Result<TokioIo<UnixStream>> {
    Ok(TokioIo::new(UnixStream::connect(path).await?))
}

fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn unreachable_server_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut poller, receiver) =
            BundlePoller::new(&dir.path().join("missing.sock"), Duration::from_secs(1));

        poller.poll_once().await;
        poller.poll_once().await;

        assert_eq!(poller.failures, 2);
        assert!(receiver.borrow().is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn failure_keeps_last_jwks_and_success_resets_count() {
        let dir = tempfile::tempdir().unwrap();
        let (mut poller, receiver) =
            BundlePoller::new(&dir.path().join("missing.sock"), Duration::from_secs(1));
        let jwks = serde_json::json!({ "keys": [] });
        poller.publish(&jwks);
        let published = receiver.borrow().clone().unwrap();

        poller.poll_once().await;
        assert_eq!(poller.failures, 1);
        assert_eq!(receiver.borrow().as_ref(), Some(&published));

        poller.publish(&jwks);
        assert_eq!(poller.failures, 0);
    }
}
