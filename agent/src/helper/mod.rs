//! `signet-agent helper`: writes the caller's X509-SVID, key and bundle to files for software
//! that cannot speak the Workload API, and signals a process or runs a command after each
//! update, as SPIRE's spiffe-helper does.

pub mod config;
pub mod files;
pub mod notify;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use spiffe::{WorkloadApiClient, X509Context};

use crate::cli::describe;

pub use self::config::{HelperArgs, HelperConfig};
use self::files::Material;

/// First wait before reconnecting to an unreachable agent.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Maximum wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs the helper until `shutdown` completes (daemon mode) or after the first write (one shot).
///
/// # Errors
///
/// In one-shot mode, when the agent cannot be reached, the files cannot be written, or the
/// signal or command after the write fails. In daemon mode, when the cert_dir cannot be created.
pub async fn run(config: HelperConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    files::create_cert_dir(&config.files)?;
    if !config.daemon_mode {
        return one_shot(&config).await;
    }
    tokio::select! {
        () = daemon(&config) => Ok(()),
        () = shutdown => Ok(()),
    }
}

async fn one_shot(config: &HelperConfig) -> anyhow::Result<()> {
    let client = connect(config).await?;
    let context = client
        .fetch_x509_context()
        .await
        .context("fetching the X509-SVID from the Workload API failed")?;
    update(config, &context).await
}

/// Follows the Workload API stream forever, reconnecting with backoff after errors.
async fn daemon(config: &HelperConfig) {
    let mut backoff = FIRST_BACKOFF;
    let mut in_outage = false;
    loop {
        let error = match follow(config, &mut in_outage, &mut backoff).await {
            Ok(()) => anyhow::anyhow!("the agent closed the stream"),
            Err(error) => error,
        };
        if in_outage {
            tracing::debug!(
                error = format!("{error:#}"),
                "The Workload API is still unavailable"
            );
        } else {
            tracing::warn!(
                error = format!("{error:#}"),
                "The Workload API is unavailable; retrying with backoff"
            );
            in_outage = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects and applies every update of the stream until it ends or fails.
async fn follow(
    config: &HelperConfig,
    in_outage: &mut bool,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let client = connect(config).await?;
    let mut updates = client
        .stream_x509_contexts()
        .await
        .context("watching the Workload API failed")?;
    while let Some(context) = updates.next().await {
        let context = context.context("the Workload API stream failed")?;
        if *in_outage {
            tracing::info!("The Workload API is available again");
            *in_outage = false;
        }
        *backoff = FIRST_BACKOFF;
        if let Err(error) = update(config, &context).await {
            tracing::error!(error = format!("{error:#}"), "Failed to apply the update");
        }
    }
    Ok(())
}

/// Writes the files for `context`, then signals and runs the command.
async fn update(config: &HelperConfig, context: &X509Context) -> anyhow::Result<()> {
    let material = Material::from_context(context)?;
    files::write_all(&files::plan(&config.files, &material))?;
    tracing::info!(
        spiffe_id = material.spiffe_id,
        serial = leaf_serial(&material),
        cert_dir = %config.files.cert_dir.display(),
        "Wrote the X509-SVID files"
    );
    notify::notify(&config.notify)
        .await
        .context("notifying after the update failed")
}

async fn connect(config: &HelperConfig) -> anyhow::Result<WorkloadApiClient> {
    WorkloadApiClient::connect(config.endpoint.clone())
        .await
        .with_context(|| {
            format!(
                "connecting to the Workload API at {} failed (is signet-agent running with \
                 this socket path?)",
                describe(&config.endpoint)
            )
        })
}

/// Returns the leaf's serial number in hex, or an empty string when the leaf cannot be parsed.
fn leaf_serial(material: &Material) -> String {
    material
        .chain
        .first()
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
        .map(|(_, leaf)| leaf.raw_serial_as_string())
        .unwrap_or_default()
}
