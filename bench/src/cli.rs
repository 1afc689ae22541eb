//! Command line of `signet-bench`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

/// Number of entries `propagation --quick` creates.
pub const QUICK_ENTRIES: u32 = 50;

/// Signet benchmarks: start a real server and agent on loopback and measure them.
#[derive(Debug, Parser)]
#[command(name = "signet-bench", version)]
pub struct Cli {
    /// The benchmark to run.
    #[command(subcommand)]
    pub command: Command,
}

/// A benchmark.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measures X509-SVIDs signed per second through BatchNewX509SVID, as an attested agent
    Issuance(IssuanceArgs),
    /// Measures JWT-SVIDs signed per second through NewJWTSVID, as an attested agent
    JwtSigning(JwtSigningArgs),
    /// Measures the agent's and the server's resident memory as they hold more, and the server's
    /// cold start time
    Memory(MemoryArgs),
    /// Measures the time from creating a registration entry to its X509-SVID arriving on a
    /// workload's open FetchX509SVID stream
    Propagation(PropagationArgs),
    /// Measures Workload API latency with 1 to 1,000 workload connections, at a steady call rate
    /// or in bursts
    WorkloadApi(WorkloadApiArgs),
}

/// Options every benchmark takes: the binaries to run and the report format.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The signet-server binary [default: signet-server next to signet-bench]
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,

    /// The signet-agent binary [default: signet-agent next to signet-bench]
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// Output format of the report
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// Options of `signet-bench propagation`.
#[derive(Debug, Args)]
pub struct PropagationArgs {
    /// Number of entries to create, one after another
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub entries: u32,

    /// Create 50 entries instead of --entries, for a run of well under a minute
    #[arg(long, conflicts_with = "entries")]
    pub quick: bool,

    /// Binaries and output format.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `signet-bench issuance`.
#[derive(Debug, Args)]
pub struct IssuanceArgs {
    /// Number of X509-SVIDs to request in the timed section
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub svids: u32,

    /// CSRs per BatchNewX509SVID request
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// BatchNewX509SVID requests in flight at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Registration entries parented to the simulated agent; requests cycle through them
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub entries: u32,

    /// Registration entries of other agents, 100 per agent, stored before the timed section so
    /// that the datastore contains more than the simulated agent's own entries
    #[arg(long, default_value_t = 0)]
    pub other_entries: u32,

    /// Request 1,000 X509-SVIDs for 10 entries, for a run of a few seconds
    #[arg(long, conflicts_with_all = ["svids", "entries", "other_entries"])]
    pub quick: bool,

    /// Binaries and output format.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `signet-bench jwt-signing`.
#[derive(Debug, Args)]
pub struct JwtSigningArgs {
    /// Number of NewJWTSVID requests in the timed section
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub requests: u32,

    /// NewJWTSVID requests in flight at once
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Send 200 requests, for a run of a few seconds
    #[arg(long, conflicts_with = "requests")]
    pub quick: bool,

    /// Binaries and output format.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `signet-bench workload-api`.
#[derive(Debug, Args)]
pub struct WorkloadApiArgs {
    /// Arrival pattern of the calls: `steady` is the mode the goal (p99 under 1 ms at 1,000 connections) is
    /// judged on, `burst` measures throughput
    #[arg(long, value_enum, default_value_t = WorkloadApiMode::Steady)]
    pub mode: WorkloadApiMode,

    /// Numbers of concurrent workload connections, one measurement each
    #[arg(long, value_delimiter = ',', default_values_t = [1, 100, 1000])]
    pub connections: Vec<u32>,

    /// Calls of each kind per measurement, spread over the connections (in burst mode at least
    /// one round of one call per connection)
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    pub calls: u32,

    /// Offered rate of each kind of call in steady mode, in calls per second over all
    /// connections
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,

    /// Measure 1, 10 and 50 connections with 100 calls of each kind
    #[arg(long, conflicts_with_all = ["connections", "calls"])]
    pub quick: bool,

    /// Binaries and output format.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Arrival pattern of the calls of `signet-bench workload-api`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadApiMode {
    /// Every connection makes one call at the same instant, round after round. The latency is
    /// mostly queueing behind the other calls of the round, and the rate is the agent's
    /// throughput
    Burst,
    /// Every connection keeps an open FetchX509SVID stream, and calls are sent at fixed times
    /// (--rate) spread over the connections, timed from their scheduled send time
    Steady,
}

/// Options of `signet-bench memory`.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Numbers of X509-SVIDs the agent caches, in increasing order, each measured once with the
    /// SVIDs spread over workloads that never connect and once with all of them on one stream
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 10_000])]
    pub agent_svids: Vec<u32>,

    /// Numbers of registration entries in the server's datastore, in increasing order
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10_000, 100_000])]
    pub server_entries: Vec<u32>,

    /// Numbers of attested agents in the server's datastore, in increasing order, one per
    /// --server-entries value
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 10_000])]
    pub server_agents: Vec<u32>,

    /// Measure 10, 20 and 40 cached X509-SVIDs, and 100, 200 and 400 entries with 5, 10 and 20
    /// agents
    #[arg(long, conflicts_with_all = ["agent_svids", "server_entries", "server_agents"])]
    pub quick: bool,

    /// Binaries and output format.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Output format of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A summary for people
    Human,
    /// One JSON object with every sample
    Json,
}

impl PropagationArgs {
    /// Returns the number of entries to create: [`QUICK_ENTRIES`] with `--quick`.
    pub fn entry_count(&self) -> u32 {
        if self.quick {
            QUICK_ENTRIES
        } else {
            self.entries
        }
    }
}

impl IssuanceArgs {
    /// Returns the number of X509-SVIDs to request and of entries to register.
    pub fn sizes(&self) -> (u32, u32) {
        if self.quick {
            (1000, 10)
        } else {
            (self.svids, self.entries)
        }
    }
}

impl JwtSigningArgs {
    /// Returns the number of requests to send.
    pub fn request_count(&self) -> u32 {
        if self.quick { 200 } else { self.requests }
    }
}

impl WorkloadApiArgs {
    /// Returns the connection counts to measure and the calls of each kind per measurement.
    pub fn plan(&self) -> (Vec<u32>, u32) {
        if self.quick {
            (vec![1, 10, 50], 100)
        } else {
            (self.connections.clone(), self.calls)
        }
    }
}

impl MemoryArgs {
    /// Returns the cached X509-SVID counts of the agent measurement.
    pub fn agent_sizes(&self) -> Vec<u32> {
        if self.quick {
            vec![10, 20, 40]
        } else {
            self.agent_svids.clone()
        }
    }

    /// Returns the (entries, agents) pairs of the server measurement.
    ///
    /// # Errors
    ///
    /// Fails when `--server-entries` and `--server-agents` list different numbers of sizes.
    pub fn server_sizes(&self) -> anyhow::Result<Vec<(u32, u32)>> {
        if self.quick {
            return Ok(vec![(100, 5), (200, 10), (400, 20)]);
        }
        if self.server_entries.len() != self.server_agents.len() {
            anyhow::bail!(
                "--server-entries lists {} sizes but --server-agents lists {}: give one agent \
                 count per entry count",
                self.server_entries.len(),
                self.server_agents.len()
            );
        }
        Ok(self
            .server_entries
            .iter()
            .copied()
            .zip(self.server_agents.iter().copied())
            .collect())
    }
}
