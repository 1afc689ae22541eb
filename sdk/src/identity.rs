//! The identities of one request: the TLS peer and the optional caller behind it.

use rustls::pki_types::CertificateDer;
use spiffe::SpiffeId;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The identities the [`PolicyLayer`](crate::PolicyLayer) found for a request, which it puts
/// into the request extensions for handlers.
///
/// # Examples
///
/// ```
/// use axum::Extension;
/// use signet_sdk::Identities;
///
/// async fn handler(Extension(identities): Extension<Identities>) -> String {
///     match &identities.caller {
///         Some(caller) => format!("hello {caller}"),
///         None => "hello".to_owned(),
///     }
/// }
/// ```
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Identities {
    /// SPIFFE ID of the TLS peer: the verified client certificate's URI SAN. `None` when the
    /// connection carried no client certificate.
    pub peer: Option<SpiffeId>,
    /// SPIFFE ID of the caller: the `sub` of the validated JWT-SVID the request carried. `None`
    /// when it carried none, or the layer validates no caller JWT-SVIDs.
    pub caller: Option<SpiffeId>,
}

/// The TLS peer's SPIFFE ID, which [`serve_http`](crate::serve_http) puts into the extensions
/// of every request of a connection.
///
/// Servers that terminate TLS themselves insert it the same way, after the TLS library has
/// verified the client certificate chain, and the layer then uses it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PeerIdentity(pub SpiffeId);

/// Returns the peer's SPIFFE ID from the request extensions: [`PeerIdentity`] when present,
/// otherwise the first certificate of tonic's [`TlsConnectInfo`].
pub(crate) fn peer_of(extensions: &http::Extensions) -> Option<SpiffeId> {
    if let Some(PeerIdentity(id)) = extensions.get() {
        return Some(id.clone());
    }
    let info = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?;
    peer_id_of(info.peer_certs()?.as_slice())
}

/// Returns the SPIFFE ID in the leaf of a verified chain, or `None` when the chain is empty or
/// its leaf is no X509-SVID.
pub(crate) fn peer_id_of(chain: &[CertificateDer<'_>]) -> Option<SpiffeId> {
    signet_core::tls::spiffe_id_of(chain.first()?).ok()
}
