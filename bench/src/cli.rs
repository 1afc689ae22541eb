//! Command line of `signet-bench`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Number of entries `--quick` creates.
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
    /// Measures the time from creating a registration entry to its X509-SVID arriving on a
    /// workload's open FetchX509SVID stream
    Propagation(PropagationArgs),
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

/// Output format of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A summary for people
    Human,
    /// One JSON object with every sample
    Json,
}
