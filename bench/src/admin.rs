//! Client of the server's admin API over its Unix socket, for creating registration entries
//! without starting a CLI process per entry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::types::{Entry, Selector};
use spiffe::SpiffeId;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// Time allowed for one admin RPC.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An open connection to the admin API.
#[derive(Clone, Debug)]
pub struct AdminClient {
    entries: EntryClient<Channel>,
}

impl AdminClient {
    /// Connects to the admin API at `socket`.
    ///
    /// # Errors
    ///
    /// Fails when nothing accepts connections on `socket`.
    pub async fn connect(socket: &Path) -> anyhow::Result<Self> {
        let path = socket.to_owned();
        // Every connection goes to the socket, so the URI only satisfies the builder.
        let channel = Endpoint::from_static("http://localhost")
            .timeout(REQUEST_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_| connect_socket(path.clone())))
            .await
            .with_context(|| {
                format!("failed to connect to the admin socket {}", socket.display())
            })?;
        Ok(Self {
            entries: EntryClient::new(channel),
        })
    }

    /// Creates one registration entry for `spiffe_id` under `parent_id` with one selector, and
    /// returns once the server has stored it.
    ///
    /// # Errors
    ///
    /// Fails when the RPC fails or the server rejects the entry.
    pub async fn create_entry(
        &mut self,
        spiffe_id: &SpiffeId,
        parent_id: &SpiffeId,
        selector: &Selector,
    ) -> anyhow::Result<()> {
        let entry = Entry {
            spiffe_id: Some(signet_core::ids::to_proto_id(spiffe_id)),
            parent_id: Some(signet_core::ids::to_proto_id(parent_id)),
            selectors: vec![selector.clone()],
            ..Entry::default()
        };
        let request = BatchCreateEntryRequest {
            entries: vec![entry],
            output_mask: None,
        };
        let response = self
            .entries
            .batch_create_entry(request)
            .await
            .with_context(|| format!("BatchCreateEntry for {spiffe_id} failed"))?
            .into_inner();

        let status = response
            .results
            .first()
            .and_then(|result| result.status.as_ref());
        match status {
            Some(status) if status.code == 0 => Ok(()),
            Some(status) => bail!(
                "the server rejected the entry for {spiffe_id}: {} (code {})",
                status.message,
                status.code
            ),
            None => bail!("the server returned no result for the entry for {spiffe_id}"),
        }
    }
}

async fn connect_socket(path: PathBuf) -> std::io::Result<TokioIo<UnixStream>> {
    Ok(TokioIo::new(UnixStream::connect(path).await?))
}
