//! Certificates for unit tests: a throwaway CA that signs CSRs like the Signet server does.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{
    CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use rustls::server::WebPkiClientVerifier;
use spiffe::SpiffeId;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Router;

use crate::config::ServerAddress;

pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub(crate) fn bundle(&self) -> Vec<CertificateDer<'static>> {
        vec![self.issuer.der().clone()]
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a certificate and PKCS#8 key with `uri` as URI SAN and "localhost" as DNS SAN,
    /// valid for an hour.
    pub(crate) fn issue(
        &self,
        uri: &str,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(uri.try_into().unwrap()));
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        (vec![certificate.der().clone()], key.into())
    }

    /// Signs `csr_der` for `spiffe_id`, valid from `not_before` for `lifetime`, ignoring the
    /// CSR's own names as the server does.
    pub(crate) fn sign_csr(
        &self,
        csr_der: &[u8],
        spiffe_id: &SpiffeId,
        not_before: SystemTime,
        lifetime: Duration,
    ) -> Vec<Vec<u8>> {
        let csr = CertificateSigningRequestDer::from(csr_der.to_vec());
        let mut request = CertificateSigningRequestParams::from_der(&csr).unwrap();
        request.params.subject_alt_names =
            vec![SanType::URI(spiffe_id.to_string().try_into().unwrap())];
        request.params.not_before = not_before.into();
        request.params.not_after = (not_before + lifetime).into();
        let leaf = request.signed_by(&self.issuer).unwrap();
        vec![leaf.der().to_vec()]
    }
}

/// Serves `router` with TLS 1.3 on a loopback port, as `server_uri`, requiring client
/// certificates from `ca`, and returns the address.
pub(crate) async fn serve_tls(ca: &TestCa, server_uri: &str, router: Router) -> ServerAddress {
    let (chain, key) = ca.issue(server_uri);
    let acceptor = TlsAcceptor::from(Arc::new(server_tls(ca, chain, key)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let incoming = async_stream::stream! {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    yield Err::<_, io::Error>(error);
                    continue;
                }
            };
            // A client that rejects the server's certificate fails the handshake: skip it.
            if let Ok(tls) = acceptor.accept(tcp).await {
                yield Ok(tls);
            }
        }
    };
    tokio::spawn(router.serve_with_incoming(incoming));
    ServerAddress {
        host: local.ip().to_string(),
        port: local.port(),
    }
}

fn server_tls(
    ca: &TestCa,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for authority in ca.bundle() {
        roots.add(authority).unwrap();
    }
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}
