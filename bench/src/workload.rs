//! The benchmark's own workload: one FetchX509SVID stream on the agent's Workload API, read with
//! the `spiffe` crate's client, as a Rust service would read it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{Stream, StreamExt};
use signet_proto::spire::api::types::Selector;
use spiffe::{SpiffeId, WorkloadApiClient, X509Context};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::wait;

/// One message of the stream: every X509-SVID the agent sent, and when it arrived.
#[derive(Debug)]
pub struct Delivery {
    /// Time the message was received and parsed.
    pub received_at: Instant,
    /// SPIFFE IDs of the X509-SVIDs in the message, in the agent's order.
    pub spiffe_ids: Vec<SpiffeId>,
}

/// An open FetchX509SVID stream, read by a task of its own so every message gets its arrival
/// time even while the benchmark waits on an admin RPC.
#[derive(Debug)]
pub struct SvidStream {
    deliveries: mpsc::UnboundedReceiver<anyhow::Result<Delivery>>,
    reader: JoinHandle<()>,
}

impl SvidStream {
    /// Opens a stream on the Workload API at `socket` as soon as its first message contains an
    /// X509-SVID for `expected`, retrying until `timeout` because the agent may not yet have
    /// synced the entry.
    ///
    /// # Errors
    ///
    /// Fails when no stream delivers `expected` within `timeout`.
    pub async fn open(
        socket: &Path,
        expected: &SpiffeId,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = format!("unix:{}", socket.display());
        let client = WorkloadApiClient::connect_to(&endpoint)
            .await
            .with_context(|| format!("failed to connect to the Workload API at {endpoint}"))?;
        let client = &client;
        let condition = format!("an X509-SVID for {expected} on the Workload API");
        let stream = wait::until(&condition, timeout, || async move {
            let mut stream = client.stream_x509_contexts().await?;
            match stream.next().await {
                Some(Ok(context)) if has_svid(&context, expected) => Ok(stream),
                Some(Ok(_)) => bail!("the first message lacks {expected}"),
                Some(Err(error)) => Err(error.into()),
                None => bail!("the agent closed the stream"),
            }
        })
        .await?;

        let (sender, deliveries) = mpsc::unbounded_channel();
        let reader = tokio::spawn(forward(stream, sender));
        Ok(Self { deliveries, reader })
    }

    /// Returns the first message that contains an X509-SVID for `spiffe_id`, skipping earlier
    /// ones.
    ///
    /// # Errors
    ///
    /// Fails when the stream fails or ends, or after `timeout`.
    pub async fn wait_for(
        &mut self,
        spiffe_id: &SpiffeId,
        timeout: Duration,
    ) -> anyhow::Result<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let delivery = tokio::time::timeout_at(deadline, self.deliveries.recv())
                .await
                .with_context(|| format!("no X509-SVID for {spiffe_id} within {timeout:?}"))?
                .context("the agent closed the FetchX509SVID stream")??;
            if delivery.spiffe_ids.contains(spiffe_id) {
                return Ok(delivery);
            }
        }
    }
}

impl Drop for SvidStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Sends every message of `stream` to `sender`, stamped on arrival, until either side closes.
async fn forward(
    mut stream: impl Stream<Item = Result<X509Context, spiffe::WorkloadApiError>> + Unpin,
    sender: mpsc::UnboundedSender<anyhow::Result<Delivery>>,
) {
    while let Some(message) = stream.next().await {
        let received_at = Instant::now();
        let delivery = message
            .map_err(anyhow::Error::from)
            .map(|context| Delivery {
                received_at,
                spiffe_ids: context
                    .svids()
                    .iter()
                    .map(|svid| svid.spiffe_id().clone())
                    .collect(),
            });
        if sender.send(delivery).is_err() {
            break;
        }
    }
}

/// Returns the selector the agent's `unix` attestor gives this process.
pub fn own_uid_selector() -> Selector {
    Selector {
        r#type: "unix".to_owned(),
        value: format!("uid:{}", nix::unistd::getuid()),
    }
}

fn has_svid(context: &X509Context, spiffe_id: &SpiffeId) -> bool {
    context
        .svids()
        .iter()
        .any(|svid| svid.spiffe_id() == spiffe_id)
}
