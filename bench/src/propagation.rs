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
use crate::cli::{OutputFormat, PropagationArgs};
use crate::deployment::Deployment;
use crate::report::{PropagationReport, Sample};
use crate::wait;
use crate::workload::SvidStream;

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
    let binaries = Binaries::locate(args.server_bin.as_deref(), args.agent_bin.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("signet-bench-")
        .tempdir()
        .context("failed to create a temporary directory")?;

    let report = match measure(binaries, dir.path(), args.entry_count()).await {
        Ok(report) => report,
        Err(error) => {
            let log_dir = dir.keep();
            return Err(error.context(format!(
                "propagation benchmark failed, and the server and agent logs are in {}",
                log_dir.display()
            )));
        }
    };

    match args.output {
        OutputFormat::Human => print!("{report}"),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string(&report).context("failed to encode the report as JSON")?
        ),
    }
    Ok(())
}

/// Starts the deployment in `dir`, opens the stream and measures `count` entries.
async fn measure(binaries: Binaries, dir: &Path, count: u32) -> anyhow::Result<PropagationReport> {
    let mut deployment = Deployment::start_server(binaries, dir).await?;
    let admin = AdminClient::connect(deployment.admin_socket()).await?;
    let agent_id = deployment.start_agent().await?;
    let mut workload = Workload {
        selector: own_uid_selector(),
        parent_id: agent_id,
        admin,
    };

    // The agent streams only to a caller that has at least one X509-SVID.
    let initial = workload_id(&deployment, "initial")?;
    workload.register(&initial).await?;
    let mut stream =
        SvidStream::open(deployment.workload_socket(), &initial, wait::START_TIMEOUT).await?;

    let cpu_before = deployment.cpu_seconds()?;
    let started = Instant::now();
    let mut samples = Vec::new();
    for index in 1..=count {
        let spiffe_id = workload_id(&deployment, &format!("entry-{index}"))?;
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

/// Returns the selector the agent's `unix` attestor gives this process.
fn own_uid_selector() -> Selector {
    Selector {
        r#type: "unix".to_owned(),
        value: format!("uid:{}", nix::unistd::getuid()),
    }
}

fn workload_id(deployment: &Deployment, name: &str) -> anyhow::Result<SpiffeId> {
    let text = format!("spiffe://{}/bench/{name}", deployment.trust_domain());
    signet_core::ids::parse_spiffe_id(&text).with_context(|| format!("invalid SPIFFE ID {text}"))
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
