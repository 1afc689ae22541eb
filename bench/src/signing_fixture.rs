//! The setup of the signing benchmarks: a server, one simulated agent attested to it with a
//! join token, and registration entries parented to that agent.

use std::path::Path;

use spiffe::SpiffeId;

use crate::admin::AdminClient;
use crate::binaries::Binaries;
use crate::deployment::Deployment;
use crate::simulated_agent::{AgentApi, SimulatedAgent};
use crate::workload;

/// Entries per agent that [`SigningFixture::add_other_entries`] registers.
const ENTRIES_PER_OTHER_AGENT: u32 = 100;

/// A running server with an attested simulated agent and its entries.
#[derive(Debug)]
pub struct SigningFixture {
    /// The server; no real agent runs.
    pub deployment: Deployment,
    /// The simulated agent the entries are parented to.
    pub agent: SimulatedAgent,
    /// The registered entries: (entry ID, SPIFFE ID).
    pub entries: Vec<(String, SpiffeId)>,
}

impl SigningFixture {
    /// Starts a server in `dir`, attests a simulated agent and registers `entry_count` entries
    /// named `bench/<prefix>-<i>` for it.
    ///
    /// # Errors
    ///
    /// Fails when the server does not start, attestation fails or an entry is rejected.
    pub async fn start(
        binaries: Binaries,
        dir: &Path,
        prefix: &str,
        entry_count: u32,
    ) -> anyhow::Result<Self> {
        let deployment = Deployment::start_server(binaries, dir).await?;
        let mut admin = AdminClient::connect(deployment.admin_socket()).await?;
        let token = admin.create_join_token().await?;
        let agent = AgentApi::connect(&deployment).await?.attest(&token).await?;

        let spiffe_ids = (0..entry_count)
            .map(|index| deployment.workload_id(&format!("{prefix}-{index}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ids = admin
            .create_entries_for(
                &spiffe_ids,
                agent.spiffe_id(),
                &workload::own_uid_selector(),
            )
            .await?;
        Ok(Self {
            deployment,
            agent,
            entries: ids.into_iter().zip(spiffe_ids).collect(),
        })
    }

    /// Registers `count` entries parented to agents that never attest, 100 per
    /// agent, so that the datastore contains entries the simulated agent is not authorized for.
    ///
    /// # Errors
    ///
    /// Fails when an entry is rejected.
    pub async fn add_other_entries(&self, count: u32) -> anyhow::Result<()> {
        let mut admin = AdminClient::connect(self.deployment.admin_socket()).await?;
        let selector = workload::own_uid_selector();
        for first in (0..count).step_by(ENTRIES_PER_OTHER_AGENT as usize) {
            let agent = first / ENTRIES_PER_OTHER_AGENT;
            let parent_id = self
                .deployment
                .workload_id(&format!("other-agent-{agent}"))?;
            let spiffe_ids = (first..count.min(first + ENTRIES_PER_OTHER_AGENT))
                .map(|index| self.deployment.workload_id(&format!("other-{index}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            admin
                .create_entries_for(&spiffe_ids, &parent_id, &selector)
                .await?;
        }
        Ok(())
    }

    /// Returns the CPU time the server has used so far, in seconds.
    ///
    /// # Errors
    ///
    /// Fails when the server's CPU time cannot be read.
    pub fn server_cpu_seconds(&self) -> anyhow::Result<f64> {
        let pid = self.deployment.server_pid()?;
        Ok(crate::cpu::process_cpu_time(pid)?.as_secs_f64())
    }
}
