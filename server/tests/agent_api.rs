//! The agent and admin endpoints of an in-process server, called over real sockets: join-token
//! attestation, mTLS caller checks, renewal, eviction, SVID signing and the change stream.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on any error"
)]

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
    DeleteAgentRequest, GetAgentRequest, RenewAgentRequest, attest_agent_request,
    attest_agent_response,
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
