//! `signet-bench memory`: resident memory of the agent as it caches more X509-SVIDs, and of the
//! server as its datastore stores more entries and attested agents, with the server's cold start
//! time at each size.

mod agent;

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;
use spiffe::SpiffeId;
use tokio::time::Instant;

use crate::admin::AdminClient;
use crate::binaries::Binaries;
use crate::cli::MemoryArgs;
use crate::deployment::Deployment;
use crate::host::resident_memory_bytes;
use crate::report::Machine;
use crate::simulated_agent::AgentApi;
use crate::{load, runner, workload};

pub use self::agent::{AgentMemory, AgentMemoryReport, AgentSeries, GOAL_BYTES_PER_SVID, Slope};

/// Attestations in flight at once while the server's agents are created.
const ATTEST_CONCURRENCY: usize = 8;
const MEBIBYTE: f64 = 1024.0 * 1024.0;

/// Report of `signet-bench memory`.
#[derive(Debug, Serialize)]
pub struct MemoryReport {
    /// Always "memory".
    pub benchmark: &'static str,
    /// The host.
    pub machine: Machine,
    /// Agent resident memory by cached X509-SVIDs.
    pub agent: AgentMemoryReport,
    /// Server resident memory and cold start by datastore size.
    pub server: Vec<ServerMemory>,
}

/// The server with some number of entries and attested agents.
#[derive(Debug, Serialize)]
pub struct ServerMemory {
    /// Registration entries in the datastore.
    pub entries: u32,
    /// Attested agents in the datastore, each attested through AttestAgent with a join token.
    pub agents: u32,
    /// VmRSS of the server after the entries and agents were created, in MiB.
    pub rss_mib_running: f64,
    /// Time from starting the server process to its agent API port accepting connections and
    /// its admin API returning a result, in milliseconds.
    pub cold_start_ms: f64,
    /// VmRSS of the server just after that cold start, in MiB.
    pub rss_mib_after_start: f64,
    /// Time spent creating this step's entries and agents, in seconds.
    pub populate_seconds: f64,
}

/// Runs the benchmark and prints its report.
///
/// # Errors
///
/// Fails when a size list is not increasing, or the setup or a call fails; the logs are then
/// kept, as [`runner::run`] describes.
pub async fn run(args: &MemoryArgs) -> anyhow::Result<()> {
    let agent_sizes = args.agent_sizes();
    let server_sizes = args.server_sizes()?;
    check_increasing("--agent-svids", agent_sizes.iter().copied())?;
    check_increasing("--server-entries", server_sizes.iter().map(|size| size.0))?;
    check_increasing("--server-agents", server_sizes.iter().map(|size| size.1))?;
    let settle = if args.quick {
        agent::Settle::AfterServed
    } else {
        agent::Settle::AfterCacheFile
    };
    runner::run("memory", &args.common, |binaries, dir| async move {
        let agent_dir = dir.join("agent-growth");
        let agent = agent::measure(binaries.clone(), &agent_dir, &agent_sizes, settle).await?;
        let server = measure_server(binaries, &dir.join("server-growth"), &server_sizes).await?;
        Ok(MemoryReport {
            benchmark: "memory",
            machine: Machine::detect(),
            agent,
            server,
        })
    })
    .await
}

/// Creates entries and attested agents until the server stores each of `sizes`, and reads its
/// VmRSS and cold start time at each size.
async fn measure_server(
    binaries: Binaries,
    dir: &Path,
    sizes: &[(u32, u32)],
) -> anyhow::Result<Vec<ServerMemory>> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut deployment = Deployment::start_server(binaries, dir).await?;
    // The entries are parented to an agent that never attests, so no agent signs them.
    let parent_id = deployment.workload_id("absent-agent")?;

    let (mut entries, mut agents) = (0, 0);
    let mut results = Vec::with_capacity(sizes.len());
    for &(entry_target, agent_target) in sizes {
        let started = Instant::now();
        let mut admin = AdminClient::connect(deployment.admin_socket()).await?;
        add_entries(&deployment, &mut admin, &parent_id, entries..entry_target).await?;
        add_agents(&deployment, &mut admin, agent_target - agents).await?;
        (entries, agents) = (entry_target, agent_target);
        let populate_seconds = started.elapsed().as_secs_f64();

        let rss_mib_running = resident_memory_bytes(deployment.server_pid()?)? as f64 / MEBIBYTE;
        let cold_start = deployment.restart_server().await?;
        let rss_mib_after_start =
            resident_memory_bytes(deployment.server_pid()?)? as f64 / MEBIBYTE;
        check_agent_count(&deployment, agents).await?;
        results.push(ServerMemory {
            entries,
            agents,
            rss_mib_running,
            cold_start_ms: load::milliseconds(cold_start),
            rss_mib_after_start,
            populate_seconds,
        });
    }
    deployment.stop().await?;
    Ok(results)
}

async fn add_entries(
    deployment: &Deployment,
    admin: &mut AdminClient,
    parent_id: &SpiffeId,
    indexes: std::ops::Range<u32>,
) -> anyhow::Result<()> {
    let spiffe_ids = indexes
        .map(|index| deployment.workload_id(&format!("stored-{index}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let selector = workload::own_uid_selector();
    admin
        .create_entries_for(&spiffe_ids, parent_id, &selector)
        .await
        .map(drop)
}

/// Attests `count` new simulated agents, each with a join token of its own.
async fn add_agents(
    deployment: &Deployment,
    admin: &mut AdminClient,
    count: u32,
) -> anyhow::Result<()> {
    let mut tokens = Vec::with_capacity(count as usize);
    for _ in 0..count {
        tokens.push(admin.create_join_token().await?);
    }
    let api = AgentApi::connect(deployment).await?;
    let api = &api;
    load::run(tokens, ATTEST_CONCURRENCY, |token| async move {
        api.attest(&token).await.map(drop)
    })
    .await
    .map(drop)
}

/// Checks that the restarted server still stores every agent the benchmark attested.
async fn check_agent_count(deployment: &Deployment, expected: u32) -> anyhow::Result<()> {
    let stored = AdminClient::connect(deployment.admin_socket())
        .await?
        .count_agents()
        .await?;
    if stored != u64::from(expected) {
        bail!("the server stores {stored} agents, expected {expected}");
    }
    Ok(())
}

fn check_increasing(flag: &str, sizes: impl Iterator<Item = u32>) -> anyhow::Result<()> {
    let mut previous = 0;
    for size in sizes {
        if size <= previous && previous > 0 {
            bail!("{flag} must list increasing sizes, but {size} follows {previous}");
        }
        previous = size;
    }
    Ok(())
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "resident memory and cold start")?;
        writeln!(f, "machine: {}", self.machine)?;
        writeln!(f)?;
        write!(f, "{}", self.agent)?;
        writeln!(f)?;
        writeln!(
            f,
            "server: {:>8} {:>7} {:>12} {:>13} {:>16} {:>10}",
            "entries", "agents", "RSS MiB", "cold start ms", "RSS after start", "populate s"
        )?;
        for row in &self.server {
            writeln!(
                f,
                "        {:>8} {:>7} {:>12.1} {:>13.1} {:>16.1} {:>10.1}",
                row.entries,
                row.agents,
                row.rss_mib_running,
                row.cold_start_ms,
                row.rss_mib_after_start,
                row.populate_seconds
            )?;
        }
        Ok(())
    }
}
