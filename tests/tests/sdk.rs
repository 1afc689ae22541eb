//! The SDK on a real server and agent: an `orders` service built with axum (and one with tonic)
//! behind mutual TLS, caller JWT-SVIDs and a policy, called by clients that take their own
//! X509-SVIDs from the same agent.
//!
//! The test process is every workload at once. The server registers one entry per workload for
//! the test's uid, each with its own hint. The agent serves all their SVIDs to this process, and
//! each side picks its own by SPIFFE ID.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::Context;
use axum::routing::get;
use axum::{Extension, Router};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureScheme};
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::{Agent, EntrySpec, Server};
use signet_sdk::policy::{Policy, RuleBuilder};
use signet_sdk::{AllowedPeers, CallerJwt, Identities, MtlsListener, PolicyLayer};
use signet_sdk::{SvidSelection, WorkloadIdentity, serve_http};
use spiffe::SpiffeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const ORDERS: &str = "/orders";
const GATEWAY: &str = "/gateway";
const BILLING: &str = "/billing-batch";
const STRANGER: &str = "/stranger";

/// The audience caller JWT-SVIDs for the orders service carry.
const ORDERS_AUDIENCE: &str = "spiffe://example.org/orders";

/// Bound on one attempt to get a workload's first X509-SVID; attempts repeat until the agent
/// serves it.
const SYNC_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The orders policy of the gateway scenario, with the SPIFFE IDs of trust domain example.org.
const ORDERS_POLICY: &str = r#"
[[rule]]
name = "billing-batch reads orders through the gateway"
effect = "allow"
peer = "spiffe://example.org/gateway"
caller = "spiffe://example.org/billing-batch"
methods = ["GET", "DELETE"]
paths = ["/orders/*"]

[[rule]]
name = "gateway reads order items"
effect = "allow"
peer = "spiffe://example.org/gateway"
methods = ["GET"]
paths = ["/orders/*/items"]

[[rule]]
name = "no deletes"
effect = "deny"
methods = ["DELETE"]
"#;

/// A server and an agent that serves the SVIDs of every workload above to the test process.
struct Fixture {
    server: Server,
    agent: Agent,
}

impl Fixture {
    async fn start() -> anyhow::Result<Self> {
        let server = Server::start().await?;
        let join_token = server.create_token().await?;
        let parent = server.join_token_agent_id(&join_token);
        for path in [ORDERS, GATEWAY, BILLING, STRANGER] {
            let entry = EntrySpec::new(server.spiffe_id(path), &parent)
                .selector(signet_e2e::current_uid_selector())
                .hint(path.trim_start_matches('/'));
            server.create_entry(&entry).await?;
        }
        let agent = Agent::start(&server, &join_token).await?;
        Ok(Self { server, agent })
    }

    fn id(&self, path: &str) -> anyhow::Result<SpiffeId> {
        Ok(SpiffeId::new(self.server.spiffe_id(path))?)
    }

    /// Returns the identity of the workload at `path`, chosen by SPIFFE ID, once the agent
    /// serves its SVID.
    async fn identity(&self, path: &str) -> anyhow::Result<WorkloadIdentity> {
        self.identity_with(SvidSelection::SpiffeId(self.id(path)?))
            .await
    }

    /// Returns the identity `selection` chooses, once the agent serves its SVID.
    async fn identity_with(&self, selection: SvidSelection) -> anyhow::Result<WorkloadIdentity> {
        let condition = format!("an X509-SVID for {selection:?}");
        wait::eventually(&condition, PROPAGATION_TIMEOUT, || {
            let builder = WorkloadIdentity::builder()
                .endpoint(self.agent.endpoint())
                .svid(selection.clone())
                .initial_sync_timeout(SYNC_ATTEMPT_TIMEOUT);
            async move { Ok(builder.build().await?) }
        })
        .await
    }

    /// Starts the axum orders service with `policy` and returns its address. The service
    /// chooses its SVID by hint, and clients accept only the orders SPIFFE ID, so a wrong
    /// choice fails every handshake.
    async fn serve_orders(&self, policy: Policy) -> anyhow::Result<SocketAddr> {
        let hint = ORDERS.trim_start_matches('/').to_owned();
        let identity = self.identity_with(SvidSelection::Hint(hint)).await?;
        let listener = self.listener(&identity).await?;
        let address = listener.local_addr();
        let callers = CallerJwt::new(identity.jwt_source().await?, [ORDERS_AUDIENCE]);
        let app = Router::new()
            .route("/orders/{id}", get(show_identities).delete(show_identities))
            .route("/orders/{id}/items", get(show_identities))
            .route("/admin", get(show_identities))
            .layer(PolicyLayer::new(policy).callers(callers));
        tokio::spawn(serve_http(listener, app));
        Ok(address)
    }

    /// Returns a listener for any workload of the trust domain, so that the policy decides.
    async fn listener(&self, identity: &WorkloadIdentity) -> anyhow::Result<MtlsListener> {
        let peers = AllowedPeers::parse(["spiffe://example.org/**"])?;
        let tcp = TcpListener::bind("127.0.0.1:0").await?;
        Ok(MtlsListener::new(tcp, identity.server_config(peers)?)?)
    }

    /// Returns a client configuration for the workload at `path` that accepts only the orders
    /// service.
    async fn client_config(&self, path: &str) -> anyhow::Result<ClientConfig> {
        let orders = AllowedPeers::parse([self.server.spiffe_id(ORDERS)])?;
        Ok(self.identity(path).await?.client_config(orders)?)
    }

    /// Fetches a JWT-SVID of the workload at `path` for `audience`.
    async fn jwt_svid(&self, path: &str, audience: &str) -> anyhow::Result<String> {
        let identity = self.identity(path).await?;
        let svid = identity.fetch_jwt_svid([audience]).await?;
        Ok(svid.token().to_owned())
    }
}

/// Returns the peer and caller the policy layer found.
async fn show_identities(Extension(identities): Extension<Identities>) -> String {
    let show = |id: Option<SpiffeId>| id.map_or_else(|| "-".to_owned(), |id| id.to_string());
    format!(
        "peer={} caller={}",
        show(identities.peer),
        show(identities.caller)
    )
}

/// Sends one HTTP/1.1 request over a new mutual TLS connection, with `token` as the bearer.
async fn call(
    config: ClientConfig,
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, String)> {
    let tls = connect(config, address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(connection);

    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", address.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new())?)
        .await
        .context("sending the request")?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn connect(
    config: ClientConfig,
    address: SocketAddr,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    // The server is authorized by its SPIFFE ID; the name only fills SNI.
    let name = ServerName::try_from("localhost")?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .context("TLS handshake")
}

/// Sends `head` (a request line and headers, without the final blank line) over a new mutual
/// TLS connection as is, and returns the response's status code and the whole response.
async fn raw_call(
    config: ClientConfig,
    address: SocketAddr,
    head: &str,
) -> anyhow::Result<(u16, String)> {
    let mut tls = connect(config, address).await?;
    let request = format!("{head}\r\nhost: orders\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    // The server may close without a TLS close_notify; what was read until then is the response.
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {response:?}"))?;
    Ok((status, response))
}

/// A policy that lets the gateway do anything but reach `/admin`, read `/orders/secret` or
/// delete.
const ADMIN_DENIED_POLICY: &str = r#"
[[rule]]
name = "no admin"
effect = "deny"
paths = ["/admin", "/admin/**"]

[[rule]]
name = "no secret reads"
effect = "deny"
methods = ["GET"]
paths = ["/orders/secret"]

[[rule]]
name = "no deletes"
effect = "deny"
methods = ["DELETE"]

[[rule]]
name = "gateway"
effect = "allow"
peer = "spiffe://example.org/gateway"
"#;

fn orders_policy() -> Policy {
    match Policy::parse("orders.toml", ORDERS_POLICY) {
        Ok(policy) => policy,
        Err(error) => unreachable!("the orders policy is valid: {error}"),
    }
}

#[tokio::test]
async fn allowed_peer_gets_200() {
    let fixture = Fixture::start().await.unwrap();
    let address = fixture.serve_orders(orders_policy()).await.unwrap();

    let config = fixture.client_config(GATEWAY).await.unwrap();
    let (status, body) = call(config, address, "GET", "/orders/7/items", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "peer=spiffe://example.org/gateway caller=-");
}

#[tokio::test]
async fn workload_the_policy_does_not_name_gets_403() {
    let fixture = Fixture::start().await.unwrap();
    let address = fixture.serve_orders(orders_policy()).await.unwrap();

    let config = fixture.client_config(STRANGER).await.unwrap();
    let (status, body) = call(config, address, "GET", "/orders/7/items", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body, "no policy rule allows this request\n");
}

#[tokio::test]
async fn client_without_certificate_fails_handshake() {
    let fixture = Fixture::start().await.unwrap();
    let address = fixture.serve_orders(orders_policy()).await.unwrap();

    // The client verifies the server as usual but has no certificate to present.
    let mut config = fixture.client_config(GATEWAY).await.unwrap();
    config.client_auth_cert_resolver = Arc::new(NoCertificate);
    let error = call(config, address, "GET", "/orders/7/items", None)
        .await
        .expect_err("a client without a certificate got a response");
    let chain = format!("{error:#}");
    assert!(chain.contains("CertificateRequired"), "{chain}");
}

#[tokio::test]
async fn caller_token_for_another_audience_gets_401() {
    let fixture = Fixture::start().await.unwrap();
    let address = fixture.serve_orders(orders_policy()).await.unwrap();

    let token = fixture
        .jwt_svid(BILLING, "spiffe://example.org/inventory")
        .await
        .unwrap();
    let config = fixture.client_config(GATEWAY).await.unwrap();
    let (status, body) = call(config, address, "GET", "/orders/7", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body,
        format!("JWT-SVID audience does not include {ORDERS_AUDIENCE}\n")
    );
}

#[tokio::test]
async fn caller_token_allows_named_method_only() {
    let fixture = Fixture::start().await.unwrap();
    let address = fixture.serve_orders(orders_policy()).await.unwrap();
    let token = fixture.jwt_svid(BILLING, ORDERS_AUDIENCE).await.unwrap();
    let config = fixture.client_config(GATEWAY).await.unwrap();

    let (status, body) = call(config.clone(), address, "GET", "/orders/7", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        "peer=spiffe://example.org/gateway caller=spiffe://example.org/billing-batch"
    );

    // The allow rule names DELETE too, but the deny rule wins.
    let (status, body) = call(config.clone(), address, "DELETE", "/orders/7", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body, "denied by policy\n");

    // Without the token the gateway alone may not read the order.
    let (status, body) = call(config, address, "GET", "/orders/7", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn shadow_mode_lets_denied_request_through_and_logs_it() {
    let logs = captured_logs().as_ref().unwrap();
    let fixture = Fixture::start().await.unwrap();
    let shadow = Policy::parse(
        "orders.toml",
        &format!("mode = \"shadow\"\n{ORDERS_POLICY}"),
    )
    .unwrap();
    let address = fixture.serve_orders(shadow).await.unwrap();

    let config = fixture.client_config(STRANGER).await.unwrap();
    let (status, body) = call(config, address, "DELETE", "/orders/shadow", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "peer=spiffe://example.org/stranger caller=-");

    let logged = logs.text();
    let line = logged
        .lines()
        .find(|line| {
            line.contains("Request would be denied (shadow mode)")
                && line.contains("/orders/shadow")
        })
        .unwrap_or_else(|| panic!("no shadow denial logged:\n{logged}"));
    for field in [
        "peer=spiffe://example.org/stranger",
        "caller=-",
        "method=DELETE",
        "path=/orders/shadow",
        "rule=no deletes",
    ] {
        assert!(line.contains(field), "{field} missing from: {line}");
    }
}

#[tokio::test]
async fn grpc_service_behind_layer_denies_unlisted_method() {
    let fixture = Fixture::start().await.unwrap();
    let policy = Policy::builder()
        .rule(
            RuleBuilder::allow()
                .name("gateway checks health")
                .peer(fixture.server.spiffe_id(GATEWAY))
                .grpc(["grpc.health.v1.Health/Check"]),
        )
        .build()
        .unwrap();
    let identity = fixture.identity(ORDERS).await.unwrap();
    let listener = fixture.listener(&identity).await.unwrap();
    let address = listener.local_addr();
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(PolicyLayer::new(policy))
            .add_service(health)
            .serve_with_incoming(listener),
    );

    let mut gateway = grpc_client(fixture.client_config(GATEWAY).await.unwrap(), address)
        .await
        .unwrap();
    let check = gateway.check(HealthCheckRequest::default()).await;
    assert!(check.is_ok(), "Check was denied: {check:?}");
    let watch = gateway
        .watch(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(watch.code(), Code::PermissionDenied, "{watch:?}");

    let mut stranger = grpc_client(fixture.client_config(STRANGER).await.unwrap(), address)
        .await
        .unwrap();
    let check = stranger
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(check.code(), Code::PermissionDenied, "{check:?}");
}

/// Connects a gRPC health client over mutual TLS with HTTP/2.
async fn grpc_client(
    mut config: ClientConfig,
    address: SocketAddr,
) -> anyhow::Result<HealthClient<tonic::transport::Channel>> {
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tower::service_fn(move |_| {
        let config = config.clone();
        async move {
            let tls = connect(config, address).await.map_err(io::Error::other)?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://orders.invalid")
        .connect_with_connector(connector)
        .await?;
    Ok(HealthClient::new(channel))
}

/// Presents no client certificate.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesClientCert for NoCertificate {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// Returns the log of every tracing event in this test process from the first call on.
///
/// The subscriber is global because a thread-local one misses events of callsites that tests on
/// other threads registered first. Tests that read the log find their lines by a unique path.
///
/// # Errors
///
/// Fails when another subscriber was set globally first.
fn captured_logs() -> &'static Result<LogBuffer, String> {
    static LOGS: OnceLock<Result<LogBuffer, String>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .map(|()| logs)
            .map_err(|error| format!("setting the log subscriber: {error}"))
    })
}

/// Log output shared with a tracing subscriber.
#[derive(Clone, Debug, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn unusual_request_targets_cannot_bypass_deny_rules() {
    let fixture = Fixture::start().await.unwrap();
    let policy = Policy::parse("admin.toml", ADMIN_DENIED_POLICY).unwrap();
    let address = fixture.serve_orders(policy).await.unwrap();
    let config = fixture.client_config(GATEWAY).await.unwrap();
    let expect = |head: &'static str, expected: u16| {
        let config = config.clone();
        async move {
            let (status, response) = raw_call(config, address, head).await.unwrap();
            assert_eq!(status, expected, "{head}: {response}");
        }
    };

    expect("GET /orders/7 HTTP/1.1", 200).await;
    expect("GET /admin HTTP/1.1", 403).await;
    expect("GET /admin/ HTTP/1.1", 403).await;
    for target in [
        "/orders/../admin",
        "/./admin",
        "/admin/.",
        "//admin",
        "//admin/x",
        "http://orders//admin",
        "/%2e%2e/admin",
        "/%2E%2E/admin",
        "/orders/..%2fadmin",
        "/..;/admin",
        "/%61dmin",
    ] {
        let head = format!("GET {target} HTTP/1.1");
        let (status, response) = raw_call(config.clone(), address, &head).await.unwrap();
        assert_eq!(status, 400, "{head}: {response}");
    }
    // HEAD is matched as GET, and a lower-case method is rejected rather than compared.
    expect("HEAD /orders/secret HTTP/1.1", 403).await;
    expect("delete /orders/7 HTTP/1.1", 400).await;
    // A gRPC content type over HTTP/1.1 is plain HTTP.
    expect(
        "DELETE /orders/7 HTTP/1.1\r\ncontent-type: application/grpc",
        403,
    )
    .await;
    expect(
        "DELETE /orders/7 HTTP/1.1\r\ncontent-type: application/grpcx",
        403,
    )
    .await;
    // An authorization header of another scheme is no caller, not a rejected token.
    expect("GET /orders/7 HTTP/1.1\r\nauthorization: Basic YTpi", 200).await;
}

#[tokio::test]
async fn jwt_svid_subject_is_the_selected_identity() {
    let fixture = Fixture::start().await.unwrap();
    for path in [BILLING, STRANGER, GATEWAY] {
        let identity = fixture.identity(path).await.unwrap();
        let svid = identity.fetch_jwt_svid([ORDERS_AUDIENCE]).await.unwrap();
        assert_eq!(svid.spiffe_id(), &fixture.id(path).unwrap());
        assert_eq!(svid.spiffe_id(), &identity.spiffe_id().unwrap());
    }
}

#[tokio::test]
async fn identity_errors_name_the_socket_and_the_served_svids() {
    let fixture = Fixture::start().await.unwrap();
    // Once the orders SVID is served, every SVID of the fixture is.
    fixture.identity(ORDERS).await.unwrap();

    let nobody = fixture.id("/nobody").unwrap();
    let error = WorkloadIdentity::builder()
        .endpoint(fixture.agent.endpoint())
        .svid(SvidSelection::SpiffeId(nobody))
        .initial_sync_timeout(SYNC_ATTEMPT_TIMEOUT)
        .build()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("serves no SVID with SPIFFE ID spiffe://example.org/nobody"),
        "{message}"
    );
    assert!(message.contains("spiffe://example.org/orders"), "{message}");

    let missing = fixture.agent.socket_path().with_file_name("missing.sock");
    let error = WorkloadIdentity::builder()
        .socket_path(&missing)
        .initial_sync_timeout(SYNC_ATTEMPT_TIMEOUT)
        .build()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("no socket at {}", missing.display())),
        "{message}"
    );
}

#[tokio::test]
async fn relative_socket_path_is_taken_from_the_current_directory() {
    let fixture = Fixture::start().await.unwrap();
    let socket = fixture.agent.socket_path();
    let current = std::env::current_dir().unwrap();
    let relative = current
        .components()
        .skip(1)
        .map(|_| std::path::PathBuf::from(".."))
        .collect::<std::path::PathBuf>()
        .join(socket.strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    let orders = fixture.id(ORDERS).unwrap();
    let identity = wait::eventually(
        "an X509-SVID through a relative path",
        PROPAGATION_TIMEOUT,
        || {
            let builder = WorkloadIdentity::builder()
                .socket_path(&relative)
                .svid(SvidSelection::SpiffeId(orders.clone()))
                .initial_sync_timeout(SYNC_ATTEMPT_TIMEOUT);
            async move { Ok(builder.build().await?) }
        },
    )
    .await
    .unwrap();
    assert_eq!(identity.spiffe_id().unwrap(), orders);
}

#[tokio::test]
async fn failed_handshake_is_logged_at_warn() {
    let logs = captured_logs().as_ref().unwrap();
    let fixture = Fixture::start().await.unwrap();
    let address = fixture.serve_orders(orders_policy()).await.unwrap();

    let mut config = fixture.client_config(GATEWAY).await.unwrap();
    config.client_auth_cert_resolver = Arc::new(NoCertificate);
    call(config, address, "GET", "/orders/7/items", None)
        .await
        .expect_err("a client without a certificate got a response");

    let local = format!("local={address}");
    let line = wait::eventually(
        "a warning about the failed handshake",
        PROPAGATION_TIMEOUT,
        || {
            let logged = logs.text();
            let line = logged
                .lines()
                .find(|line| line.contains("TLS handshake failed") && line.contains(&local))
                .map(str::to_owned);
            async move { line.context("not logged yet") }
        },
    )
    .await
    .unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("reason="), "{line}");
}
