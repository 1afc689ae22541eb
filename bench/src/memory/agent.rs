//! The agent half of `signet-bench memory`: the agent's resident memory as it caches more
//! X509-SVIDs, with the SVIDs spread over workloads that never connect, or all on one stream.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use signet_proto::signet::agent::debug::v1::ExplainWorkloadRequest;
use signet_proto::signet::agent::debug::v1::debug_client::DebugClient;
use signet_proto::signet::agent::debug::v1::explain_workload_request::Workload;
use signet_proto::spire::api::types::{Entry, Selector};
use spiffe::SpiffeId;
use tokio::time::Instant;

use crate::admin::{AdminClient, ENTRIES_PER_CALL};
use crate::binaries::Binaries;
use crate::deployment::Deployment;
use crate::host::resident_memory_bytes;
use crate::workload_client::WorkloadClient;
use crate::{wait, workload};

/// Agent resident memory by cached X509-SVIDs, in both layouts.
#[derive(Debug, Serialize)]
pub struct AgentMemoryReport {
    /// The SVIDs spread over workloads that never connect: the memory the agent keeps per
    /// cached X509-SVID.
    pub spread: AgentSeries,
    /// Every SVID for the benchmark's own uid, after the first FetchX509SVID message carried
    /// them all: adds what remains of that message's buffers.
    pub one_stream: AgentSeries,
    /// Whether the spread layout's slope over its largest step is under
    /// [`GOAL_BYTES_PER_SVID`].
    pub goal_met: bool,
}

/// One layout measured at each size.
#[derive(Debug, Serialize)]
pub struct AgentSeries {
    /// One row per size.
    pub rows: Vec<AgentMemory>,
    /// Growth between consecutive rows.
    pub slopes: Vec<Slope>,
}

/// The agent with some number of cached X509-SVIDs.
#[derive(Debug, Serialize)]
pub struct AgentMemory {
    /// X509-SVIDs the agent caches.
    pub cached_svids: u32,
    /// VmRSS of the agent once it cached them and wrote them to its data directory (with
    /// `--quick`, once it served them), in MiB.
    pub rss_mib: f64,
    /// Time from registering the entries of this step to the agent serving all of them, in
    /// seconds.
    pub sync_seconds: f64,
}

/// Resident memory added per X509-SVID between two sizes.
#[derive(Debug, Serialize)]
pub struct Slope {
    /// Cached X509-SVIDs at the smaller size.
    pub from_svids: u32,
    /// Cached X509-SVIDs at the larger size.
    pub to_svids: u32,
    /// (RSS(to) - RSS(from)) / (to - from), in bytes.
    pub bytes_per_svid: f64,
}

/// Whether a reading waits for the agent's workload cache file.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum Settle {
    /// Read after the agent wrote the step's SVIDs to its workload cache file, so that the
    /// reading includes what the allocator keeps of that write's buffers. The agent writes
    /// the file at most once every `signet_agent::persist::MIN_WRITE_INTERVAL` (10 s), so
    /// each step waits up to that long.
    AfterCacheFile,
    /// Read as soon as the agent serves the step's SVIDs, for `--quick`. The reading then
    /// may or may not include a write of the cache file.
    AfterServed,
}

/// Placement of the benchmark's entries over workloads.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Layout {
    /// Every entry for the benchmark's own uid.
    OneStream,
    /// Each entry for a uid of its own that no process runs as, except the last entry of each
    /// step, which is for the benchmark's own uid and shows when the step is synced.
    Spread,
}

/// Measures both layouts, each on a server and agent of its own.
///
/// # Errors
///
/// Fails when a size is 0, a process cannot start, a call fails or the agent does not cache
/// every entry.
pub(super) async fn measure(
    binaries: Binaries,
    dir: &Path,
    sizes: &[u32],
    settle: Settle,
) -> anyhow::Result<AgentMemoryReport> {
    if sizes.contains(&0) {
        bail!("--agent-svids sizes must be at least 1, because each step registers an entry");
    }
    let spread_dir = dir.join("spread");
    let spread =
        measure_layout(binaries.clone(), &spread_dir, sizes, Layout::Spread, settle).await?;
    let one_stream_dir = dir.join("one-stream");
    let one_stream =
        measure_layout(binaries, &one_stream_dir, sizes, Layout::OneStream, settle).await?;
    let goal_met = spread
        .slopes
        .last()
        .is_some_and(|slope| slope.bytes_per_svid < GOAL_BYTES_PER_SVID);
    Ok(AgentMemoryReport {
        spread,
        one_stream,
        goal_met,
    })
}

/// Registers entries laid out as `layout` until the agent caches each of `sizes` X509-SVIDs,
/// and reads the agent's VmRSS at each size once `settle` holds.
async fn measure_layout(
    binaries: Binaries,
    dir: &Path,
    sizes: &[u32],
    layout: Layout,
    settle: Settle,
) -> anyhow::Result<AgentSeries> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut deployment = Deployment::start_server(binaries, dir).await?;
    let mut admin = AdminClient::connect(deployment.admin_socket()).await?;
    let agent_id = deployment.start_agent().await?;
    let client = WorkloadClient::connect(deployment.workload_socket()).await?;
    // The deployment starts the agent with `--data-dir <dir>/agent`.
    let cache_file = dir.join("agent").join(WORKLOAD_CACHE_FILE);

    let mut registered = 0;
    let mut rows = Vec::with_capacity(sizes.len());
    for (step, &size) in (1..).zip(sizes) {
        let started = Instant::now();
        let entries = layout.entries(&deployment, &agent_id, registered..size)?;
        for chunk in entries.chunks(ENTRIES_PER_CALL) {
            admin.create_entries(chunk.to_vec()).await?;
        }
        registered = size;
        wait_for_svids(&client, layout.served(step, size), size).await?;
        let sync_seconds = started.elapsed().as_secs_f64();

        if settle == Settle::AfterCacheFile {
            let last_id = deployment.workload_id(&entry_name(size - 1))?;
            wait_for_saved(&cache_file, &last_id, size).await?;
        }
        let rss = resident_memory_bytes(deployment.agent_pid()?)?;
        check_cached(&deployment, size).await?;
        rows.push(AgentMemory {
            cached_svids: size,
            rss_mib: rss as f64 / MEBIBYTE,
            sync_seconds,
        });
    }
    deployment.stop().await?;
    let slopes = slopes(&rows);
    Ok(AgentSeries { rows, slopes })
}

/// Waits until the first FetchX509SVID message carries `count` X509-SVIDs, with a bound that
/// grows with the `cached` X509-SVIDs the agent signs.
async fn wait_for_svids(client: &WorkloadClient, count: u32, cached: u32) -> anyhow::Result<()> {
    let timeout = wait::START_TIMEOUT + PER_SVID_TIMEOUT * cached;
    let condition = format!("{count} X509-SVIDs on the Workload API");
    wait::until(&condition, timeout, || async move {
        let served = client.clone().first_x509_svids().await?;
        if served < count as usize {
            bail!("the agent serves {served} X509-SVIDs");
        }
        Ok(())
    })
    .await
}

/// Waits until the agent's stored workload cache names `spiffe_id`, the last entry of the
/// step, so that the reading does not depend on whether the write is still running.
async fn wait_for_saved(path: &Path, spiffe_id: &SpiffeId, cached: u32) -> anyhow::Result<()> {
    let timeout = wait::START_TIMEOUT + PER_SVID_TIMEOUT * cached;
    let quoted = format!("\"{spiffe_id}\"");
    let condition = format!("{} to contain {spiffe_id}", path.display());
    wait::until(&condition, timeout, || {
        let quoted = quoted.as_bytes();
        async move {
            let contents = tokio::fs::read(path)
                .await
                .with_context(|| format!("failed to read {}", path.display()))?;
            if !contents
                .windows(quoted.len())
                .any(|window| window == quoted)
            {
                bail!("the file does not name the entry yet");
            }
            Ok(())
        }
    })
    .await
}

/// Checks through the agent's debug API that the agent has an X509-SVID for each of the
/// `expected` entries.
async fn check_cached(deployment: &Deployment, expected: u32) -> anyhow::Result<()> {
    let socket = deployment
        .workload_socket()
        .with_file_name("private")
        .join("admin.sock");
    let channel = signet_core::admin_socket::connect(&socket)
        .await
        .with_context(|| format!("failed to connect to {}", socket.display()))?;
    let request = ExplainWorkloadRequest {
        workload: Some(Workload::Uid(nix::unistd::getuid().as_raw())),
    };
    let response = DebugClient::new(channel)
        .max_decoding_message_size(MAX_EXPLAIN_BYTES)
        .explain_workload(request)
        .await
        .context("ExplainWorkload failed")?
        .into_inner();
    let cached = response
        .entries
        .iter()
        .filter(|entry| entry.has_svid)
        .count();
    if cached != expected as usize {
        bail!(
            "the agent has X509-SVIDs for {cached} of {} entries, expected {expected}: \
             read the agent log in the kept directory",
            response.entries.len()
        );
    }
    Ok(())
}

/// Returns the per-SVID growth between each pair of consecutive rows.
fn slopes(rows: &[AgentMemory]) -> Vec<Slope> {
    rows.windows(2)
        .filter_map(|pair| match pair {
            [from, to] => Some(Slope {
                from_svids: from.cached_svids,
                to_svids: to.cached_svids,
                bytes_per_svid: (to.rss_mib - from.rss_mib) * MEBIBYTE
                    / f64::from(to.cached_svids - from.cached_svids),
            }),
            _ => None,
        })
        .collect()
}

fn entry_name(index: u32) -> String {
    format!("cached-{index}")
}

// === impl Layout ===

impl Layout {
    /// Returns the entries `indexes` of this layout, parented to `agent_id`. The last index
    /// is the last entry of the step.
    fn entries(
        self,
        deployment: &Deployment,
        agent_id: &SpiffeId,
        indexes: std::ops::Range<u32>,
    ) -> anyhow::Result<Vec<Entry>> {
        let parent_id = signet_core::ids::to_proto_id(agent_id);
        let last = indexes.end.saturating_sub(1);
        indexes
            .map(|index| {
                let spiffe_id = deployment.workload_id(&entry_name(index))?;
                let selector = if self == Self::OneStream || index == last {
                    workload::own_uid_selector()
                } else {
                    absent_uid_selector(index)
                };
                Ok(Entry {
                    spiffe_id: Some(signet_core::ids::to_proto_id(&spiffe_id)),
                    parent_id: Some(parent_id.clone()),
                    selectors: vec![selector],
                    ..Entry::default()
                })
            })
            .collect()
    }

    /// Returns how many X509-SVIDs the benchmark's own process receives after `step` steps
    /// (counted from 1), once the agent caches `size`.
    fn served(self, step: u32, size: u32) -> u32 {
        match self {
            Self::OneStream => size,
            Self::Spread => step,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OneStream => "one stream",
            Self::Spread => "spread",
        })
    }
}

// === impl AgentMemoryReport ===

impl fmt::Display for AgentMemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "agent:  {:>10} {:>12} {:>10} {:>10} {:>16}",
            "layout", "cached SVIDs", "RSS MiB", "sync s", "bytes per SVID"
        )?;
        for (layout, series) in [
            (Layout::Spread, &self.spread),
            (Layout::OneStream, &self.one_stream),
        ] {
            for (index, row) in series.rows.iter().enumerate() {
                // The slope of a row is its growth from the row before.
                let slope = index
                    .checked_sub(1)
                    .and_then(|before| series.slopes.get(before))
                    .map_or_else(String::new, |slope| format!("{:.0}", slope.bytes_per_svid));
                writeln!(
                    f,
                    "        {:>10} {:>12} {:>10.1} {:>10.2} {:>16}",
                    layout.to_string(),
                    row.cached_svids,
                    row.rss_mib,
                    row.sync_seconds,
                    slope
                )?;
            }
        }
        writeln!(
            f,
            "goal (spread, largest step): under {GOAL_BYTES_PER_SVID} bytes per cached SVID, {}",
            if self.goal_met { "met" } else { "not met" }
        )
    }
}

/// Returns a selector for a uid that no process runs as, one per entry.
fn absent_uid_selector(index: u32) -> Selector {
    Selector {
        r#type: "unix".to_owned(),
        value: format!("uid:{}", ABSENT_UID_BASE.saturating_add(index)),
    }
}

/// Goal for the agent's resident memory per cached X509-SVID, in bytes.
pub const GOAL_BYTES_PER_SVID: f64 = 2048.0;
/// First uid of the spread layout's entries. Above the ranges Linux distributions assign,
/// so that no process on the host matches them.
const ABSENT_UID_BASE: u32 = 3_000_000_000;
/// Bound for the agent to sign one more X509-SVID, added up over the entries it must sign.
const PER_SVID_TIMEOUT: Duration = Duration::from_millis(20);
/// Largest ExplainWorkload response accepted: each entry takes about 200 bytes.
const MAX_EXPLAIN_BYTES: usize = 256 * 1024 * 1024;
/// Name of the agent's stored workload cache in its data directory.
const WORKLOAD_CACHE_FILE: &str = "workload_cache.json";
const MEBIBYTE: f64 = 1024.0 * 1024.0;
