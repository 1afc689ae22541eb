//! The agent and admin endpoints of an in-process server, called over real sockets: join-token
//! attestation, mTLS caller checks, renewal, eviction, SVID signing and the change stream.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on any error"
)]

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, KeyPair};
use signet_proto::signet::server::sync::v1::WatchChangesRequest;
use signet_proto::signet::server::sync::v1::sync_client::SyncClient;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::agent::v1::{
    AgentX509svidParams, AttestAgentRequest, BanAgentRequest, CreateJoinTokenRequest,
    DeleteAgentRequest, GetAgentRequest, ListAgentsRequest, RenewAgentRequest,
    attest_agent_request, attest_agent_response,
};
use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, GetAuthorizedEntriesRequest, ListEntriesRequest,
};
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::spire::api::server::svid::v1::{BatchNewX509svidRequest, NewX509svidParams};
use signet_proto::spire::api::types;
use signet_server::config::{Config, RunArgs};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const TRUST_DOMAIN: &str = "example.org";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A server running in this process on a temporary directory, stopped on drop.
struct TestServer {
    _dir: tempfile::TempDir,
    admin_socket: PathBuf,
    port: u16,
    stop: Option<oneshot::Sender<()>>,
}

/// An agent's key and X509-SVID chain (DER, leaf first).
struct AgentSvid {
    key: KeyPair,
    chain: Vec<Vec<u8>>,
}

impl TestServer {
    async fn start() -> Self {
        Self::start_with(tempfile::tempdir().unwrap(), RunArgs::default()).await
    }

    /// Starts a server in `dir` with `extra` settings on top of the test defaults.
    async fn start_with(dir: tempfile::TempDir, extra: RunArgs) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let admin_socket = dir.path().join("admin").join("api.sock");
        let args = RunArgs {
            trust_domain: Some(TRUST_DOMAIN.to_owned()),
            data_dir: Some(dir.path().join("data")),
            bind_address: Some(format!("127.0.0.1:{port}")),
            admin_socket: Some(admin_socket.clone()),
            ..extra
        };
        let config = Config::load(&args).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(signet_server::run::run(config, async {
            let _ = stopped.await;
        }));

        let server = Self {
            _dir: dir,
            admin_socket,
            port,
            stop: Some(stop),
        };
        server.wait_until_ready().await;
        server
    }

    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let admin_ready = UnixStream::connect(&self.admin_socket).await.is_ok();
            let agent_ready = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok();
            if admin_ready && agent_ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server did not start within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn admin(&self) -> Channel {
        let path = self.admin_socket.clone();
        Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| connect_unix(path.clone())))
            .await
            .unwrap()
    }

    async fn bundle_pem(&self) -> String {
        let bundle = BundleClient::new(self.admin().await)
            .get_bundle(GetBundleRequest::default())
            .await
            .unwrap()
            .into_inner();
        bundle
            .x509_authorities
            .iter()
            .map(|authority| pem("CERTIFICATE", &authority.asn1))
            .collect()
    }

    /// Connects to the agent endpoint, with the agent's X509-SVID as client certificate if given.
    async fn agent_channel(&self, svid: Option<&AgentSvid>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.bundle_pem().await))
            .domain_name("localhost");
        if let Some(svid) = svid {
            let chain: String = svid
                .chain
                .iter()
                .map(|der| pem("CERTIFICATE", der))
                .collect();
            tls = tls.identity(Identity::from_pem(chain, svid.key.serialize_pem()));
        }
        Channel::from_shared(format!("https://127.0.0.1:{}", self.port))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn create_token(&self) -> String {
        AgentClient::new(self.admin().await)
            .create_join_token(CreateJoinTokenRequest {
                ttl: 600,
                ..CreateJoinTokenRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .value
    }

    async fn attest(&self, token: &str) -> Result<AgentSvid, tonic::Status> {
        let key = KeyPair::generate().unwrap();
        let request = AttestAgentRequest {
            step: Some(attest_agent_request::Step::Params(
                attest_agent_request::Params {
                    data: Some(types::AttestationData {
                        r#type: "join_token".to_owned(),
                        payload: token.as_bytes().to_vec(),
                    }),
                    params: Some(AgentX509svidParams { csr: csr(&key) }),
                },
            )),
        };
        let mut responses = AgentClient::new(self.agent_channel(None).await)
            .attest_agent(tokio_stream::once(request))
            .await?
            .into_inner();
        let response = responses.message().await?.unwrap();
        let Some(attest_agent_response::Step::Result(result)) = response.step else {
            panic!("expected an attestation result");
        };
        Ok(AgentSvid {
            key,
            chain: result.svid.unwrap().cert_chain,
        })
    }

    async fn create_entry(&self, spiffe_path: &str, parent_id: &str) -> types::Entry {
        let (trust_domain, parent_path) = split_id(parent_id);
        let entry = types::Entry {
            spiffe_id: Some(types::Spiffeid {
                trust_domain: TRUST_DOMAIN.to_owned(),
                path: spiffe_path.to_owned(),
            }),
            parent_id: Some(types::Spiffeid {
                trust_domain,
                path: parent_path,
            }),
            selectors: vec![types::Selector {
                r#type: "unix".to_owned(),
                value: "uid:1000".to_owned(),
            }],
            x509_svid_ttl: 600,
            ..types::Entry::default()
        };
        self.create_entry_from(entry).await
    }

    async fn create_entry_from(&self, entry: types::Entry) -> types::Entry {
        let result = EntryClient::new(self.admin().await)
            .batch_create_entry(BatchCreateEntryRequest {
                entries: vec![entry],
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner()
            .results
            .remove(0);
        assert_eq!(result.status.unwrap().code, 0);
        result.entry.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl AgentSvid {
    fn spiffe_id(&self) -> String {
        uri_san(&self.chain[0])
    }
}

#[tokio::test]
async fn join_token_attests_an_agent_once() {
    let server = TestServer::start().await;
    let token = server.create_token().await;

    let svid = server.attest(&token).await.unwrap();
    assert_eq!(
        svid.spiffe_id(),
        format!("spiffe://{TRUST_DOMAIN}/spire/agent/join_token/{token}")
    );

    let reused = server.attest(&token).await.err().unwrap();
    assert_eq!(reused.code(), Code::PermissionDenied);
    assert!(!reused.message().contains(&token), "{}", reused.message());

    let unknown = server.attest("no-such-token").await.err().unwrap();
    assert_eq!(unknown.code(), Code::PermissionDenied);
    assert_eq!(unknown.message(), reused.message());
}

#[tokio::test]
async fn agent_calls_need_the_current_agent_svid() {
    let server = TestServer::start().await;
    let svid = server.attest(&server.create_token().await).await.unwrap();

    let anonymous = server.agent_channel(None).await;
    let status = EntryClient::new(anonymous)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let agent = server.agent_channel(Some(&svid)).await;
    EntryClient::new(agent.clone())
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap();
    let admin_rpc = EntryClient::new(agent.clone())
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(admin_rpc.code(), Code::PermissionDenied);

    // Renewal: the new SVID works, and once it was used the old one no longer does.
    let key = KeyPair::generate().unwrap();
    let renewed = AgentClient::new(agent.clone())
        .renew_agent(RenewAgentRequest {
            params: Some(AgentX509svidParams { csr: csr(&key) }),
        })
        .await
        .unwrap()
        .into_inner();
    let renewed = AgentSvid {
        key,
        chain: renewed.svid.unwrap().cert_chain,
    };
    assert_eq!(renewed.spiffe_id(), svid.spiffe_id());
    let renewed_channel = server.agent_channel(Some(&renewed)).await;
    EntryClient::new(renewed_channel.clone())
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap();
    let old = EntryClient::new(server.agent_channel(Some(&svid)).await)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::PermissionDenied);

    // Eviction: the agent's SVID stops working at once.
    let (trust_domain, path) = split_id(&svid.spiffe_id());
    AgentClient::new(server.admin().await)
        .delete_agent(DeleteAgentRequest {
            id: Some(types::Spiffeid { trust_domain, path }),
        })
        .await
        .unwrap();
    let evicted = EntryClient::new(renewed_channel)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(evicted.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn banned_agent_is_rejected() {
    let server = TestServer::start().await;
    let svid = server.attest(&server.create_token().await).await.unwrap();
    let (trust_domain, path) = split_id(&svid.spiffe_id());
    let id = types::Spiffeid { trust_domain, path };

    AgentClient::new(server.admin().await)
        .ban_agent(BanAgentRequest {
            id: Some(id.clone()),
        })
        .await
        .unwrap();

    let status = EntryClient::new(server.agent_channel(Some(&svid)).await)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let agent = AgentClient::new(server.admin().await)
        .get_agent(GetAgentRequest {
            id: Some(id),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(agent.banned);
}

#[tokio::test]
async fn workload_svid_is_signed_for_authorized_entry() {
    let server = TestServer::start().await;
    let svid = server.attest(&server.create_token().await).await.unwrap();
    let entry = server.create_entry("/web", &svid.spiffe_id()).await;
    let agent = server.agent_channel(Some(&svid)).await;

    let authorized = EntryClient::new(agent.clone())
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(authorized.len(), 1);
    assert_eq!(authorized[0].id, entry.id);

    let key = KeyPair::generate().unwrap();
    let results = SvidClient::new(agent)
        .batch_new_x509svid(BatchNewX509svidRequest {
            params: vec![
                NewX509svidParams {
                    entry_id: entry.id.clone(),
                    csr: csr(&key),
                },
                NewX509svidParams {
                    entry_id: "not-an-entry".to_owned(),
                    csr: csr(&key),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;

    assert_eq!(results[0].status.as_ref().unwrap().code, 0);
    let chain = &results[0].svid.as_ref().unwrap().cert_chain;
    assert_eq!(uri_san(&chain[0]), format!("spiffe://{TRUST_DOMAIN}/web"));
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert!((600..=620).contains(&lifetime), "lifetime {lifetime}");
    assert_eq!(
        results[1].status.as_ref().unwrap().code,
        Code::NotFound as i32
    );
}

#[tokio::test]
async fn workload_svid_ends_by_entry_expiry() {
    let server = TestServer::start().await;
    let svid = server.attest(&server.create_token().await).await.unwrap();
    let entry = server.create_entry("/web", &svid.spiffe_id()).await;
    let expires_at = unix_now() + 120;
    let entry = server
        .create_entry_from(types::Entry {
            id: String::new(),
            spiffe_id: Some(types::Spiffeid {
                trust_domain: TRUST_DOMAIN.to_owned(),
                path: "/expiring".to_owned(),
            }),
            expires_at,
            ..entry
        })
        .await;

    let key = KeyPair::generate().unwrap();
    let results = SvidClient::new(server.agent_channel(Some(&svid)).await)
        .batch_new_x509svid(BatchNewX509svidRequest {
            params: vec![NewX509svidParams {
                entry_id: entry.id.clone(),
                csr: csr(&key),
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .results;

    assert_eq!(results[0].status.as_ref().unwrap().code, 0);
    let served = results[0].svid.as_ref().unwrap();
    let (_, leaf) = X509Certificate::from_der(&served.cert_chain[0]).unwrap();
    let not_after = leaf.validity().not_after.timestamp();
    assert!(
        not_after <= expires_at,
        "notAfter {not_after} is after the entry expiry {expires_at}"
    );
    assert!(not_after >= expires_at - 10, "notAfter {not_after}");
    assert!(served.expires_at <= expires_at);
}

#[tokio::test]
async fn invalid_page_token_is_rejected() {
    let server = TestServer::start().await;
    server.attest(&server.create_token().await).await.unwrap();

    let entries = EntryClient::new(server.admin().await)
        .list_entries(ListEntriesRequest {
            page_token: "garbage".to_owned(),
            ..ListEntriesRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(entries.code(), Code::InvalidArgument);
    assert!(
        entries.message().contains("\"garbage\""),
        "{}",
        entries.message()
    );

    let agents = AgentClient::new(server.admin().await)
        .list_agents(ListAgentsRequest {
            page_token: "garbage".to_owned(),
            ..ListAgentsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(agents.code(), Code::InvalidArgument);
    assert!(
        agents.message().contains("\"garbage\""),
        "{}",
        agents.message()
    );
}

#[tokio::test]
async fn page_tokens_walk_every_item() {
    let server = TestServer::start().await;
    let svid = server.attest(&server.create_token().await).await.unwrap();
    server.attest(&server.create_token().await).await.unwrap();
    for path in ["/a", "/b", "/c"] {
        server.create_entry(path, &svid.spiffe_id()).await;
    }

    let mut entries = EntryClient::new(server.admin().await);
    let mut paths = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = entries
            .list_entries(ListEntriesRequest {
                page_size: 2,
                page_token,
                ..ListEntriesRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        paths.extend(page.entries.into_iter().map(|e| e.spiffe_id.unwrap().path));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    paths.sort();
    assert_eq!(paths, ["/a", "/b", "/c"]);

    let mut agents = AgentClient::new(server.admin().await);
    let first = agents
        .list_agents(ListAgentsRequest {
            page_size: 1,
            ..ListAgentsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let second = agents
        .list_agents(ListAgentsRequest {
            page_size: 1,
            page_token: first.next_page_token,
            ..ListAgentsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.agents.len(), 1);
    assert_ne!(first.agents[0].id, second.agents[0].id);
}

#[tokio::test]
async fn unknown_agent_error_names_the_requested_id() {
    let server = TestServer::start().await;
    let id = types::Spiffeid {
        trust_domain: TRUST_DOMAIN.to_owned(),
        path: "/spire/agent/join_token/nope".to_owned(),
    };
    let typed = format!("spiffe://{TRUST_DOMAIN}/spire/agent/join_token/nope");
    let mut agents = AgentClient::new(server.admin().await);

    let show = agents
        .get_agent(GetAgentRequest {
            id: Some(id.clone()),
            output_mask: None,
        })
        .await
        .unwrap_err();
    let evict = agents
        .delete_agent(DeleteAgentRequest {
            id: Some(id.clone()),
        })
        .await
        .unwrap_err();
    let ban = agents
        .ban_agent(BanAgentRequest { id: Some(id) })
        .await
        .unwrap_err();

    for status in [show, evict, ban] {
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), format!("agent {typed} not found"));
    }
}

#[tokio::test]
async fn change_stream_reports_new_entries() {
    let server = TestServer::start().await;
    let svid = server.attest(&server.create_token().await).await.unwrap();
    let mut changes = SyncClient::new(server.agent_channel(Some(&svid)).await)
        .watch_changes(WatchChangesRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = changes.message().await.unwrap().unwrap();

    server.create_entry("/web", &svid.spiffe_id()).await;

    let next = tokio::time::timeout(Duration::from_secs(10), changes.message())
        .await
        .expect("no change notice within 10 s")
        .unwrap()
        .unwrap();
    assert!(next.revision > first.revision);
    assert_eq!(next.bundle_sequence_number, first.bundle_sequence_number);
}

#[tokio::test]
async fn apply_entries_is_admin_only_and_notifies_agents() {
    use signet_proto::signet::server::registration::v1::ApplyEntriesRequest;
    use signet_proto::signet::server::registration::v1::registration_client::RegistrationClient;

    let server = TestServer::start().await;
    let svid = server.attest(&server.create_token().await).await.unwrap();
    let agent = server.agent_channel(Some(&svid)).await;
    let mut changes = SyncClient::new(agent.clone())
        .watch_changes(WatchChangesRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = changes.message().await.unwrap().unwrap();
    let (trust_domain, parent_path) = split_id(&svid.spiffe_id());
    let request = ApplyEntriesRequest {
        owner: "team-payments".to_owned(),
        entries: vec![types::Entry {
            spiffe_id: Some(types::Spiffeid {
                trust_domain: TRUST_DOMAIN.to_owned(),
                path: "/web".to_owned(),
            }),
            parent_id: Some(types::Spiffeid {
                trust_domain,
                path: parent_path,
            }),
            selectors: vec![types::Selector {
                r#type: "unix".to_owned(),
                value: "uid:1000".to_owned(),
            }],
            ..types::Entry::default()
        }],
        prune: true,
        dry_run: false,
    };

    let rejected = RegistrationClient::new(agent)
        .apply_entries(request.clone())
        .await
        .unwrap_err();
    let applied = RegistrationClient::new(server.admin().await)
        .apply_entries(request)
        .await
        .unwrap()
        .into_inner();
    let next = tokio::time::timeout(Duration::from_secs(10), changes.message())
        .await
        .expect("no change notice within 10 s")
        .unwrap()
        .unwrap();

    assert_eq!(rejected.code(), Code::PermissionDenied);
    assert_eq!(applied.created.len(), 1);
    assert!(next.revision > first.revision);
}

#[tokio::test]
async fn agents_work_under_an_upstream_ca() {
    let dir = tempfile::tempdir().unwrap();
    let upstream_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let upstream_cert = params.self_signed(&upstream_key).unwrap();
    let cert_path = dir.path().join("upstream.crt");
    let key_path = dir.path().join("upstream.key");
    std::fs::write(&cert_path, upstream_cert.pem()).unwrap();
    std::fs::write(&key_path, upstream_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, Permissions::from_mode(0o600)).unwrap();

    let server = TestServer::start_with(
        dir,
        RunArgs {
            upstream_ca_cert: Some(cert_path),
            upstream_ca_key: Some(key_path),
            ..RunArgs::default()
        },
    )
    .await;
    let bundle = server.bundle_pem().await;
    assert_eq!(bundle, pem("CERTIFICATE", upstream_cert.der()));

    let svid = server.attest(&server.create_token().await).await.unwrap();
    assert_eq!(svid.chain.len(), 2, "leaf and the server's intermediate CA");
    EntryClient::new(server.agent_channel(Some(&svid)).await)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap();
}

fn unix_now() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(elapsed.as_secs()).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn connect_unix(path: PathBuf) -> std::io::Result<TokioIo<UnixStream>> {
    Ok(TokioIo::new(UnixStream::connect(path).await?))
}

fn csr(key: &KeyPair) -> Vec<u8> {
    CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(key)
        .unwrap()
        .der()
        .to_vec()
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn uri_san(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let names = cert.subject_alternative_name().unwrap().unwrap();
    let uris: Vec<_> = names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(uris.len(), 1, "{uris:?}");
    uris[0].clone()
}

fn split_id(id: &str) -> (String, String) {
    let rest = id.strip_prefix("spiffe://").unwrap();
    let (trust_domain, path) = rest.split_once('/').unwrap();
    (trust_domain.to_owned(), format!("/{path}"))
}

// === JWT-SVIDs and operator minting ===

/// Verifies a JWT-SVID with the JWT library against the server's published JWT authorities, and
/// returns its claims.
async fn verify_jwt_svid(server: &TestServer, token: &str, audience: &str) -> serde_json::Value {
    let bundle = BundleClient::new(server.admin().await)
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let key_id = header.kid.unwrap();
    let authority = bundle
        .jwt_authorities
        .iter()
        .find(|authority| authority.key_id == key_id)
        .unwrap();
    let jwk = signet_core::jwk::jwk_from_public_key_der(&authority.public_key, &key_id).unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[audience]);
    let decoding_key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    jsonwebtoken::decode::<serde_json::Value>(token, &decoding_key, &validation)
        .unwrap()
        .claims
}

fn csr_with_sans(key: &KeyPair, sans: Vec<rcgen::SanType>) -> Vec<u8> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    params.serialize_request(key).unwrap().der().to_vec()
}

fn uri(text: &str) -> rcgen::SanType {
    rcgen::SanType::URI(text.try_into().unwrap())
}

#[tokio::test]
async fn jwt_svid_is_signed_for_authorized_entry() {
    use signet_proto::spire::api::server::svid::v1::NewJwtsvidRequest;

    let server = TestServer::start().await;
    let svid = server.attest(&server.create_token().await).await.unwrap();
    let mut entry = server.create_entry("/web", &svid.spiffe_id()).await;
    entry.id = String::new();
    entry.spiffe_id.as_mut().unwrap().path = "/api".to_owned();
    entry.jwt_svid_ttl = 120;
    entry.hint = "api".to_owned();
    let entry = server.create_entry_from(entry).await;
    let mut agent = SvidClient::new(server.agent_channel(Some(&svid)).await);

    let jwt_svid = agent
        .new_jwtsvid(NewJwtsvidRequest {
            entry_id: entry.id.clone(),
            audience: vec!["spiffe://example.org/db".to_owned()],
        })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();

    let claims = verify_jwt_svid(&server, &jwt_svid.token, "spiffe://example.org/db").await;
    assert_eq!(claims["sub"], format!("spiffe://{TRUST_DOMAIN}/api"));
    assert_eq!(
        claims["aud"],
        serde_json::json!(["spiffe://example.org/db"])
    );
    assert_eq!(claims["exp"], jwt_svid.expires_at);
    assert_eq!(claims["iat"], jwt_svid.issued_at);
    assert_eq!(jwt_svid.expires_at - jwt_svid.issued_at, 120);
    assert_eq!(jwt_svid.id.unwrap().path, "/api");
    assert_eq!(jwt_svid.hint, "api");

    let no_audience = agent
        .new_jwtsvid(NewJwtsvidRequest {
            entry_id: entry.id.clone(),
            audience: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_audience.code(), Code::InvalidArgument);
    assert!(
        no_audience.message().contains("audience must be specified"),
        "{}",
        no_audience.message()
    );
}

#[tokio::test]
async fn jwt_svid_needs_authorized_agent() {
    use signet_proto::spire::api::server::svid::v1::NewJwtsvidRequest;

    let server = TestServer::start().await;
    let owner = server.attest(&server.create_token().await).await.unwrap();
    let other = server.attest(&server.create_token().await).await.unwrap();
    let entry = server.create_entry("/web", &owner.spiffe_id()).await;
    let request = NewJwtsvidRequest {
        entry_id: entry.id.clone(),
        audience: vec!["db".to_owned()],
    };

    let unauthorized = SvidClient::new(server.agent_channel(Some(&other)).await)
        .new_jwtsvid(request.clone())
        .await
        .unwrap_err();
    let anonymous = SvidClient::new(server.admin().await)
        .new_jwtsvid(request)
        .await
        .unwrap_err();

    assert_eq!(unauthorized.code(), Code::NotFound);
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn jwt_svid_mint_is_admin_only() {
    use signet_proto::spire::api::server::svid::v1::MintJwtsvidRequest;

    let server = TestServer::start().await;
    let agent_svid = server.attest(&server.create_token().await).await.unwrap();
    let request = MintJwtsvidRequest {
        id: Some(types::Spiffeid {
            trust_domain: TRUST_DOMAIN.to_owned(),
            path: "/operator".to_owned(),
        }),
        audience: vec!["a".to_owned(), "b".to_owned()],
        ttl: 0,
    };

    let minted = SvidClient::new(server.admin().await)
        .mint_jwtsvid(request.clone())
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    let refused = SvidClient::new(server.agent_channel(Some(&agent_svid)).await)
        .mint_jwtsvid(request)
        .await
        .unwrap_err();

    let claims = verify_jwt_svid(&server, &minted.token, "b").await;
    assert_eq!(claims["sub"], format!("spiffe://{TRUST_DOMAIN}/operator"));
    assert_eq!(claims["aud"], serde_json::json!(["a", "b"]));
    assert_eq!(minted.expires_at - minted.issued_at, 300);
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn jwt_svid_mint_rejects_bad_requests() {
    use signet_proto::spire::api::server::svid::v1::MintJwtsvidRequest;

    let server = TestServer::start().await;
    let id = |trust_domain: &str, path: &str| {
        Some(types::Spiffeid {
            trust_domain: trust_domain.to_owned(),
            path: path.to_owned(),
        })
    };
    let cases = [
        ("no audience", id(TRUST_DOMAIN, "/w"), Vec::new(), 0),
        (
            "empty audience",
            id(TRUST_DOMAIN, "/w"),
            vec![String::new()],
            0,
        ),
        (
            "foreign trust domain",
            id("other.org", "/w"),
            vec!["a".to_owned()],
            0,
        ),
        ("no path", id(TRUST_DOMAIN, ""), vec!["a".to_owned()], 0),
        (
            "negative ttl",
            id(TRUST_DOMAIN, "/w"),
            vec!["a".to_owned()],
            -1,
        ),
        ("missing id", None, vec!["a".to_owned()], 0),
    ];
    let mut client = SvidClient::new(server.admin().await);
    for (name, id, audience, ttl) in cases {
        let error = client
            .mint_jwtsvid(MintJwtsvidRequest { id, audience, ttl })
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            Code::InvalidArgument,
            "{name}: {}",
            error.message()
        );
    }
}

#[tokio::test]
async fn x509_svid_mint_uses_csr_names() {
    use signet_proto::spire::api::server::svid::v1::MintX509svidRequest;

    let server = TestServer::start().await;
    let key = KeyPair::generate().unwrap();
    let csr = csr_with_sans(
        &key,
        vec![
            uri("spiffe://example.org/minted"),
            rcgen::SanType::DnsName("minted.example.org".try_into().unwrap()),
        ],
    );

    let svid = SvidClient::new(server.admin().await)
        .mint_x509svid(MintX509svidRequest { csr, ttl: 120 })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();

    let leaf = &svid.cert_chain[0];
    assert_eq!(uri_san(leaf), "spiffe://example.org/minted");
    let (_, parsed) = X509Certificate::from_der(leaf).unwrap();
    let names = parsed.subject_alternative_name().unwrap().unwrap();
    assert!(
        names
            .value
            .general_names
            .contains(&GeneralName::DNSName("minted.example.org")),
        "{names:?}"
    );
    let lifetime =
        parsed.validity().not_after.timestamp() - parsed.validity().not_before.timestamp();
    assert!((120..=130).contains(&lifetime), "lifetime {lifetime}");
    assert_eq!(svid.id.unwrap().path, "/minted");
}

#[tokio::test]
async fn x509_svid_mint_rejects_bad_csrs() {
    use signet_proto::spire::api::server::svid::v1::MintX509svidRequest;

    let server = TestServer::start().await;
    let agent_svid = server.attest(&server.create_token().await).await.unwrap();
    let key = KeyPair::generate().unwrap();
    let cases = [
        ("no URI SAN", csr_with_sans(&key, Vec::new())),
        (
            "two URI SANs",
            csr_with_sans(
                &key,
                vec![uri("spiffe://example.org/a"), uri("spiffe://example.org/b")],
            ),
        ),
        (
            "foreign trust domain",
            csr_with_sans(&key, vec![uri("spiffe://other.org/a")]),
        ),
        (
            "not a SPIFFE ID",
            csr_with_sans(&key, vec![uri("https://example.org/a")]),
        ),
        ("not DER", b"garbage".to_vec()),
        ("empty", Vec::new()),
    ];
    let mut client = SvidClient::new(server.admin().await);
    for (name, csr) in cases {
        let error = client
            .mint_x509svid(MintX509svidRequest { csr, ttl: 0 })
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            Code::InvalidArgument,
            "{name}: {}",
            error.message()
        );
    }

    let good = csr_with_sans(&key, vec![uri("spiffe://example.org/a")]);
    let refused = SvidClient::new(server.agent_channel(Some(&agent_svid)).await)
        .mint_x509svid(MintX509svidRequest { csr: good, ttl: 0 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn jwt_svid_ends_by_entry_expiry() {
    use signet_proto::spire::api::server::svid::v1::NewJwtsvidRequest;

    let server = TestServer::start().await;
    let svid = server.attest(&server.create_token().await).await.unwrap();
    let entry = server.create_entry("/web", &svid.spiffe_id()).await;
    let expires_at = unix_now() + 120;
    let entry = server
        .create_entry_from(types::Entry {
            id: String::new(),
            spiffe_id: Some(types::Spiffeid {
                trust_domain: TRUST_DOMAIN.to_owned(),
                path: "/expiring".to_owned(),
            }),
            expires_at,
            ..entry
        })
        .await;

    let jwt_svid = SvidClient::new(server.agent_channel(Some(&svid)).await)
        .new_jwtsvid(NewJwtsvidRequest {
            entry_id: entry.id,
            audience: vec!["db".to_owned()],
        })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();

    assert!(
        jwt_svid.expires_at <= expires_at,
        "exp {} is after the entry expiry {expires_at}",
        jwt_svid.expires_at
    );
    assert!(
        jwt_svid.expires_at >= expires_at - 10,
        "exp {}",
        jwt_svid.expires_at
    );
}
