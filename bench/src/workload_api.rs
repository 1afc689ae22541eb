//! `signet-bench workload-api`: Workload API latency against one real agent with 1, 100 or
//! 1,000 workload connections calling at once. It measures the first message of
//! FetchX509SVID and a FetchJWTSVID whose JWT-SVID the agent has cached.
//!
//! Every connection comes from this process, so the agent attests the same process on each
//! call, through SO_PEERCRED and /proc, as it would attest any caller.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::try_join_all;
use serde::Serialize;
use tokio::time::Instant;

use crate::admin::AdminClient;
use crate::binaries::Binaries;
use crate::cli::WorkloadApiArgs;
use crate::deployment::Deployment;
use crate::host::raise_open_file_limit;
use crate::load::milliseconds;
use crate::report::{DisplayMs, Machine};
use crate::stats::Summary;
use crate::workload_client::WorkloadClient;
use crate::{runner, wait, workload};

/// Audience of the JWT-SVIDs fetched.
const AUDIENCE: &str = "spiffe://example.org/bench/audience";
/// File descriptors this process and the agent need besides the workload connections.
const SPARE_FILES: u64 = 1024;
/// Bound for the agent to serve the benchmark's entry.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Report of `signet-bench workload-api`.
#[derive(Debug, Serialize)]
pub struct WorkloadApiReport {
    /// Always "workload-api".
    pub benchmark: &'static str,
    /// The host.
    pub machine: Machine,
    /// Soft open-file limit this process and the agent ran with.
    pub open_file_limit: u64,
    /// One measurement per connection count, in the order asked.
    pub levels: Vec<Level>,
}

/// Latencies with one number of connections calling at once.
#[derive(Debug, Serialize)]
pub struct Level {
    /// Workload connections, each with one call in flight.
    pub connections: u32,
    /// Calls of each kind: rounds times connections.
    pub calls: usize,
    /// FetchX509SVID call to its first message, in milliseconds.
    pub x509_first_message_ms: Summary,
    /// FetchJWTSVID with a cached JWT-SVID, in milliseconds.
    pub jwt_cached_ms: Summary,
}

/// Runs the benchmark and prints its report.
///
/// # Errors
///
/// Fails when the open-file limit cannot be raised, or the setup or a call fails; the logs are
/// then kept, as [`runner::run`] describes.
pub async fn run(args: &WorkloadApiArgs) -> anyhow::Result<()> {
    let (levels, calls) = args.plan();
    let most = levels.iter().copied().max().unwrap_or(1);
    // Each connection is one descriptor here and one in the agent, which inherits the limit.
    let open_file_limit = raise_open_file_limit(u64::from(most) + SPARE_FILES)?;
    runner::run("workload-api", &args.common, |binaries, dir| async move {
        measure(binaries, &dir, &levels, calls, open_file_limit).await
    })
    .await
}

async fn measure(
    binaries: Binaries,
    dir: &Path,
    levels: &[u32],
    calls: u32,
    open_file_limit: u64,
) -> anyhow::Result<WorkloadApiReport> {
    let mut deployment = Deployment::start_server(binaries, dir).await?;
    let mut admin = AdminClient::connect(deployment.admin_socket()).await?;
    let agent_id = deployment.start_agent().await?;
    let spiffe_id = deployment.workload_id("workload-api")?;
    admin
        .create_entry(&spiffe_id, &agent_id, &workload::own_uid_selector())
        .await?;
    wait_until_served(deployment.workload_socket()).await?;

    let mut results = Vec::with_capacity(levels.len());
    for &connections in levels {
        results.push(measure_level(deployment.workload_socket(), connections, calls).await?);
    }
    deployment.stop().await?;
    Ok(WorkloadApiReport {
        benchmark: "workload-api",
        machine: Machine::detect(),
        open_file_limit,
        levels: results,
    })
}

/// Waits until the agent serves an X509-SVID and a JWT-SVID to this process, which also puts
/// the JWT-SVID for [`AUDIENCE`] in the agent's cache.
async fn wait_until_served(socket: &Path) -> anyhow::Result<()> {
    let client = WorkloadClient::connect(socket).await?;
    let client = &client;
    wait::until("an SVID for this process", READY_TIMEOUT, || async move {
        let mut client = client.clone();
        client.first_x509_svids().await?;
        client.fetch_jwt_svids(AUDIENCE).await
    })
    .await
    .map(drop)
}

/// Opens `connections` connections and makes rounds of one call per connection at once, first
/// FetchX509SVID, then FetchJWTSVID, until `calls` calls of each kind are done.
async fn measure_level(socket: &Path, connections: u32, calls: u32) -> anyhow::Result<Level> {
    let clients = try_join_all((0..connections).map(|_| WorkloadClient::connect(socket)))
        .await
        .with_context(|| format!("failed to open {connections} workload connections"))?;
    let rounds = calls.div_ceil(connections).max(1);

    let mut x509 = Vec::new();
    let mut jwt = Vec::new();
    for _ in 0..rounds {
        x509.extend(
            round(&clients, |mut client| async move {
                match client.first_x509_svids().await? {
                    0 => bail!("the first FetchX509SVID message has no X509-SVID"),
                    _ => Ok(()),
                }
            })
            .await?,
        );
    }
    for _ in 0..rounds {
        jwt.extend(
            round(&clients, |mut client| async move {
                client.fetch_jwt_svids(AUDIENCE).await.map(drop)
            })
            .await?,
        );
    }

    Ok(Level {
        connections,
        calls: x509.len(),
        x509_first_message_ms: Summary::of(&x509).context("no FetchX509SVID call was made")?,
        jwt_cached_ms: Summary::of(&jwt).context("no FetchJWTSVID call was made")?,
    })
}

/// Starts one `call` per client at once and returns each call's latency in milliseconds.
async fn round<F, Fut>(clients: &[WorkloadClient], call: F) -> anyhow::Result<Vec<f64>>
where
    F: Fn(WorkloadClient) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    try_join_all(clients.iter().map(|client| {
        let call = call(client.clone());
        async move {
            let started = Instant::now();
            call.await?;
            Ok::<_, anyhow::Error>(milliseconds(started.elapsed()))
        }
    }))
    .await
}

impl fmt::Display for WorkloadApiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Workload API latency, every connection calling at once")?;
        writeln!(f, "machine:        {}", self.machine)?;
        writeln!(f, "open-file limit: {}", self.open_file_limit)?;
        for level in &self.levels {
            writeln!(f)?;
            writeln!(
                f,
                "{} connections, {} calls of each kind:",
                level.connections, level.calls
            )?;
            writeln!(
                f,
                "  FetchX509SVID first message: {}",
                DisplayMs(&level.x509_first_message_ms)
            )?;
            writeln!(
                f,
                "  FetchJWTSVID cached:         {}",
                DisplayMs(&level.jwt_cached_ms)
            )?;
        }
        Ok(())
    }
}
