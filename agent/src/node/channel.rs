//! The gRPC channel to the server: TLS 1.3 over TCP, verified by the server's SPIFFE ID.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::ring;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, version};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::cache::X509SvidMaterial;
use crate::config::ServerAddress;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ALPN_HTTP2: &[u8] = b"h2";

/// Builds the TLS client settings: TLS 1.3 only, the given server verifier, and the agent's
/// X509-SVID as client certificate when it has one.
///
/// # Errors
///
/// A rustls error when the SVID's key or chain cannot be used.
pub(crate) fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    client_svid: Option<&X509SvidMaterial>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_svid {
        Some(svid) => {
            let key = PrivatePkcs8KeyDer::from(svid.private_key_pkcs8.to_vec());
            builder.with_client_auth_cert(svid.chain.clone(), PrivateKeyDer::Pkcs8(key))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP2.to_vec()];
    Ok(config)
}

/// Returns a channel that connects on first use and reconnects after a failure.
///
/// The URI scheme is `http` because TLS is added by the connector here, not by tonic.
pub(crate) fn connect_lazy(address: &ServerAddress, tls: ClientConfig) -> Channel {
    let connector = TlsConnector::from(Arc::new(tls));
    let target = address.clone();
    let connect = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(target.host)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    endpoint(address).connect_with_connector_lazy(connect)
}

fn endpoint(address: &ServerAddress) -> Endpoint {
    // The URI only labels the channel: the connector above dials `address` itself.
    let uri = Uri::builder()
        .scheme("http")
        .authority(address.to_string())
        .path_and_query("/")
        .build()
        .unwrap_or_else(|_| Uri::from_static("http://signet-server"));
    Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
}
