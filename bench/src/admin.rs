//! Client of the server's admin API over its Unix socket, for creating registration entries
//! without starting a CLI process per entry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::agent::v1::{CountAgentsRequest, CreateJoinTokenRequest};
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::types::{Entry, Selector};
use spiffe::SpiffeId;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// Time allowed for one admin RPC.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most entries one BatchCreateEntry call carries.
pub const ENTRIES_PER_CALL: usize = 500;
/// Lifetime of the join tokens the benchmarks create.
const JOIN_TOKEN_TTL_SECONDS: i32 = 3600;

/// An open connection to the admin API.
#[derive(Clone, Debug)]
pub struct AdminClient {
    entries: EntryClient<Channel>,
    agents: AgentClient<Channel>,
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
            entries: EntryClient::new(channel.clone()),
            agents: AgentClient::new(channel),
        })
    }

    /// Creates one registration entry for `spiffe_id` under `parent_id` with one selector, and
    /// returns its ID once the server has stored it.
    ///
    /// # Errors
    ///
    /// Fails when the RPC fails or the server rejects the entry.
    pub async fn create_entry(
        &mut self,
        spiffe_id: &SpiffeId,
        parent_id: &SpiffeId,
        selector: &Selector,
    ) -> anyhow::Result<String> {
        let mut ids = self
            .create_entries_for(std::slice::from_ref(spiffe_id), parent_id, selector)
            .await?;
        ids.pop()
            .with_context(|| format!("the server returned no result for the entry for {spiffe_id}"))
    }

    /// Creates `entries` in one BatchCreateEntry call and returns their IDs in order.
    ///
    /// # Errors
    ///
    /// Fails when the RPC fails or the server rejects any entry.
    pub async fn create_entries(&mut self, entries: Vec<Entry>) -> anyhow::Result<Vec<String>> {
        let count = entries.len();
        let request = BatchCreateEntryRequest {
            entries,
            output_mask: None,
        };
        let response = self
            .entries
            .batch_create_entry(request)
            .await
            .with_context(|| format!("BatchCreateEntry of {count} entries failed"))?
            .into_inner();
        if response.results.len() != count {
            bail!(
                "BatchCreateEntry returned {} results for {count} entries",
                response.results.len()
            );
        }

        response
            .results
            .into_iter()
            .map(|result| match (result.status, result.entry) {
                (Some(status), Some(entry)) if status.code == 0 => Ok(entry.id),
                (Some(status), _) => bail!(
                    "the server rejected an entry: {} (code {})",
                    status.message,
                    status.code
                ),
                (None, _) => bail!("the server returned a result without a status"),
            })
            .collect()
    }

    /// Registers one entry per SPIFFE ID in `spiffe_ids`, each under `parent_id` with
    /// `selector`, in BatchCreateEntry calls of up to [`ENTRIES_PER_CALL`], and returns their IDs
    /// in order.
    ///
    /// # Errors
    ///
    /// Fails when a call fails or the server rejects an entry.
    pub async fn create_entries_for(
        &mut self,
        spiffe_ids: &[SpiffeId],
        parent_id: &SpiffeId,
        selector: &Selector,
    ) -> anyhow::Result<Vec<String>> {
        let parent_id = signet_core::ids::to_proto_id(parent_id);
        let mut ids = Vec::with_capacity(spiffe_ids.len());
        for chunk in spiffe_ids.chunks(ENTRIES_PER_CALL) {
            let entries = chunk
                .iter()
                .map(|spiffe_id| Entry {
                    spiffe_id: Some(signet_core::ids::to_proto_id(spiffe_id)),
                    parent_id: Some(parent_id.clone()),
                    selectors: vec![selector.clone()],
                    ..Entry::default()
                })
                .collect();
            ids.extend(self.create_entries(entries).await?);
        }
        Ok(ids)
    }

    /// Creates a join token valid for one hour and returns its value.
    ///
    /// # Errors
    ///
    /// Fails when the RPC fails.
    pub async fn create_join_token(&mut self) -> anyhow::Result<String> {
        let request = CreateJoinTokenRequest {
            ttl: JOIN_TOKEN_TTL_SECONDS,
            ..CreateJoinTokenRequest::default()
        };
        let token = self
            .agents
            .create_join_token(request)
            .await
            .context("CreateJoinToken failed")?
            .into_inner();
        Ok(token.value)
    }

    /// Returns the number of attested agents the server stores.
    ///
    /// # Errors
    ///
    /// Fails when the RPC fails.
    pub async fn count_agents(&mut self) -> anyhow::Result<u64> {
        let response = self
            .agents
            .count_agents(CountAgentsRequest::default())
            .await
            .context("CountAgents failed")?
            .into_inner();
        u64::try_from(response.count).context("the server reported a negative agent count")
    }
}

async fn connect_socket(path: PathBuf) -> std::io::Result<TokioIo<UnixStream>> {
    Ok(TokioIo::new(UnixStream::connect(path).await?))
}
