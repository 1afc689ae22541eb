//! The server client over a real TLS connection on loopback, against an in-process gRPC server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use signet_core::tls::spiffe_id_of;
use signet_proto::spire::api::server::agent::v1::agent_server::{
    Agent as AgentService, AgentServer,
};
use signet_proto::spire::api::server::agent::v1::{
    AttestAgentRequest, AttestAgentResponse, BanAgentRequest, CountAgentsRequest,
    CountAgentsResponse, CreateJoinTokenRequest, DeleteAgentRequest, GetAgentRequest,
    ListAgentsRequest, ListAgentsResponse, RenewAgentRequest, RenewAgentResponse,
};
use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
use signet_proto::spire::api::server::bundle::v1::bundle_server::{Bundle, BundleServer};
use signet_proto::spire::api::types::{
    Agent as ProtoAgent, Bundle as ProtoBundle, JoinToken as ProtoJoinToken, X509Certificate,
    X509svid,
};
use tonic::transport::Server;
use tonic::{Request, Response};

use super::*;
use crate::test_util::{TestCa, serve_tls};

const AGENT_ID: &str = "spiffe://example.org/spire/agent/join_token/abc";
const SERVER_ID: &str = "spiffe://example.org/spire/server";

/// A Bundle service that records the SPIFFE ID of each client certificate it receives.
struct FakeBundle {
    trust_domain: String,
    authorities: Vec<CertificateDer<'static>>,
    callers: Arc<Mutex<Vec<SpiffeId>>>,
}

#[tonic::async_trait]
impl Bundle for FakeBundle {
    async fn get_bundle(
        &self,
        request: Request<GetBundleRequest>,
    ) -> Result<Response<ProtoBundle>, Status> {
        if let Some(peer) = request
            .peer_certs()
            .and_then(|chain| chain.first().cloned())
        {
            self.callers
                .lock()
                .unwrap()
                .push(spiffe_id_of(&peer).unwrap());
        }
        Ok(Response::new(ProtoBundle {
            trust_domain: self.trust_domain.clone(),
            x509_authorities: self
                .authorities
                .iter()
                .map(|authority| X509Certificate {
                    asn1: authority.to_vec(),
                    tainted: false,
                })
                .collect(),
            ..ProtoBundle::default()
        }))
    }
}

struct TestServer {
    address: ServerAddress,
    callers: Arc<Mutex<Vec<SpiffeId>>>,
}

/// Starts a TLS 1.3 gRPC server on loopback that requires client certificates from `ca`.
async fn start_server(ca: &TestCa, server_uri: &str, trust_domain: &str) -> TestServer {
    let callers = Arc::new(Mutex::new(Vec::new()));
    let service = FakeBundle {
        trust_domain: trust_domain.to_owned(),
        authorities: ca.bundle(),
        callers: Arc::clone(&callers),
    };
    let router = Server::builder().add_service(BundleServer::new(service));
    TestServer {
        address: serve_tls(ca, server_uri, router).await,
        callers,
    }
}

fn agent_svid(ca: &TestCa) -> X509SvidMaterial {
    let agent_id = SpiffeId::new(AGENT_ID).unwrap();
    let pending = PendingSvid::generate(&agent_id).unwrap();
    let chain = ca.sign_csr(
        pending.csr_der(),
        &agent_id,
        SystemTime::now() - Duration::from_secs(60),
        Duration::from_secs(3600),
    );
    pending.complete(chain).unwrap()
}

fn trust_domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn mtls_client(ca: &TestCa, address: &ServerAddress) -> ServerClient {
    let verifier = SpiffeServerVerifier::new(&ca.bundle(), server_id(&trust_domain())).unwrap();
    let tls = channel::client_config(Arc::new(verifier), Some(&agent_svid(ca))).unwrap();
    ServerClient::new(channel::connect_lazy(address, tls))
}

#[tokio::test(flavor = "current_thread")]
async fn mtls_client_fetches_bundle_as_agent() {
    let ca = TestCa::new();
    let server = start_server(&ca, SERVER_ID, "example.org").await;

    let bundle = mtls_client(&ca, &server.address)
        .bundle(&trust_domain())
        .await
        .unwrap();

    assert_eq!(bundle, ca.bundle());
    let callers = server.callers.lock().unwrap().clone();
    assert_eq!(callers, [SpiffeId::new(AGENT_ID).unwrap()]);
}

#[tokio::test(flavor = "current_thread")]
async fn client_rejects_server_with_other_spiffe_id() {
    let ca = TestCa::new();
    let server = start_server(&ca, "spiffe://example.org/imposter", "example.org").await;

    let error = mtls_client(&ca, &server.address)
        .bundle(&trust_domain())
        .await
        .unwrap_err();

    let NodeError::Rpc { code, message, .. } = &error else {
        panic!("expected an RPC error, got {error:?}");
    };
    assert_eq!(*code, tonic::Code::Unavailable);
    assert!(
        message.contains(
            "the server presented SPIFFE ID spiffe://example.org/imposter, but the agent \
             expects spiffe://example.org/spire/server: check --trust-domain"
        ),
        "{message}"
    );
    assert!(!message.contains("OtherError"), "{message}");
    assert!(server.callers.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn client_rejects_server_from_other_ca() {
    let trusted = TestCa::new();
    let other = TestCa::new();
    let server = start_server(&other, SERVER_ID, "example.org").await;

    let result = mtls_client(&trusted, &server.address)
        .bundle(&trust_domain())
        .await;

    let Err(NodeError::Rpc { message, .. }) = &result else {
        panic!("expected an RPC error, got {result:?}");
    };
    assert!(
        message.contains("the trust bundle does not match the server's CA"),
        "{message}"
    );
    assert!(server.callers.lock().unwrap().is_empty());
}

/// A Bundle service that returns `status` for every call.
struct RejectingBundle {
    status: Status,
}

#[tonic::async_trait]
impl Bundle for RejectingBundle {
    async fn get_bundle(
        &self,
        _request: Request<GetBundleRequest>,
    ) -> Result<Response<ProtoBundle>, Status> {
        Err(self.status.clone())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn node_notices_that_the_server_no_longer_knows_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let service = RejectingBundle {
        status: Status::permission_denied(
            "agent spiffe://example.org/spire/agent/join_token/sha256:ab is not attested; it \
             may have been evicted",
        ),
    };
    let router = Server::builder().add_service(BundleServer::new(service));
    let mut config = config(dir.path(), None, Bootstrap::None);
    config.server_address = serve_tls(&ca, SERVER_ID, router).await;
    store_svid(&ca, dir.path(), SystemTime::now() - Duration::from_secs(60));
    let node = Node::start(&config).await.unwrap();

    let result = node.client().bundle(&trust_domain()).await;
    assert!(matches!(result, Err(NodeError::Rpc { .. })), "{result:?}");

    let rejection = tokio::time::timeout(Duration::from_secs(5), node.rejected())
        .await
        .expect("the rejection is reported at once");
    assert_eq!(rejection, Rejection::NotAttested);
}

#[tokio::test(flavor = "current_thread")]
async fn evicted_agent_without_token_stops_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    store_svid(&ca, dir.path(), SystemTime::now() - Duration::from_secs(60));
    let config = config(dir.path(), None, Bootstrap::None);
    let node = Node::start(&config).await.unwrap();

    let error = Node::reattest(&config, &node, Rejection::NotAttested)
        .await
        .unwrap_err();

    assert!(matches!(error, NodeError::Evicted(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("evicted"), "{message}");
    assert!(message.contains("--join-token"), "{message}");
    assert!(!message.contains("/join_token/abc"), "{message}");
}

#[tokio::test(flavor = "current_thread")]
async fn banned_agent_stops_with_its_used_token() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    store_svid(&ca, dir.path(), SystemTime::now() - Duration::from_secs(60));
    // AGENT_ID was made from the token "abc", so the server has used it up.
    let config = config(dir.path(), Some("abc"), Bootstrap::None);
    let node = Node::start(&config).await.unwrap();

    let error = Node::reattest(&config, &node, Rejection::Banned)
        .await
        .unwrap_err();

    assert!(matches!(error, NodeError::Banned(_)), "{error:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn banned_agent_with_new_token_attests_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    store_svid(&ca, dir.path(), SystemTime::now() - Duration::from_secs(60));
    // Nothing listens on the configured port: the attempt to attest shows in the error.
    let config = config(dir.path(), Some("fresh"), Bootstrap::None);
    let node = Node::start(&config).await.unwrap();

    let error = Node::reattest(&config, &node, Rejection::Banned)
        .await
        .unwrap_err();

    assert!(
        matches!(error, NodeError::AttestAfterBanFailed { .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("fresh"), "{error}");
}

#[tokio::test(flavor = "current_thread")]
async fn evicted_agent_with_token_attests_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    store_svid(&ca, dir.path(), SystemTime::now() - Duration::from_secs(60));
    // Nothing listens on the configured port: the attempt to attest again shows in the error.
    let config = config(dir.path(), Some("fresh"), Bootstrap::None);
    let node = Node::start(&config).await.unwrap();

    let error = Node::reattest(&config, &node, Rejection::NotAttested)
        .await
        .unwrap_err();

    let NodeError::ReattestFailed { source, .. } = &error else {
        panic!("expected a failed attestation, got {error:?}");
    };
    assert!(
        matches!(
            **source,
            NodeError::JoinTokenRejected { .. }
                | NodeError::Rpc {
                    call: "AttestAgent",
                    ..
                }
        ),
        "{source:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn bundle_of_other_trust_domain_is_rejected() {
    let ca = TestCa::new();
    let server = start_server(&ca, SERVER_ID, "other.org").await;

    let result = mtls_client(&ca, &server.address)
        .bundle(&trust_domain())
        .await;

    assert!(
        matches!(result, Err(NodeError::InvalidBundle(_))),
        "{result:?}"
    );
}

fn config(
    data_dir: &std::path::Path,
    join_token: Option<&str>,
    bootstrap: Bootstrap,
) -> AgentConfig {
    AgentConfig {
        // Port 9 (discard) on loopback: these tests must fail or resume before connecting.
        server_address: ServerAddress {
            host: "127.0.0.1".to_owned(),
            port: 9,
        },
        trust_domain: trust_domain(),
        join_token: join_token.map(|token| {
            let args = crate::config::RunArgs {
                trust_domain: Some("example.org".to_owned()),
                join_token: Some(token.to_owned()),
                ..crate::config::RunArgs::default()
            };
            AgentConfig::from_args(args).unwrap().join_token.unwrap()
        }),
        bootstrap,
        data_dir: data_dir.to_owned(),
        socket_path: data_dir.join("api.sock"),
        admin_socket: data_dir.join("admin.sock"),
        persist_workload_svids: true,
        metrics_address: None,
        health_address: None,
    }
}

fn store_svid(ca: &TestCa, data_dir: &std::path::Path, not_before: SystemTime) {
    let agent_id = SpiffeId::new(AGENT_ID).unwrap();
    let pending = PendingSvid::generate(&agent_id).unwrap();
    let chain = ca.sign_csr(
        pending.csr_der(),
        &agent_id,
        not_before,
        Duration::from_secs(3600),
    );
    store::save_bundle(data_dir, &ca.bundle()).unwrap();
    store::save_svid(data_dir, &pending.complete(chain).unwrap()).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn start_without_state_or_token_fails() {
    let dir = tempfile::tempdir().unwrap();
    let result = Node::start(&config(dir.path(), None, Bootstrap::InsecureBootstrap)).await;
    assert!(
        matches!(result, Err(NodeError::MissingJoinToken(_))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn start_without_trust_fails_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let result = Node::start(&config(dir.path(), Some("abc"), Bootstrap::None)).await;
    assert!(matches!(result, Err(NodeError::MissingTrust)), "{result:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn start_resumes_with_stored_svid() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    store_svid(&ca, dir.path(), SystemTime::now() - Duration::from_secs(60));

    let node = Node::start(&config(dir.path(), None, Bootstrap::None))
        .await
        .unwrap();

    assert_eq!(node.agent_id().to_string(), AGENT_ID);
    assert_eq!(node.bundle(), ca.bundle());
    assert!(node.renew_at() < node.expires_at());
}

#[tokio::test(flavor = "current_thread")]
async fn start_with_expired_svid_requires_token() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    store_svid(
        &ca,
        dir.path(),
        SystemTime::now() - Duration::from_secs(7200),
    );

    let result = Node::start(&config(dir.path(), None, Bootstrap::None)).await;

    let Err(error @ NodeError::SvidExpired { .. }) = result else {
        panic!("expected SvidExpired, got {result:?}");
    };
    let message = error.to_string();
    assert!(
        message.contains("signet-server token generate --spiffe-id"),
        "{message}"
    );
    assert!(message.contains("--join-token"), "{message}");
    assert!(!message.contains(AGENT_ID), "join token in {message}");
}

#[tokio::test(flavor = "current_thread")]
async fn start_rejects_state_of_other_trust_domain() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    store_svid(&ca, dir.path(), SystemTime::now() - Duration::from_secs(60));
    let mut config = config(dir.path(), None, Bootstrap::None);
    config.trust_domain = TrustDomain::new("other.org").unwrap();

    let result = Node::start(&config).await;

    assert!(
        matches!(result, Err(NodeError::InvalidStore { .. })),
        "{result:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn update_bundle_stores_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    store_svid(&ca, dir.path(), SystemTime::now() - Duration::from_secs(60));
    let node = Node::start(&config(dir.path(), None, Bootstrap::None))
        .await
        .unwrap();

    assert!(!node.update_bundle(ca.bundle()).unwrap());

    let mut rotated = ca.bundle();
    rotated.extend(TestCa::new().bundle());
    assert!(node.update_bundle(rotated.clone()).unwrap());
    assert_eq!(node.bundle(), rotated);
    let stored = store::load(dir.path()).unwrap().unwrap();
    assert_eq!(stored.bundle, rotated);
}

/// An Agent service whose `RenewAgent` signs every agent SVID until `expiry`, like a server
/// whose CA expires then. The other RPCs are not served.
struct CappedAgentService {
    ca: Arc<TestCa>,
    expiry: SystemTime,
}

#[tonic::async_trait]
impl AgentService for CappedAgentService {
    type AttestAgentStream = tokio_stream::Empty<Result<AttestAgentResponse, Status>>;

    async fn count_agents(
        &self,
        _: Request<CountAgentsRequest>,
    ) -> Result<Response<CountAgentsResponse>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn list_agents(
        &self,
        _: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn get_agent(&self, _: Request<GetAgentRequest>) -> Result<Response<ProtoAgent>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn delete_agent(&self, _: Request<DeleteAgentRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn ban_agent(&self, _: Request<BanAgentRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn attest_agent(
        &self,
        _: Request<tonic::Streaming<AttestAgentRequest>>,
    ) -> Result<Response<Self::AttestAgentStream>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn renew_agent(
        &self,
        request: Request<RenewAgentRequest>,
    ) -> Result<Response<RenewAgentResponse>, Status> {
        let csr = request.into_inner().params.unwrap().csr;
        let lifetime = Duration::from_secs(600);
        let chain = self.ca.sign_csr(
            &csr,
            &SpiffeId::new(AGENT_ID).unwrap(),
            self.expiry - lifetime,
            lifetime,
        );
        Ok(Response::new(RenewAgentResponse {
            svid: Some(X509svid {
                cert_chain: chain,
                ..X509svid::default()
            }),
        }))
    }

    async fn create_join_token(
        &self,
        _: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<ProtoJoinToken>, Status> {
        Err(Status::unimplemented("not served"))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn agent_renewal_cut_at_ca_expiry_waits_before_renewing_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new());
    let now = SystemTime::now();
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds + 40);
    let service = CappedAgentService {
        ca: Arc::clone(&ca),
        expiry,
    };
    let router = Server::builder().add_service(AgentServer::new(service));
    let mut config = config(dir.path(), None, Bootstrap::None);
    config.server_address = serve_tls(&ca, SERVER_ID, router).await;
    // The stored SVID already ends at the CA's expiry and is past half its lifetime.
    let agent_id = SpiffeId::new(AGENT_ID).unwrap();
    let pending = PendingSvid::generate(&agent_id).unwrap();
    let lifetime = Duration::from_secs(600);
    let chain = ca.sign_csr(pending.csr_der(), &agent_id, expiry - lifetime, lifetime);
    store::save_bundle(dir.path(), &ca.bundle()).unwrap();
    store::save_svid(dir.path(), &pending.complete(chain).unwrap()).unwrap();
    let node = Node::start(&config).await.unwrap();
    assert!(node.renew_at() < now);

    node.renew().await.unwrap();

    assert_eq!(node.expires_at(), expiry);
    assert!(
        node.renew_at() >= now + Duration::from_secs(29),
        "renewal due again in {:?}",
        node.renew_at().duration_since(now)
    );
    assert!(node.renew_at() < expiry);
}
