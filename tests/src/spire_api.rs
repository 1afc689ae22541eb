//! A client for SPIRE's server APIs generated at build time from SPIRE's own .proto files (those
//! the `spire-api` package ships), connected to a server's admin socket.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};
use tower::service_fn;

#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    clippy::allow_attributes_without_reason,
    reason = "generated code"
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/spire_api.rs"));
}

pub use generated::spire::api::server::{agent, bundle, entry, svid};
pub use generated::spire::api::types;

/// Opens a TLS channel to the agent API at `address` without a client certificate, verifying
/// the server against `bundle_pem` and the DNS name `localhost` its certificate carries.
///
/// # Errors
///
/// Fails when the connection or the TLS handshake fails.
pub async fn connect_agent_api(address: &str, bundle_pem: &str) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(bundle_pem))
        .domain_name("localhost");
    Channel::from_shared(format!("https://{address}"))?
        .tls_config(tls)?
        .connect()
        .await
        .with_context(|| format!("connecting to the agent API at {address}"))
}

/// Opens a gRPC channel to the admin API on the Unix socket at `socket`.
///
/// # Errors
///
/// Fails when the socket refuses the connection.
pub async fn connect_admin(socket: &Path) -> anyhow::Result<Channel> {
    let socket: PathBuf = socket.to_path_buf();
    // tonic needs a URI, but the connector below ignores it and dials the socket.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .context("connecting to the admin socket")
}
