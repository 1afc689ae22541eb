//! `signet-bench workload-api`: Workload API latency against one real agent with 1, 100 or
//! 1,000 workload connections. It measures the first message of FetchX509SVID and a
//! FetchJWTSVID whose JWT-SVID the agent has cached, in one of two modes:
//!
//! - steady ([`steady`]): every connection keeps an open FetchX509SVID stream, and calls are
//!   sent at a fixed rate spread over the connections. The goal (p99 under 1 ms at 1,000
//!   connections) is judged on this mode.
//! - burst ([`burst`]): every connection calls at the same instant, round after round, which
//!   measures the agent's throughput.
//!
//! Every connection comes from this process, so the agent attests the same process on each
//! call, through SO_PEERCRED and /proc, as it would attest any caller.

mod burst;
mod steady;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use futures::future::try_join_all;
use serde::Serialize;

use crate::admin::AdminClient;
use crate::binaries::Binaries;
use crate::cli::{WorkloadApiArgs, WorkloadApiMode};
use crate::deployment::Deployment;
use crate::host::raise_open_file_limit;
use crate::report::Machine;
use crate::stats::Summary;
use crate::workload_client::WorkloadClient;
use crate::{runner, wait, workload};

/// Report of `signet-bench workload-api`.
#[derive(Debug, Serialize)]
pub struct WorkloadApiReport {
    /// Always "workload-api".
    pub benchmark: &'static str,
    /// Arrival pattern of the calls.
    pub mode: WorkloadApiMode,
    /// The goal this benchmark is judged on.
    pub goal: &'static str,
    /// Whether both kinds of call met [`Self::goal`], or `None` when this run cannot tell
    /// (burst mode, or no measurement with 1,000 connections).
    pub goal_met: Option<bool>,
    /// The host.
    pub machine: Machine,
    /// Soft open-file limit this process and the agent ran with.
    pub open_file_limit: u64,
    /// One measurement per connection count, in the order requested.
    pub levels: Vec<Level>,
}

/// Measurements with one number of workload connections.
#[derive(Debug, Serialize)]
pub struct Level {
    /// Workload connections open at once.
    pub connections: u32,
    /// FetchX509SVID streams held open during the calls: one per connection in steady mode,
    /// none in burst mode.
    pub held_streams: u32,
    /// FetchX509SVID calls, timed to the first message.
    pub x509_first_message: CallSeries,
    /// FetchJWTSVID calls for an audience whose JWT-SVID the agent has cached.
    pub jwt_cached: CallSeries,
}

/// The calls of one kind in one measurement.
#[derive(Debug, Serialize)]
pub struct CallSeries {
    /// Calls made.
    pub calls: usize,
    /// Latency in milliseconds: from the scheduled send time in steady mode, from the start of
    /// the round in burst mode.
    pub latency_ms: Summary,
    /// Time from the scheduled send time to the call's start in this process, in milliseconds,
    /// or `None` in burst mode. It shows how much of the latency is this process falling behind.
    pub send_lag_ms: Option<Summary>,
    /// Calls per second offered (steady mode), or `None` in burst mode.
    pub offered_per_second: Option<f64>,
    /// Calls completed per second: between the first and the last response in steady mode, over
    /// all rounds in burst mode.
    pub achieved_per_second: f64,
    /// CPU time of the agent per call, in microseconds.
    pub agent_cpu_us_per_call: f64,
}

/// A kind of Workload API call the benchmark makes.
#[derive(Clone, Copy, Debug)]
enum CallKind {
    /// FetchX509SVID until its first message, then the stream is dropped.
    X509FirstMessage,
    /// FetchJWTSVID for [`AUDIENCE`], cached by the agent.
    JwtCached,
}

/// Timed outcome of the calls of one kind.
struct Timed {
    latencies_ms: Vec<f64>,
    send_lags_ms: Option<Vec<f64>>,
    offered_per_second: Option<f64>,
    achieved_per_second: f64,
}

/// Runs the benchmark and prints its report.
///
/// # Errors
///
/// Fails when the open-file limit cannot be raised, or the setup or a call fails; the logs are
/// then kept, as [`runner::run`] describes.
pub async fn run(args: &WorkloadApiArgs) -> anyhow::Result<()> {
    let (levels, calls) = args.plan();
    let max_connections = levels.iter().copied().max().unwrap_or(1);
    // Each connection is one descriptor here and one in the agent, which inherits the limit.
    let open_file_limit = raise_open_file_limit(u64::from(max_connections) + SPARE_FILES)?;
    let plan = Plan {
        mode: args.mode,
        levels,
        calls,
        rate: args.rate,
    };
    runner::run("workload-api", &args.common, |binaries, dir| async move {
        measure(binaries, &dir, &plan, open_file_limit).await
    })
    .await
}

/// The measurements of one run.
struct Plan {
    mode: WorkloadApiMode,
    levels: Vec<u32>,
    calls: u32,
    rate: u32,
}

async fn measure(
    binaries: Binaries,
    dir: &Path,
    plan: &Plan,
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

    let mut levels = Vec::with_capacity(plan.levels.len());
    for &connections in &plan.levels {
        levels.push(measure_level(&deployment, plan, connections).await?);
    }
    deployment.stop().await?;
    Ok(WorkloadApiReport {
        benchmark: "workload-api",
        mode: plan.mode,
        goal: GOAL,
        goal_met: goal_met(plan.mode, &levels),
        machine: Machine::detect(),
        open_file_limit,
        levels,
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

/// Opens `connections` connections and measures both kinds of call on them, FetchX509SVID
/// first, in the plan's mode.
async fn measure_level(
    deployment: &Deployment,
    plan: &Plan,
    connections: u32,
) -> anyhow::Result<Level> {
    let socket = deployment.workload_socket();
    let clients = try_join_all((0..connections).map(|_| WorkloadClient::connect(socket)))
        .await
        .with_context(|| format!("failed to open {connections} workload connections"))?;

    let open_streams = match plan.mode {
        WorkloadApiMode::Burst => None,
        WorkloadApiMode::Steady => Some(steady::hold_streams(&clients).await?),
    };
    let x509_first_message =
        CallSeries::measure(deployment, &clients, plan, CallKind::X509FirstMessage).await?;
    let jwt_cached = CallSeries::measure(deployment, &clients, plan, CallKind::JwtCached).await?;
    Ok(Level {
        connections,
        held_streams: open_streams.map_or(0, |streams| streams.count_open()),
        x509_first_message,
        jwt_cached,
    })
}

/// Returns whether every 1,000-connection measurement met [`GOAL`] in steady mode.
fn goal_met(mode: WorkloadApiMode, levels: &[Level]) -> Option<bool> {
    if mode != WorkloadApiMode::Steady {
        return None;
    }
    let judged: Vec<&Level> = levels
        .iter()
        .filter(|level| level.connections == GOAL_CONNECTIONS)
        .collect();
    if judged.is_empty() {
        return None;
    }
    Some(judged.iter().all(|level| {
        level.x509_first_message.latency_ms.p99 < GOAL_P99_MS
            && level.jwt_cached.latency_ms.p99 < GOAL_P99_MS
    }))
}

// === impl CallSeries ===

impl CallSeries {
    /// Makes the `kind` calls of `plan` on `clients` and summarises them with the agent's CPU
    /// time meanwhile.
    async fn measure(
        deployment: &Deployment,
        clients: &[WorkloadClient],
        plan: &Plan,
        kind: CallKind,
    ) -> anyhow::Result<Self> {
        let before = deployment.cpu_seconds()?;
        let timed = match plan.mode {
            WorkloadApiMode::Burst => burst::run(clients, plan.calls, kind).await?,
            WorkloadApiMode::Steady => steady::run(clients, plan.calls, plan.rate, kind).await?,
        };
        let agent_cpu_seconds = deployment.cpu_seconds()?.since(&before).agent;

        let calls = timed.latencies_ms.len();
        let latency_ms = Summary::of(&timed.latencies_ms).context("no call was made")?;
        let send_lag_ms = timed.send_lags_ms.as_deref().and_then(Summary::of);
        Ok(Self {
            calls,
            latency_ms,
            send_lag_ms,
            offered_per_second: timed.offered_per_second,
            achieved_per_second: timed.achieved_per_second,
            agent_cpu_us_per_call: agent_cpu_seconds * 1e6 / calls as f64,
        })
    }
}

// === impl CallKind ===

impl CallKind {
    /// Makes one call on `client`.
    async fn call(self, mut client: WorkloadClient) -> anyhow::Result<()> {
        match self {
            Self::X509FirstMessage => match client.first_x509_svids().await? {
                0 => anyhow::bail!("the first FetchX509SVID message has no X509-SVID"),
                _ => Ok(()),
            },
            Self::JwtCached => client.fetch_jwt_svids(AUDIENCE).await.map(drop),
        }
    }
}

impl fmt::Display for WorkloadApiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            WorkloadApiMode::Steady => writeln!(
                f,
                "Workload API latency, steady mode: calls at a fixed rate, every connection \
                 holding a FetchX509SVID stream"
            )?,
            WorkloadApiMode::Burst => writeln!(
                f,
                "Workload API latency, burst mode: every connection calling at once (throughput; \
                 the goal is judged in steady mode)"
            )?,
        }
        writeln!(f, "machine:         {}", self.machine)?;
        writeln!(f, "open-file limit: {}", self.open_file_limit)?;
        let verdict = match self.goal_met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not judged by this run",
        };
        writeln!(f, "goal:            {} ({verdict})", self.goal)?;
        for level in &self.levels {
            writeln!(f)?;
            writeln!(
                f,
                "{} connections, {} open FetchX509SVID streams:",
                level.connections, level.held_streams
            )?;
            writeln!(
                f,
                "  FetchX509SVID first message: {}",
                level.x509_first_message
            )?;
            writeln!(f, "  FetchJWTSVID cached:         {}", level.jwt_cached)?;
        }
        Ok(())
    }
}

impl fmt::Display for CallSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls, {}",
            self.calls,
            Milliseconds(&self.latency_ms)
        )?;
        if let Some(offered) = self.offered_per_second {
            write!(f, "\n    offered {offered:.0}/s,")?;
        } else {
            write!(f, "\n   ")?;
        }
        write!(
            f,
            " achieved {:.0}/s, agent CPU {:.0} µs per call",
            self.achieved_per_second, self.agent_cpu_us_per_call
        )?;
        if let Some(lag) = &self.send_lag_ms {
            write!(f, "\n    send lag in signet-bench: {}", Milliseconds(lag))?;
        }
        Ok(())
    }
}

/// A latency summary printed to 10 µs, because the steady-mode latencies are below 1 ms.
struct Milliseconds<'a>(&'a Summary);

impl fmt::Display for Milliseconds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = self.0;
        write!(
            f,
            "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (min {:.2}, p90 {:.2}, mean {:.2})",
            summary.p50, summary.p99, summary.max, summary.min, summary.p90, summary.mean
        )
    }
}

/// Audience of the JWT-SVIDs fetched.
const AUDIENCE: &str = "spiffe://example.org/bench/audience";
/// The goal, judged on the steady mode with [`GOAL_CONNECTIONS`] connections.
const GOAL: &str = "p99 under 1 ms at 1,000 connections, steady mode";
const GOAL_CONNECTIONS: u32 = 1000;
const GOAL_P99_MS: f64 = 1.0;
/// File descriptors this process and the agent need besides the workload connections.
const SPARE_FILES: u64 = 1024;
/// Bound for the agent to serve the benchmark's entry.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
