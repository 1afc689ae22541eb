//! `signet-oidc` as OIDC relying parties see it: discovery document, JWKS, domain allow-list and
//! TLS, checked with PyJWT's `PyJWKClient` against a real server.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use anyhow::{Context, ensure};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;
use signet_e2e::binaries;
use signet_e2e::process::Process;
use signet_e2e::python::{self, Script};
use signet_e2e::spire_api::{
    self, bundle::v1::GetBundleRequest, bundle::v1::bundle_client::BundleClient,
};
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::{Server, ServerOptions};
use tempfile::TempDir;
use tokio::process::Command;

/// Name of the provider binary.
const OIDC: &str = "signet-oidc";

/// Bundle read interval of the provider under test, short so server changes show quickly.
const POLL_INTERVAL: &str = "1s";

/// Audience of the JWT-SVIDs the tests mint.
const AUDIENCE: &str = "https://relying-party.example.org";

/// Log line of the provider when a bundle read fails.
const READ_FAILED_LOG: &str = "Failed to read the bundle";

/// Log line of the provider when bundle reads work again.
const READ_RECOVERED_LOG: &str = "Reading the bundle works again";

#[tokio::test]
async fn discovery_document_names_issuer_and_jwks() {
    let (_server, provider) = start_http().await.unwrap();

    let discovery = provider
        .fetch(&provider.discovery_url(), None)
        .await
        .unwrap();
    assert_eq!(discovery["status"], 200, "{discovery}");
    assert_eq!(discovery["content_type"], "application/json");
    let document = &discovery["body"];
    assert_eq!(document["issuer"], provider.issuer.as_str());
    assert_eq!(document["jwks_uri"], format!("{}/keys", provider.issuer));
    assert_eq!(
        document["response_types_supported"],
        serde_json::json!(["id_token"])
    );
    assert_eq!(
        document["subject_types_supported"],
        serde_json::json!(["public"])
    );
    let algorithms = document["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algorithms.contains(&Value::from("ES256")), "{algorithms:?}");
}

#[tokio::test]
async fn jwks_lists_server_jwt_keys() {
    let (server, provider) = start_http().await.unwrap();

    let jwks = provider.jwks().await.unwrap();
    let keys = jwks["keys"].as_array().expect("JWKS has a keys array");
    for key in keys {
        assert!(
            key["kid"].as_str().is_some_and(|kid| !kid.is_empty()),
            "{key}"
        );
        assert_eq!(key["use"], "sig", "{key}");
        for private_member in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private_member).is_none(),
                "{key} has {private_member}"
            );
        }
    }
    let server_kids = server_jwt_key_ids(&server).await.unwrap();
    assert!(
        !server_kids.is_empty(),
        "the server publishes a JWT key at start"
    );
    let mut served_kids: Vec<String> = keys
        .iter()
        .map(|key| key["kid"].as_str().unwrap_or_default().to_owned())
        .collect();
    served_kids.sort();
    assert_eq!(served_kids, server_kids);
}

#[tokio::test]
async fn unlisted_domain_gets_not_found() {
    let (_server, provider) = start_http().await.unwrap();

    for url in [provider.discovery_url(), provider.jwks_url()] {
        let response = provider.fetch(&url, Some("evil.example")).await.unwrap();
        assert_eq!(response["status"], 404, "{url}: {response}");
    }
    let listed = provider
        .fetch(&provider.jwks_url(), Some("127.0.0.1"))
        .await
        .unwrap();
    assert_eq!(listed["status"], 200, "{listed}");
}

#[tokio::test]
async fn invalid_host_gets_bad_request() {
    let (_server, provider) = start_http().await.unwrap();

    for (headers, message) in [
        (
            "Host: 127.0.0.1\r\nHost: evil.example\r\n",
            "more than one Host header",
        ),
        (
            "Host: user@127.0.0.1\r\n",
            "invalid host: expected host[:port]",
        ),
    ] {
        let response = provider.raw_get("/keys", headers).await.unwrap();
        assert!(
            response.starts_with("HTTP/1.1 400 "),
            "{headers:?}: {response}"
        );
        assert!(response.ends_with(message), "{headers:?}: {response}");
    }
}

#[tokio::test]
async fn jwt_svid_verified_with_pyjwt() {
    // RSA keys have no `alg` in the JWKS, and a PyJWK then takes RS256, so PS256 tokens only
    // verify with the bare key.
    let cases = [
        ("es256", "ES256", false),
        ("rs256", "RS256", false),
        ("ps256", "PS256", true),
    ];
    for (key_type, algorithm, raw_key) in cases {
        let (server, provider) = start_http_with(&["--jwt-key-type", key_type])
            .await
            .unwrap();
        let subject = server.spiffe_id("/workload");
        let token_file = provider.dir.path().join("token");
        mint_jwt_svid(&server, &subject, &token_file).await.unwrap();

        let output = provider.verify(&token_file, raw_key).await.unwrap();
        let verified = python::json_output(&output).unwrap();
        assert!(output.status.success(), "{key_type}: {verified}");
        assert_eq!(verified["claims"]["sub"], subject, "{key_type}");
        assert_eq!(
            verified["claims"]["iss"],
            provider.issuer.as_str(),
            "{key_type}"
        );
        assert_eq!(
            verified["claims"]["aud"],
            serde_json::json!([AUDIENCE]),
            "{key_type}"
        );
        assert_eq!(verified["header_alg"], algorithm, "{key_type}");
    }
}

#[tokio::test]
async fn token_of_other_server_rejected() {
    let (_server, provider) = start_http().await.unwrap();
    let other = start_server(&provider.issuer, &[]).await.unwrap();
    let token_file = provider.dir.path().join("token");
    mint_jwt_svid(&other, &other.spiffe_id("/workload"), &token_file)
        .await
        .unwrap();

    let output = provider.verify(&token_file, false).await.unwrap();
    let result = python::json_output(&output).unwrap();
    assert!(!output.status.success(), "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("signing key"), "{error}");
}

#[tokio::test]
async fn jwks_kept_while_server_is_down() {
    let (mut server, provider) = start_http().await.unwrap();
    let before = provider.jwks().await.unwrap();

    server.stop().await.unwrap();
    provider.wait_for_log(READ_FAILED_LOG).await.unwrap();
    assert_eq!(provider.jwks().await.unwrap(), before);

    server.restart().await.unwrap();
    provider.wait_for_log(READ_RECOVERED_LOG).await.unwrap();
    assert_eq!(provider.jwks().await.unwrap(), before);
}

#[tokio::test]
async fn tls_certificate_served_and_reloaded() {
    let tls = TestCa::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.pem"), dir.path().join("tls-key.pem"));
    let first = tls.write_leaf(&cert_path, &key_path).unwrap();

    let port = free_port().unwrap();
    let issuer = format!("https://127.0.0.1:{port}");
    let server = start_server(&issuer, &[]).await.unwrap();
    let provider = Provider::start(
        &server,
        port,
        &issuer,
        &[
            "--tls-cert",
            path_str(&cert_path),
            "--tls-key",
            path_str(&key_path),
        ],
    )
    .await
    .unwrap();
    let ca_file = dir.path().join("ca.pem");
    fs::write(&ca_file, tls.ca_pem()).unwrap();

    let response = provider
        .fetch_trusting(&provider.discovery_url(), &ca_file)
        .await
        .unwrap();
    assert_eq!(response["status"], 200, "{response}");
    assert_eq!(response["body"]["issuer"], issuer.as_str());
    assert_eq!(served_leaf(&tls, port).await.unwrap(), first);

    // Replace both files by rename, as certificate managers do.
    let (new_cert, new_key) = (dir.path().join("new.pem"), dir.path().join("new-key.pem"));
    let second = tls.write_leaf(&new_cert, &new_key).unwrap();
    fs::rename(&new_key, &key_path).unwrap();
    fs::rename(&new_cert, &cert_path).unwrap();
    wait::eventually("the new TLS certificate", PROPAGATION_TIMEOUT, || async {
        let served = served_leaf(&tls, port).await?;
        ensure!(served == second, "still serving the previous certificate");
        Ok(())
    })
    .await
    .unwrap();

    let response = provider
        .fetch_trusting(&provider.jwks_url(), &ca_file)
        .await
        .unwrap();
    assert_eq!(response["status"], 200, "{response}");
}

#[tokio::test]
async fn sigterm_stops_provider_cleanly() {
    let (_server, mut provider) = start_http().await.unwrap();
    let status = provider.process.stop().await.unwrap();
    assert!(status.success(), "signet-oidc exited with {status}");
}

#[tokio::test]
async fn invalid_config_exits_64() {
    let cases: [&[&str]; 4] = [
        &["--insecure-http"],
        &["--issuer", "ftp://127.0.0.1", "--insecure-http"],
        &[
            "--issuer",
            "https://127.0.0.1",
            "--domain",
            "a b",
            "--insecure-http",
        ],
        &["--issuer", "https://127.0.0.1"],
    ];
    for args in cases {
        let output = Command::new(binaries::path(OIDC).unwrap())
            .arg("run")
            .args(args)
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}

/// A running `signet-oidc` with its log, and the Python relying party script.
struct Provider {
    issuer: String,
    port: u16,
    process: Process,
    script: Script,
    // Declared last so the directory outlives the process during drop.
    dir: TempDir,
}

impl Provider {
    /// Starts the provider for `server` on `port` and waits until it accepts connections.
    async fn start(
        server: &Server,
        port: u16,
        issuer: &str,
        transport_args: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("signet-oidc-").tempdir()?;
        let address = format!("127.0.0.1:{port}");
        let mut command = Command::new(binaries::path(OIDC)?);
        command
            .arg("run")
            .args(["--issuer", issuer, "--listen-address", &address])
            .args(["--poll-interval", POLL_INTERVAL])
            .arg("--admin-socket")
            .arg(server.admin_socket())
            .args(transport_args);
        let mut process = Process::spawn(OIDC, command, &dir.path().join("oidc.log"))?;
        process
            .wait_ready("listener accepts connections", || {
                wait::tcp_accepts(&address)
            })
            .await?;
        Ok(Self {
            issuer: issuer.to_owned(),
            port,
            process,
            script: Script::load("verify_oidc.py")?,
            dir,
        })
    }

    fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.base_url())
    }

    fn jwks_url(&self) -> String {
        format!("{}/keys", self.base_url())
    }

    fn base_url(&self) -> String {
        let scheme = if self.issuer.starts_with("https") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Sends a plain-HTTP GET for `path` with the raw `headers` lines and returns the whole
    /// response, so a test can send requests that HTTP clients reject.
    async fn raw_get(&self, path: &str, headers: &str) -> anyhow::Result<String> {
        let address = ("127.0.0.1", self.port);
        let request = format!("GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(address)?;
            stream.write_all(request.as_bytes())?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response.trim_end().to_owned())
        })
        .await?
    }

    /// Fetches `url` with Python's HTTP client, optionally with another Host header.
    async fn fetch(&self, url: &str, host: Option<&str>) -> anyhow::Result<Value> {
        let mut args = vec!["fetch", url];
        if let Some(host) = host {
            args.extend(["--host", host]);
        }
        self.run_fetch(&args).await
    }

    /// Fetches `url` over TLS, trusting only the CA certificates in `ca_file`.
    async fn fetch_trusting(&self, url: &str, ca_file: &Path) -> anyhow::Result<Value> {
        self.run_fetch(&["fetch", url, "--cafile", path_str(ca_file)])
            .await
    }

    async fn run_fetch(&self, args: &[&str]) -> anyhow::Result<Value> {
        let output = self.script.run(args).await?;
        let result = python::json_output(&output)?;
        ensure!(output.status.success(), "fetch failed: {result}");
        Ok(result)
    }

    /// Runs the relying party check on the token in `token_file`, whatever its outcome. With
    /// `raw_key`, PyJWT gets the bare public key instead of the PyJWK.
    async fn verify(&self, token_file: &Path, raw_key: bool) -> anyhow::Result<Output> {
        let discovery_url = self.discovery_url();
        let mut args = vec![
            "verify",
            &discovery_url,
            path_str(token_file),
            AUDIENCE,
            &self.issuer,
        ];
        if raw_key {
            args.push("--raw-key");
        }
        self.script.run(&args).await
    }

    /// Returns the JWKS once the provider has read the bundle.
    async fn jwks(&self) -> anyhow::Result<Value> {
        wait::eventually("the JWKS", PROPAGATION_TIMEOUT, || async {
            let response = self.fetch(&self.jwks_url(), None).await?;
            ensure!(response["status"] == 200, "JWKS not served: {response}");
            Ok(response["body"].clone())
        })
        .await
    }

    async fn wait_for_log(&self, text: &str) -> anyhow::Result<()> {
        wait::eventually(text, PROPAGATION_TIMEOUT, || async {
            ensure!(self.process.log().contains(text), "not logged yet");
            Ok(())
        })
        .await
        .with_context(|| self.process.log_tail())
    }
}

/// A CA made for one test, which issues `127.0.0.1` server certificates.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "signet-oidc test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        Ok(Self {
            pem: certificate.pem(),
            der: certificate.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// Writes a new leaf for `127.0.0.1` and its key, and returns the leaf DER.
    fn write_leaf(&self, cert_path: &Path, key_path: &Path) -> anyhow::Result<Vec<u8>> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        // A subject other than the CA's, or OpenSSL takes the leaf for a self-signed certificate.
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        let key = KeyPair::generate()?;
        let leaf = params.signed_by(&key, &self.issuer)?;
        fs::write(cert_path, leaf.pem())?;
        fs::write(key_path, key.serialize_pem())?;
        Ok(leaf.der().to_vec())
    }

    fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// Connects to the provider with rustls and returns the leaf certificate it serves.
async fn served_leaf(ca: &TestCa, port: u16) -> anyhow::Result<Vec<u8>> {
    let config = Arc::new(ca.client_config()?);
    tokio::task::spawn_blocking(move || {
        let name = ServerName::try_from("127.0.0.1")?;
        let connection = ClientConnection::new(config, name)?;
        let mut stream = StreamOwned::new(connection, TcpStream::connect(("127.0.0.1", port))?);
        stream.write_all(b"HEAD /keys HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let leaf = stream
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .context("the server sent no certificate")?;
        Ok(leaf.to_vec())
    })
    .await?
}

/// Starts a server whose JWT-SVIDs carry `issuer` as `iss`, with further `run` arguments.
async fn start_server(issuer: &str, extra_args: &[&str]) -> anyhow::Result<Server> {
    let mut args = vec!["--jwt-issuer".to_owned(), issuer.to_owned()];
    args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
    Server::start_with(ServerOptions {
        extra_args: args,
        ..ServerOptions::default()
    })
    .await
}

/// Starts a server and a plain-HTTP provider whose issuer is its own loopback address.
async fn start_http() -> anyhow::Result<(Server, Provider)> {
    start_http_with(&[]).await
}

/// Like [`start_http`], with further server `run` arguments.
async fn start_http_with(server_args: &[&str]) -> anyhow::Result<(Server, Provider)> {
    let port = free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let server = start_server(&issuer, server_args).await?;
    let provider = Provider::start(&server, port, &issuer, &["--insecure-http"]).await?;
    Ok((server, provider))
}

/// Mints a JWT-SVID for `spiffe_id` with the server CLI, which writes it to `token_file`.
async fn mint_jwt_svid(server: &Server, spiffe_id: &str, token_file: &Path) -> anyhow::Result<()> {
    server
        .cli_ok(&[
            "jwt",
            "mint",
            "--spiffe-id",
            spiffe_id,
            "--audience",
            AUDIENCE,
            "--write",
            path_str(token_file),
        ])
        .await?;
    let token = fs::read_to_string(token_file).context("reading the minted token")?;
    ensure!(
        token.trim().split('.').count() == 3,
        "`jwt mint` wrote no compact JWT"
    );
    Ok(())
}

/// Returns the sorted key IDs of the server's unexpired JWT authorities, read with SPIRE's own
/// Bundle API client.
async fn server_jwt_key_ids(server: &Server) -> anyhow::Result<Vec<String>> {
    let channel = spire_api::connect_admin(&server.admin_socket()).await?;
    let bundle = BundleClient::new(channel)
        .get_bundle(GetBundleRequest::default())
        .await?
        .into_inner();
    let now = signet_e2e::unix_now();
    let mut kids: Vec<String> = bundle
        .jwt_authorities
        .into_iter()
        .filter(|key| key.expires_at == 0 || key.expires_at > now)
        .map(|key| key.key_id)
        .collect();
    kids.sort();
    Ok(kids)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}
