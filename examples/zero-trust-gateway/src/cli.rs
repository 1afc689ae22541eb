//! Pieces the example's client programs share: the target flags, the identity from the Workload
//! API, and the outcome printed as one JSON line for the runner.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::Method;
use signet_sdk::{AllowedPeers, WorkloadIdentity};

use crate::client::{self, BearerToken, Call, Outcome};

/// Bound on the wait for the first X509-SVID: the agent may still be learning the entry.
pub const IDENTITY_TIMEOUT: Duration = Duration::from_secs(30);

/// The request a client program sends.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Address to call: the gateway, or orders directly.
    #[arg(long, value_name = "HOST:PORT")]
    pub address: SocketAddr,
    /// SPIFFE ID that the server's X509-SVID must carry.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub server_id: String,
    /// HTTP method.
    pub method: Method,
    /// Request path, such as /orders/42.
    pub path: String,
}

/// Returns this process's identity from the Workload API named by `SPIFFE_ENDPOINT_SOCKET`.
///
/// # Errors
///
/// When the variable is unset or no X509-SVID arrives within [`IDENTITY_TIMEOUT`].
pub async fn workload_identity() -> anyhow::Result<WorkloadIdentity> {
    WorkloadIdentity::builder()
        .initial_sync_timeout(IDENTITY_TIMEOUT)
        .build()
        .await
        .context("getting this workload's X509-SVID from the Workload API failed")
}

/// Sends the request of `target` with mutual TLS as `identity`, accepting only a server whose
/// SPIFFE ID is `target.server_id`.
///
/// # Errors
///
/// See [`client::send`].
pub async fn call_as(
    identity: &WorkloadIdentity,
    target: &TargetArgs,
    token: Option<&BearerToken>,
) -> anyhow::Result<Outcome> {
    let servers = AllowedPeers::parse([&target.server_id])
        .with_context(|| format!("invalid --server-id {:?}", target.server_id))?;
    let config = identity.client_config(servers)?;
    let call = Call {
        address: target.address,
        // The verifier checks the SPIFFE ID, so the name only goes into SNI and Host.
        server_name: "localhost",
        method: target.method.clone(),
        path: &target.path,
        token,
    };
    client::send(Arc::new(config), &call).await
}

/// Prints the outcome as one JSON line on stdout and returns success, or prints the error on
/// stderr and returns failure.
#[must_use]
pub fn report(program: &str, result: anyhow::Result<Outcome>) -> ExitCode {
    let printed = result.and_then(|outcome| Ok(serde_json::to_string(&outcome)?));
    match printed {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{program}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
