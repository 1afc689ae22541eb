use std::sync::Arc;

use signet_core::selector::Selector;
use spiffe::{SpiffeId, TrustDomain};
use zeroize::Zeroizing;

use super::*;
use crate::cache::X509SvidMaterial;

const NOW_SECONDS: u64 = 1_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECONDS)
}

fn trust_domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn identity(entry_id: &str, expires_at: Option<SystemTime>) -> Identity {
    Identity {
        entry_id: entry_id.to_owned(),
        spiffe_id: SpiffeId::new(format!("spiffe://example.org/{entry_id}"))
            .unwrap()
            .into(),
        selectors: vec![Selector::parse("unix:uid:1000").unwrap()],
        hint: String::new(),
        svid: expires_at.map(|expires_at| {
            Arc::new(X509SvidMaterial {
                chain: Vec::new(),
                private_key_pkcs8: Zeroizing::new(Vec::new()),
                expires_at,
            })
        }),
        expanded_svids: BTreeMap::new(),
    }
}

fn snapshot(identities: Vec<Identity>) -> Snapshot {
    Snapshot {
        identities,
        ..Snapshot::empty(trust_domain())
    }
}

#[test]
fn withdraw_expired_removes_only_expired_svids() {
    let cache = Cache::new(trust_domain());
    cache.publish(snapshot(vec![
        identity("expired", Some(now() - Duration::from_secs(1))),
        identity("valid", Some(now() + Duration::from_secs(30))),
        identity("unsigned", None),
    ]));

    let next_expiry = withdraw_expired(&cache, now());

    let current = cache.current();
    assert_eq!(current.revision, 2);
    assert!(current.identities[0].svid.is_none());
    assert!(current.identities[1].svid.is_some());
    assert!(current.identities[2].svid.is_none());
    assert_eq!(next_expiry, Some(Duration::from_secs(30)));
}

#[test]
fn withdraw_expired_records_expiry_for_explain() {
    let cache = Cache::new(trust_domain());
    let expired_at = now() - Duration::from_secs(1);
    cache.publish(snapshot(vec![
        identity("expired", Some(expired_at)),
        identity("unsigned", None),
    ]));

    withdraw_expired(&cache, now());

    let expired_id = SpiffeId::new("spiffe://example.org/expired").unwrap();
    let unsigned_id = SpiffeId::new("spiffe://example.org/unsigned").unwrap();
    assert_eq!(cache.expired_at(&expired_id), Some(expired_at));
    assert_eq!(cache.expired_at(&unsigned_id), None);

    // A renewed X509-SVID clears the record at the next withdrawal.
    let renewed = now() + Duration::from_secs(60);
    cache.publish(snapshot(vec![
        identity("expired", Some(renewed)),
        identity("other", Some(now())),
    ]));
    withdraw_expired(&cache, now());
    assert_eq!(cache.expired_at(&expired_id), None);
}

#[test]
fn withdraw_expired_leaves_valid_cache_alone() {
    let cache = Cache::new(trust_domain());
    cache.publish(snapshot(vec![identity(
        "valid",
        Some(now() + Duration::from_secs(5)),
    )]));

    assert_eq!(
        withdraw_expired(&cache, now()),
        Some(Duration::from_secs(5))
    );
    assert_eq!(cache.current().revision, 1);
}

#[test]
fn withdraw_expired_without_svids_has_no_deadline() {
    let cache = Cache::new(trust_domain());
    assert_eq!(withdraw_expired(&cache, now()), None);
}

#[test]
fn differs_detects_each_change() {
    let svid_time = Some(now());
    let base = snapshot(vec![identity("a", svid_time)]);
    assert!(!differs(&base, &base.clone()));

    let mut new_svid = base.clone();
    new_svid.identities[0] = identity("a", svid_time);
    assert!(differs(&base, &new_svid), "new SVID");

    let mut new_hint = base.clone();
    new_hint.identities[0].hint = "db".to_owned();
    assert!(differs(&base, &new_hint), "hint");

    let mut new_selectors = base.clone();
    new_selectors.identities[0].selectors = vec![Selector::parse("unix:uid:0").unwrap()];
    assert!(differs(&base, &new_selectors), "selectors");

    let mut new_bundle = base.clone();
    new_bundle.bundle = vec![vec![1u8].into()];
    assert!(differs(&base, &new_bundle), "bundle");

    let mut new_jwt_key = base.clone();
    new_jwt_key
        .jwt_authorities
        .push(crate::jwt::test_support::TestJwtKey::es256("k").authority());
    assert!(differs(&base, &new_jwt_key), "JWT authority");

    let fewer = snapshot(Vec::new());
    assert!(differs(&base, &fewer), "identity removed");
}

// === sync against an in-process server ===

mod against_server {
    use std::collections::{BTreeSet, HashMap};
    use std::pin::Pin;
    use std::sync::Mutex;

    use rcgen::{CertificateSigningRequestParams, SanType};
    use rustls::pki_types::CertificateSigningRequestDer;
    use signet_core::ids::{server_id, to_proto_id};
    use signet_core::template::SpiffeIdTemplate;
    use signet_core::tls::spiffe_id_of;
    use signet_proto::signet::server::sync::v1::sync_server::{Sync, SyncServer};
    use signet_proto::signet::server::sync::v1::{ChangeNotice, WatchChangesRequest};
    use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
    use signet_proto::spire::api::server::bundle::v1::bundle_server::{Bundle, BundleServer};
    use signet_proto::spire::api::server::entry::v1::entry_server::{
        Entry as EntryService, EntryServer,
    };
    use signet_proto::spire::api::server::entry::v1::{
        BatchCreateEntryRequest, BatchCreateEntryResponse, BatchDeleteEntryRequest,
        BatchDeleteEntryResponse, BatchUpdateEntryRequest, BatchUpdateEntryResponse,
        CountEntriesRequest, CountEntriesResponse, GetAuthorizedEntriesRequest,
        GetAuthorizedEntriesResponse, GetEntryRequest, ListEntriesRequest, ListEntriesResponse,
    };
    use signet_proto::spire::api::server::svid::v1 as svid_v1;
    use signet_proto::spire::api::server::svid::v1::svid_server::{Svid, SvidServer};
    use signet_proto::spire::api::server::svid::v1::{
        BatchNewX509svidRequest, BatchNewX509svidResponse, batch_new_x509svid_response,
    };
    use signet_proto::spire::api::types::{
        Bundle as ProtoBundle, Entry, JwtKey, Jwtsvid, Selector as ProtoSelector,
        Status as ProtoStatus, X509Certificate, X509svid,
    };
    use tokio::sync::watch;
    use tokio_stream::wrappers::WatchStream;
    use tokio_stream::{Stream, StreamExt};
    use tonic::transport::Server;
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::config::{AgentConfig, Bootstrap};
    use crate::demand::ExpandedId;
    use crate::jwt::JwtSigner;
    use crate::jwt::test_support::TestJwtKey;
    use crate::node::Node;
    use crate::svid::PendingSvid;
    use crate::test_util::{TestCa, serve_tls};

    const AGENT_ID: &str = "spiffe://example.org/spire/agent/join_token/abc";
    const WAIT_LIMIT: Duration = Duration::from_secs(10);

    /// A server that signs SVIDs with a test CA for whatever entries the test sets.
    #[derive(Clone)]
    struct FakeServer {
        ca: Arc<TestCa>,
        entries: Arc<Mutex<Vec<Entry>>>,
        jwt_keys: Arc<Mutex<Vec<JwtKey>>>,
        jwt_signer: Arc<TestJwtKey>,
        revision: watch::Sender<u64>,
    }

    impl FakeServer {
        fn set_entries(&self, entries: Vec<Entry>) {
            *self.entries.lock().unwrap() = entries;
            self.revision.send_modify(|revision| *revision += 1);
        }
    }

    #[tonic::async_trait]
    impl Bundle for FakeServer {
        async fn get_bundle(
            &self,
            _: Request<GetBundleRequest>,
        ) -> Result<Response<ProtoBundle>, Status> {
            let authorities = self
                .ca
                .bundle()
                .into_iter()
                .map(|authority| X509Certificate {
                    asn1: authority.to_vec(),
                    tainted: false,
                });
            Ok(Response::new(ProtoBundle {
                trust_domain: "example.org".to_owned(),
                x509_authorities: authorities.collect(),
                jwt_authorities: self.jwt_keys.lock().unwrap().clone(),
                ..ProtoBundle::default()
            }))
        }
    }

    #[tonic::async_trait]
    impl Svid for FakeServer {
        async fn batch_new_x509svid(
            &self,
            request: Request<BatchNewX509svidRequest>,
        ) -> Result<Response<BatchNewX509svidResponse>, Status> {
            let entries: HashMap<String, Entry> = self
                .entries
                .lock()
                .unwrap()
                .iter()
                .map(|entry| (entry.id.clone(), entry.clone()))
                .collect();
            let results = request
                .into_inner()
                .params
                .into_iter()
                .map(|params| match entries.get(&params.entry_id) {
                    Some(entry) => self.sign(entry, &params.csr),
                    None => batch_new_x509svid_response::Result {
                        status: Some(ProtoStatus {
                            code: tonic::Code::NotFound as i32,
                            message: "entry not found".to_owned(),
                        }),
                        svid: None,
                    },
                })
                .collect();
            Ok(Response::new(BatchNewX509svidResponse { results }))
        }

        async fn mint_x509svid(
            &self,
            _request: Request<svid_v1::MintX509svidRequest>,
        ) -> Result<Response<svid_v1::MintX509svidResponse>, Status> {
            Err(Status::unimplemented("not used by sync"))
        }

        async fn mint_jwtsvid(
            &self,
            _request: Request<svid_v1::MintJwtsvidRequest>,
        ) -> Result<Response<svid_v1::MintJwtsvidResponse>, Status> {
            Err(Status::unimplemented("not used by sync"))
        }

        async fn new_jwtsvid(
            &self,
            request: Request<svid_v1::NewJwtsvidRequest>,
        ) -> Result<Response<svid_v1::NewJwtsvidResponse>, Status> {
            let request = request.into_inner();
            let entry = self
                .entries
                .lock()
                .unwrap()
                .iter()
                .find(|entry| entry.id == request.entry_id)
                .cloned()
                .ok_or_else(|| Status::not_found("entry not found"))?;
            let spiffe_id = signet_core::ids::from_proto_id(entry.spiffe_id.as_ref()).unwrap();
            let audience: Vec<&str> = request.audience.iter().map(String::as_str).collect();
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let svid = Jwtsvid {
                token: self.jwt_signer.token(
                    &spiffe_id.to_string(),
                    &audience,
                    Duration::from_secs(300),
                ),
                id: entry.spiffe_id,
                expires_at: i64::try_from(now + 300).unwrap(),
                issued_at: i64::try_from(now).unwrap(),
                hint: entry.hint,
            };
            Ok(Response::new(svid_v1::NewJwtsvidResponse {
                svid: Some(svid),
            }))
        }
    }

    impl FakeServer {
        fn sign(&self, entry: &Entry, csr: &[u8]) -> batch_new_x509svid_response::Result {
            let spiffe_id = signed_id(entry, csr);
            let not_before = SystemTime::now() - Duration::from_secs(10);
            let chain = self
                .ca
                .sign_csr(csr, &spiffe_id, not_before, Duration::from_secs(600));
            batch_new_x509svid_response::Result {
                status: Some(ProtoStatus::default()),
                svid: Some(X509svid {
                    cert_chain: chain,
                    id: Some(to_proto_id(&spiffe_id)),
                    ..X509svid::default()
                }),
            }
        }
    }

    #[tonic::async_trait]
    impl Sync for FakeServer {
        type WatchChangesStream =
            Pin<Box<dyn Stream<Item = Result<ChangeNotice, Status>> + Send + 'static>>;

        async fn watch_changes(
            &self,
            _: Request<WatchChangesRequest>,
        ) -> Result<Response<Self::WatchChangesStream>, Status> {
            let notices = WatchStream::new(self.revision.subscribe()).map(|revision| {
                Ok(ChangeNotice {
                    revision,
                    bundle_sequence_number: 1,
                })
            });
            Ok(Response::new(Box::pin(notices)))
        }
    }

    #[tonic::async_trait]
    impl EntryService for FakeServer {
        async fn count_entries(
            &self,
            _: Request<CountEntriesRequest>,
        ) -> Result<Response<CountEntriesResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn list_entries(
            &self,
            _: Request<ListEntriesRequest>,
        ) -> Result<Response<ListEntriesResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn get_entry(&self, _: Request<GetEntryRequest>) -> Result<Response<Entry>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn batch_create_entry(
            &self,
            _: Request<BatchCreateEntryRequest>,
        ) -> Result<Response<BatchCreateEntryResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn batch_update_entry(
            &self,
            _: Request<BatchUpdateEntryRequest>,
        ) -> Result<Response<BatchUpdateEntryResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn batch_delete_entry(
            &self,
            _: Request<BatchDeleteEntryRequest>,
        ) -> Result<Response<BatchDeleteEntryResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn get_authorized_entries(
            &self,
            _: Request<GetAuthorizedEntriesRequest>,
        ) -> Result<Response<GetAuthorizedEntriesResponse>, Status> {
            let entries = self.entries.lock().unwrap().clone();
            Ok(Response::new(GetAuthorizedEntriesResponse { entries }))
        }
    }

    fn fake_server(ca: &Arc<TestCa>) -> FakeServer {
        FakeServer {
            ca: Arc::clone(ca),
            entries: Arc::new(Mutex::new(Vec::new())),
            jwt_keys: Arc::new(Mutex::new(Vec::new())),
            jwt_signer: Arc::new(TestJwtKey::es256("jwt-1")),
            revision: watch::channel(0).0,
        }
    }

    /// Returns the SPIFFE ID the server signs for `entry`: its own, or for a template the one
    /// the CSR carries, which must be an expansion of it.
    fn signed_id(entry: &Entry, csr: &[u8]) -> SpiffeId {
        let id = entry.spiffe_id.as_ref().unwrap();
        let template = SpiffeIdTemplate::from_parts(&id.trust_domain, &id.path).unwrap();
        if let Some(own) = template.spiffe_id() {
            return own.clone();
        }
        let csr = CertificateSigningRequestDer::from(csr.to_vec());
        let request = CertificateSigningRequestParams::from_der(&csr).unwrap();
        let uri = request
            .params
            .subject_alt_names
            .iter()
            .find_map(|name| match name {
                SanType::URI(uri) => Some(uri.as_str().to_owned()),
                _ => None,
            });
        let requested = SpiffeId::new(uri.unwrap()).unwrap();
        template.check_expansion(&requested).unwrap();
        requested
    }

    fn entry(id: &str, spiffe_id: &str, parent_id: &SpiffeId, created_at: i64) -> Entry {
        Entry {
            id: id.to_owned(),
            spiffe_id: Some(SpiffeIdTemplate::parse(spiffe_id).unwrap().to_proto()),
            parent_id: Some(to_proto_id(parent_id)),
            selectors: vec![ProtoSelector {
                r#type: "unix".to_owned(),
                value: "uid:1000".to_owned(),
            }],
            hint: id.to_owned(),
            created_at,
            ..Entry::default()
        }
    }

    async fn start_agent_node(ca: &TestCa, server: FakeServer) -> Arc<Node> {
        let router = Server::builder()
            .add_service(BundleServer::new(server.clone()))
            .add_service(EntryServer::new(server.clone()))
            .add_service(SvidServer::new(server.clone()))
            .add_service(SyncServer::new(server));
        let address = serve_tls(ca, "spiffe://example.org/spire/server", router).await;

        let agent_id = SpiffeId::new(AGENT_ID).unwrap();
        let pending = PendingSvid::generate(&agent_id).unwrap();
        let chain = ca.sign_csr(
            pending.csr_der(),
            &agent_id,
            SystemTime::now() - Duration::from_secs(10),
            Duration::from_secs(600),
        );
        let config = AgentConfig {
            server_address: address,
            trust_domain: trust_domain(),
            join_token: None,
            bootstrap: Bootstrap::None,
            data_dir: std::env::temp_dir(),
            socket_path: std::env::temp_dir().join("unused.sock"),
            admin_socket: std::env::temp_dir().join("unused-admin.sock"),
            persist_workload_svids: true,
            metrics_address: None,
            health_address: None,
        };
        let node = Node::with_state(
            &config,
            agent_id,
            pending.complete(chain).unwrap(),
            ca.bundle(),
        );
        Arc::new(node.unwrap())
    }

    async fn wait_for(
        snapshots: &mut watch::Receiver<Arc<Snapshot>>,
        condition: impl FnMut(&Arc<Snapshot>) -> bool,
    ) -> Arc<Snapshot> {
        let snapshot = tokio::time::timeout(WAIT_LIMIT, snapshots.wait_for(condition))
            .await
            .expect("cache did not reach the expected state in time")
            .unwrap();
        Arc::clone(&snapshot)
    }

    fn is_fully_signed(snapshot: &Snapshot, count: usize) -> bool {
        snapshot.identities.len() == count
            && snapshot
                .identities
                .iter()
                .all(|identity| identity.svid.is_some())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sync_signs_entries_and_follows_changes() {
        let ca = Arc::new(TestCa::new());
        let agent_id = SpiffeId::new(AGENT_ID).unwrap();
        let server = fake_server(&ca);
        server.set_entries(vec![
            entry("web", "spiffe://example.org/web", &agent_id, 2),
            entry(
                "alias",
                "spiffe://example.org/node",
                &server_id(&trust_domain()),
                0,
            ),
            entry("db", "spiffe://example.org/db", &agent_id, 1),
        ]);
        let node = start_agent_node(&ca, server.clone()).await;
        let cache = Cache::new(trust_domain());
        let mut snapshots = cache.subscribe();
        let syncing = tokio::spawn(run(node, cache.clone(), AgentMetrics::default()));

        // The first sync signs both workload entries and skips the alias.
        let snapshot = wait_for(&mut snapshots, |snapshot| is_fully_signed(snapshot, 2)).await;
        let ids: Vec<_> = snapshot
            .identities
            .iter()
            .map(|identity| identity.entry_id.as_str())
            .collect();
        assert_eq!(ids, ["db", "web"]);
        for identity in &snapshot.identities {
            let svid = identity.svid.as_ref().unwrap();
            let leaf_id = spiffe_id_of(&svid.chain[0]).unwrap();
            assert_eq!(Some(&leaf_id), identity.spiffe_id.spiffe_id());
        }
        assert_eq!(snapshot.bundle, ca.bundle());

        // A deleted entry leaves the cache on the change notice, long before the safety poll.
        server.set_entries(vec![entry("web", "spiffe://example.org/web", &agent_id, 2)]);
        let snapshot = wait_for(&mut snapshots, |snapshot| snapshot.identities.len() == 1).await;
        assert_eq!(snapshot.identities[0].entry_id, "web");
        assert!(snapshot.identities[0].svid.is_some());

        syncing.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sync_signs_template_expansions_on_demand() {
        let ca = Arc::new(TestCa::new());
        let agent_id = SpiffeId::new(AGENT_ID).unwrap();
        let server = fake_server(&ca);
        let template = "spiffe://example.org/uid/{unix:uid}";
        server.set_entries(vec![entry("uid", template, &agent_id, 1)]);
        let node = start_agent_node(&ca, server.clone()).await;
        let cache = Cache::new(trust_domain());
        let mut snapshots = cache.subscribe();
        let syncing = tokio::spawn(run(node, cache.clone(), AgentMetrics::default()));

        // Nothing can be signed before a workload needs a concrete ID.
        let snapshot = wait_for(&mut snapshots, |snapshot| snapshot.identities.len() == 1).await;
        assert!(snapshot.identities[0].svid.is_none());
        assert!(snapshot.identities[0].expanded_svids.is_empty());

        let root = SpiffeId::new("spiffe://example.org/uid/0").unwrap();
        let lease = cache.demand().lease();
        lease.hold(BTreeSet::from([ExpandedId {
            entry_id: "uid".to_owned(),
            spiffe_id: root.clone(),
        }]));
        let snapshot = wait_for(&mut snapshots, |snapshot| {
            snapshot.identities[0].expanded_svids.contains_key(&root)
        })
        .await;
        let svid = &snapshot.identities[0].expanded_svids[&root];
        assert_eq!(spiffe_id_of(&svid.chain[0]).unwrap(), root);
        assert_eq!(snapshot.identities[0].expanded_svids.len(), 1);

        syncing.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sync_publishes_usable_jwt_keys() {
        let ca = Arc::new(TestCa::new());
        let agent_id = SpiffeId::new(AGENT_ID).unwrap();
        let server = fake_server(&ca);
        let authority = server.jwt_signer.authority();
        *server.jwt_keys.lock().unwrap() = vec![
            JwtKey {
                public_key: authority.public_key_der.clone(),
                key_id: authority.key_id.clone(),
                expires_at: 4_000_000_000,
                tainted: false,
            },
            JwtKey {
                public_key: vec![1, 2, 3],
                key_id: "garbage".to_owned(),
                ..JwtKey::default()
            },
            JwtKey {
                public_key: authority.public_key_der.clone(),
                key_id: String::new(),
                ..JwtKey::default()
            },
        ];
        server.set_entries(vec![entry("web", "spiffe://example.org/web", &agent_id, 1)]);
        let node = start_agent_node(&ca, server.clone()).await;
        let cache = Cache::new(trust_domain());
        let mut snapshots = cache.subscribe();
        let syncing = tokio::spawn(run(
            Arc::clone(&node),
            cache.clone(),
            AgentMetrics::default(),
        ));

        let snapshot = wait_for(&mut snapshots, |snapshot| is_fully_signed(snapshot, 1)).await;
        assert_eq!(snapshot.jwt_authorities.len(), 1);
        assert_eq!(snapshot.jwt_authorities[0].key_id, "jwt-1");
        assert_eq!(
            snapshot.jwt_authorities[0].expires_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000))
        );

        // A new key reaches the cache on the change notice.
        let next = TestJwtKey::es256("jwt-2").authority();
        server.jwt_keys.lock().unwrap().push(JwtKey {
            public_key: next.public_key_der,
            key_id: next.key_id,
            ..JwtKey::default()
        });
        server.revision.send_modify(|revision| *revision += 1);
        let snapshot = wait_for(&mut snapshots, |snapshot| {
            snapshot.jwt_authorities.len() == 2
        })
        .await;
        assert_eq!(snapshot.jwt_authorities[1].key_id, "jwt-2");

        syncing.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn node_signs_jwt_svids_through_the_server() {
        let ca = Arc::new(TestCa::new());
        let agent_id = SpiffeId::new(AGENT_ID).unwrap();
        let server = fake_server(&ca);
        server.set_entries(vec![entry("web", "spiffe://example.org/web", &agent_id, 1)]);
        let node = start_agent_node(&ca, server.clone()).await;

        let audience = vec!["db".to_owned()];
        let web = SpiffeId::new("spiffe://example.org/web").unwrap();
        let subject = |entry_id| crate::jwt::JwtSubject {
            entry_id,
            spiffe_id: &web,
            from_template: false,
        };
        let token = node.new_jwt_svid(subject("web"), &audience).await.unwrap();
        let validated = crate::jwt::validate(
            &token.token,
            "db",
            &trust_domain(),
            &[server.jwt_signer.authority()],
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(validated.spiffe_id.to_string(), "spiffe://example.org/web");
        assert!(token.expires_at > SystemTime::now());

        let error = node
            .new_jwt_svid(subject("missing"), &audience)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                crate::jwt::FetchError::Rpc {
                    code: tonic::Code::NotFound,
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
