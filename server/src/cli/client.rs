//! The tonic channel to the admin API over its Unix socket.

use std::error::Error as StdError;
use std::path::Path;

use anyhow::Context;
use signet_core::admin_socket;
use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::spire::api::types;
use spiffe::TrustDomain;
use tonic::transport::Channel;

use super::rpc_error;

/// Connects to the admin API at `socket`.
///
/// # Errors
///
/// When the socket does not exist or nothing listens on it.
pub(super) async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    admin_socket::connect(socket).await.map_err(|error| {
        let cause = error.source().map(ToString::to_string).unwrap_or_default();
        anyhow::anyhow!(
            "{error} ({cause}): is the server running? Set --admin-socket to the server's socket"
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
