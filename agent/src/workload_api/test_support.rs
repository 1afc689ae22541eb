//! A Workload API server on a temporary socket, with cache contents for tests.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
use signet_core::health::{AGENT_SERVICE, HealthState};
use signet_core::selector::Selector;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spiffe::{SpiffeId, TrustDomain};
use tempfile::TempDir;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::transport::Channel;
use zeroize::Zeroizing;

use super::{WorkloadApiError, WorkloadApiListener};
use crate::cache::{Cache, Identity, Snapshot, X509SvidMaterial};
use crate::jwt::JwtSigner;
use crate::test_util::TestCa;

/// A Workload API server on a temporary socket, serving `cache`.
pub(crate) struct TestServer {
    pub(crate) cache: Cache,
    /// Readiness reported by the gRPC health service on the socket, not ready until published.
    pub(crate) health: HealthState,
    pub(crate) socket_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), WorkloadApiError>>,
    _dir: TempDir,
}

impl TestServer {
    /// Starts a server without a JWT signer, so `FetchJWTSVID` returns `Unavailable`.
    pub(crate) async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a server whose JWT-SVIDs come from `signer`.
    pub(crate) async fn start_with_signer(signer: Arc<dyn JwtSigner>) -> Self {
        Self::start_with(Some(signer)).await
    }

    async fn start_with(signer: Option<Arc<dyn JwtSigner>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("public").join("api.sock");
        let cache = Cache::new(trust_domain());
        let (health, health_service) = HealthState::new(AGENT_SERVICE).await;
        let mut listener = WorkloadApiListener::bind(&socket_path)
            .unwrap()
            .with_health(health_service);
        if let Some(signer) = signer {
            listener = listener.with_jwt_signer(signer);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(listener.serve(cache.clone(), async {
            let _ = stopped.await;
        }));
        Self {
            cache,
            health,
            socket_path,
            stop: Some(stop),
            server,
            _dir: dir,
        }
    }

    /// Returns a plain gRPC client that adds no security header by itself.
    pub(crate) async fn client(&self) -> SpiffeWorkloadApiClient<Channel> {
        let path = self.socket_path.clone();
        let channel = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let stream = UnixStream::connect(path).await?;
                    Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .unwrap();
        SpiffeWorkloadApiClient::new(channel)
    }

    /// Completes the shutdown future and returns what `serve` returned.
    pub(crate) async fn shutdown(mut self) -> Result<(), WorkloadApiError> {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .expect("server stops within 10 s")
            .unwrap()
    }
}

pub(crate) fn trust_domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

/// Returns the `unix:uid` selector of the test process, which is also the caller in tests.
pub(crate) fn own_uid_selector() -> Selector {
    Selector::parse(&format!("unix:uid:{}", nix::unistd::geteuid())).unwrap()
}

/// Returns an identity without an SVID, whose entry ID is its SPIFFE ID.
pub(crate) fn identity(spiffe_id: &str, selectors: Vec<Selector>) -> Identity {
    Identity {
        entry_id: spiffe_id.to_owned(),
        spiffe_id: SpiffeId::new(spiffe_id).unwrap().into(),
        selectors,
        hint: String::new(),
        svid: None,
        expanded_svids: BTreeMap::new(),
    }
}

/// Returns an identity with an SVID from `ca`.
pub(crate) fn signed_identity(ca: &TestCa, spiffe_id: &str, selectors: Vec<Selector>) -> Identity {
    Identity {
        svid: Some(svid_material(ca, spiffe_id)),
        ..identity(spiffe_id, selectors)
    }
}

/// Returns an X509-SVID with a fresh key, valid for an hour.
pub(crate) fn svid_material(ca: &TestCa, spiffe_id: &str) -> Arc<X509SvidMaterial> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.is_ca = IsCa::ExplicitNoCa;
    let csr = params.serialize_request(&key).unwrap();
    let now = SystemTime::now();
    let lifetime = Duration::from_secs(3600);
    let chain = ca.sign_csr(csr.der(), &SpiffeId::new(spiffe_id).unwrap(), now, lifetime);
    Arc::new(X509SvidMaterial {
        chain: chain.into_iter().map(Into::into).collect(),
        private_key_pkcs8: Zeroizing::new(key.serialize_der()),
        expires_at: now + lifetime,
    })
}

/// Returns a synced snapshot with `ca`'s bundle.
pub(crate) fn snapshot(ca: &TestCa, identities: Vec<Identity>) -> Snapshot {
    Snapshot {
        trust_domain: trust_domain(),
        bundle: ca.bundle(),
        jwt_authorities: Vec::new(),
        identities,
        revision: 0,
    }
}

/// Wraps `message` in a request with the Workload API security header.
pub(crate) fn with_header<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    request
}
