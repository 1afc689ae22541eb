//! The tonic channel to the admin API over its Unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::spire::api::types;
use spiffe::TrustDomain;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use super::rpc_error;

/// Time allowed for connecting to the admin socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one admin RPC.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the admin API at `socket`.
///
/// # Errors
///
/// When the socket does not exist or nothing listens on it.
pub(super) async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let path = socket.to_owned();
    // The URI is required by the builder but unused: every connection goes to the socket.
    let endpoint = Endpoint::from_static("http://localhost")
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    endpoint
        .connect_with_connector(tower::service_fn(move |_| connect_socket(path.clone())))
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "failed to connect to the admin socket {} ({}): is the server running? \
                 Set --admin-socket to the server's socket",
                socket.display(),
                root_cause(&error)
            )
        })
}

/// Returns the server's bundle.
///
/// # Errors
///
/// When the RPC fails.
pub(super) async fn fetch_bundle(channel: Channel) -> anyhow::Result<types::Bundle> {
    BundleClient::new(channel)
        .get_bundle(GetBundleRequest::default())
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| rpc_error("fetch the bundle", &status))
}

/// Returns the server's trust domain, read from its bundle.
///
/// # Errors
///
/// When the RPC fails or the server names an invalid trust domain.
pub(super) async fn trust_domain(channel: Channel) -> anyhow::Result<TrustDomain> {
    let bundle = fetch_bundle(channel).await?;
    TrustDomain::new(&bundle.trust_domain).with_context(|| {
        format!(
            "the server sent an invalid trust domain {:?}",
            bundle.trust_domain
        )
    })
}

/// Returns the innermost error, which names the OS failure, because the transport's own layers
/// repeat it.
fn root_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause
}

async fn connect_socket(path: PathBuf) -> std::io::Result<TokioIo<UnixStream>> {
    Ok(TokioIo::new(UnixStream::connect(path).await?))
}
