//! `signet-bench propagation`: how long a new registration entry takes to reach a workload
//! that already has an open FetchX509SVID stream.
//!
//! Each iteration creates one entry for the benchmark's own uid through the admin API. It waits
//! for the stream message that carries the new X509-SVID before the next iteration starts. The
//! workload's X509-SVID set, and so every message, grows by one X509-SVID per iteration.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use signet_proto::spire::api::types::Selector;
use spiffe::SpiffeId;
use tokio::time::Instant;

use crate::admin::AdminClient;
use crate::binaries::Binaries;
use crate::cli::PropagationArgs;
use crate::deployment::Deployment;
use crate::load::milliseconds;
use crate::report::{PropagationReport, Sample};
use crate::workload::{self, SvidStream};
use crate::{runner, wait};

/// Bound for one entry to reach the stream.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the benchmark and prints its report in the format `args` selects.
///
/// # Errors
///
/// Fails when a binary is missing, a process fails to start, or an RPC, the stream or a
/// delivery fails. The temporary directory is then kept and named in the error, because it
/// contains the server and agent logs.
pub async fn run(args: &PropagationArgs) -> anyhow::Result<()> {
    let count = args.entry_count();
    runner::run("propagation", &args.common, |binaries, dir| async move {
        measure(binaries, &dir, count).await
    })
    .await
}

/// Starts the deployment in `dir`, opens the stream and measures `count` entries.
async fn measure(binaries: Binaries, dir: &Path, count: u32) -> anyhow::Result<PropagationReport> {
    let mut deployment = Deployment::start_server(binaries, dir).await?;
    let admin = AdminClient::connect(deployment.admin_socket()).await?;
    let agent_id = deployment.start_agent().await?;
    let mut workload = Workload {
        selector: workload::own_uid_selector(),
        parent_id: agent_id,
        admin,
    };

    // The agent streams only to a caller that has at least one X509-SVID.
    let initial = deployment.workload_id("initial")?;
    workload.register(&initial).await?;
    let mut stream =
        SvidStream::open(deployment.workload_socket(), &initial, wait::START_TIMEOUT).await?;

    let cpu_before = deployment.cpu_seconds()?;
    let started = Instant::now();
    let mut samples = Vec::new();
    for index in 1..=count {
        let spiffe_id = deployment.workload_id(&format!("entry-{index}"))?;
        samples.push(workload.measure_one(&mut stream, spiffe_id).await?);
    }
    let elapsed = started.elapsed();
    let cpu = deployment.cpu_seconds()?.since(&cpu_before);

    drop(stream);
    deployment.stop().await?;
    PropagationReport::new(samples, elapsed, cpu).context("the benchmark took no samples")
}

/// Registers entries for the benchmark process itself.
struct Workload {
    selector: Selector,
    parent_id: SpiffeId,
    admin: AdminClient,
}

impl Workload {
    async fn register(&mut self, spiffe_id: &SpiffeId) -> anyhow::Result<()> {
        self.admin
            .create_entry(spiffe_id, &self.parent_id, &self.selector)
            .await
            .map(drop)
    }

    /// Creates the entry for `spiffe_id` and waits for its X509-SVID on `stream`.
    async fn measure_one(
        &mut self,
        stream: &mut SvidStream,
        spiffe_id: SpiffeId,
    ) -> anyhow::Result<Sample> {
        let before_create = Instant::now();
        self.register(&spiffe_id).await?;
        let created = Instant::now();
        let delivery = stream.wait_for(&spiffe_id, DELIVERY_TIMEOUT).await?;
        Ok(Sample {
            spiffe_id: spiffe_id.to_string(),
            create_ms: milliseconds(created - before_create),
            latency_ms: milliseconds(
                delivery
                    .received_at
                    .saturating_duration_since(before_create),
            ),
            svids: delivery.spiffe_ids.len(),
        })
    }
}
