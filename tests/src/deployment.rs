//! The usual test setup: a server, one agent attested with a join token, and one registration
//! entry for the test process's own uid.

use spiffe::X509Context;

use crate::agent::Agent;
use crate::cli::EntrySpec;
use crate::server::{Server, ServerOptions};
use crate::wait::PROPAGATION_TIMEOUT;
use crate::workload;

/// Path of the workload SPIFFE ID [`Deployment::start`] registers.
pub const WORKLOAD_PATH: &str = "/workload/e2e";

/// A server and an agent, with the test process registered as a workload.
#[derive(Debug)]
pub struct Deployment {
    /// The server.
    pub server: Server,
    /// The agent, attested with `join_token`.
    pub agent: Agent,
    /// The join token the agent used.
    pub join_token: String,
    /// SPIFFE ID of the registered workload.
    pub workload_id: String,
    /// Entry ID of the workload's registration entry.
    pub entry_id: String,
}

impl Deployment {
    /// Starts a server, registers `spiffe://example.org/workload/e2e` for the current uid under
    /// the agent-to-be, then starts the agent with a fresh join token.
    ///
    /// # Errors
    ///
    /// Fails when any step fails; the logs of the started processes are printed on panic.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_ttl(None).await
    }

    /// Like [`Deployment::start`], with the entry's X509-SVID TTL set when given.
    ///
    /// # Errors
    ///
    /// See [`Deployment::start`].
    pub async fn start_with_ttl(x509_svid_ttl: Option<u64>) -> anyhow::Result<Self> {
        Self::start_with(ServerOptions::default(), x509_svid_ttl).await
    }

    /// Like [`Deployment::start_with_ttl`], with the server started with `server_options`.
    ///
    /// # Errors
    ///
    /// See [`Deployment::start`].
    pub async fn start_with(
        server_options: ServerOptions,
        x509_svid_ttl: Option<u64>,
    ) -> anyhow::Result<Self> {
        let server = Server::start_with(server_options).await?;
        let join_token = server.create_token().await?;
        let workload_id = server.spiffe_id(WORKLOAD_PATH);

        let mut entry = EntrySpec::new(&workload_id, server.join_token_agent_id(&join_token))
            .selector(crate::current_uid_selector());
        if let Some(ttl) = x509_svid_ttl {
            entry = entry.x509_svid_ttl(ttl);
        }
        let entry_id = server.create_entry(&entry).await?;

        let agent = Agent::start(&server, &join_token).await?;
        Ok(Self {
            server,
            agent,
            join_token,
            workload_id,
            entry_id,
        })
    }

    /// Fetches the X.509 context through the agent's Workload API with rust-spiffe, waiting up
    /// to 20 s for it to hold the workload's SVID.
    ///
    /// # Errors
    ///
    /// Fails with the last error when no such context arrives in time.
    pub async fn fetch_x509_context(&self) -> anyhow::Result<X509Context> {
        workload::fetch_x509_context_with(
            &self.agent.endpoint(),
            &self.workload_id,
            PROPAGATION_TIMEOUT,
        )
        .await
    }

    /// Returns the logs of the server and the agent, for checks that span both.
    pub fn logs(&self) -> String {
        format!("{}\n{}", self.server.log(), self.agent.log())
    }
}
