//! `signet-agent helper`: writes the caller's X509-SVID, key and bundle to files for software
//! that cannot speak the Workload API, and optionally JWT-SVIDs and the JWT bundle. After each
//! X.509 update it signals a process or runs a command, as SPIRE's spiffe-helper does.

pub mod config;
pub mod files;
pub mod jwt;
pub mod jwt_config;
pub mod notify;
pub mod supervise;

use std::future::Future;

use anyhow::Context;
use futures::StreamExt;
use futures::future::join_all;
use spiffe::transport::Endpoint;
use spiffe::{WorkloadApiClient, X509Context};

use crate::cli::describe;

pub use self::config::{HelperArgs, HelperConfig};
use self::files::Material;
use self::supervise::Supervision;

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

/// Writes every file once, then signals and runs the command.
async fn one_shot(config: &HelperConfig) -> anyhow::Result<()> {
    let client = connect(&config.endpoint).await?;
    let context = client
        .fetch_x509_context()
        .await
        .context("fetching the X509-SVID from the Workload API failed")?;
    write_x509(config, &context)?;
    jwt::write_once(&client, &config.jwt).await?;
    notify::notify(&config.notify)
        .await
        .context("notifying after the update failed")
}

/// Keeps every file current forever: the X.509 files, the JWT bundle file and each JWT-SVID
/// file are followed independently, so an error in one does not hold up the others.
async fn daemon(config: &HelperConfig) {
    let bundle = async {
        if let Some(path) = &config.jwt.bundle_file {
            jwt::keep_bundle_current(&config.endpoint, &config.jwt, path).await;
        }
    };
    let svids = join_all(
        config
            .jwt
            .svids
            .iter()
            .map(|file| jwt::keep_svid_current(&config.endpoint, &config.jwt, file)),
    );
    tokio::join!(keep_x509_current(config), bundle, svids);
}

/// Follows the X.509 context stream forever, reconnecting with backoff after errors.
async fn keep_x509_current(config: &HelperConfig) {
    let mut supervision = Supervision::new("X.509 context");
    loop {
        let error = match follow(config, &mut supervision).await {
            Ok(()) => anyhow::anyhow!("the agent closed the stream"),
            Err(error) => error,
        };
        supervision.failed(&error).await;
    }
}

/// Connects and applies every update of the stream until it ends or fails.
async fn follow(config: &HelperConfig, supervision: &mut Supervision) -> anyhow::Result<()> {
    let client = connect(&config.endpoint).await?;
    let mut updates = client
        .stream_x509_contexts()
        .await
        .context("watching the Workload API failed")?;
    while let Some(context) = updates.next().await {
        let context = context.context("the Workload API stream failed")?;
        supervision.succeeded();
        if let Err(error) = update(config, &context).await {
            tracing::error!(error = format!("{error:#}"), "Failed to apply the update");
        }
    }
    Ok(())
}

/// Writes the X.509 files for `context`, then signals and runs the command.
async fn update(config: &HelperConfig, context: &X509Context) -> anyhow::Result<()> {
    write_x509(config, context)?;
    notify::notify(&config.notify)
        .await
        .context("notifying after the update failed")
}

/// Writes the X509-SVID, key and bundle files for `context`.
fn write_x509(config: &HelperConfig, context: &X509Context) -> anyhow::Result<()> {
    let material = Material::from_context(context)?;
    files::write_all(&files::plan(&config.files, &material))?;
    tracing::info!(
        spiffe_id = material.spiffe_id,
        serial = leaf_serial(&material),
        cert_dir = %config.files.cert_dir.display(),
        "Wrote the X509-SVID files"
    );
    Ok(())
}

async fn connect(endpoint: &Endpoint) -> anyhow::Result<WorkloadApiClient> {
    WorkloadApiClient::connect(endpoint.clone())
        .await
        .with_context(|| {
            format!(
                "connecting to the Workload API at {} failed (is signet-agent running with \
                 this socket path?)",
                describe(endpoint)
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
