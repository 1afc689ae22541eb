use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clap::{CommandFactory, Parser};
use signet_core::health::Readiness;

use super::*;
use crate::jwt::test_support::TestSigner;
use crate::test_util::TestCa;
use crate::workload_api::test_support::{TestServer, own_uid_selector, signed_identity, snapshot};

fn endpoint_args(socket_path: &Path) -> EndpointArgs {
    EndpointArgs {
        socket_path: Some(socket_path.to_path_buf()),
    }
}

#[test]
fn command_line_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn parses_fetch_x509_with_write_and_json() {
    let cli = Cli::try_parse_from([
        "signet-agent",
        "api",
        "fetch",
        "x509",
        "--socket-path",
        "/run/api.sock",
        "--write",
        "out",
        "--output",
        "json",
    ])
    .unwrap();

    let Command::Api(ApiCommand::Fetch(FetchCommand::X509(args))) = cli.command else {
        panic!("unexpected command {:?}", cli.command);
    };
    assert_eq!(args.write, Some(PathBuf::from("out")));
    assert_eq!(args.output, OutputFormat::Json);
    assert_eq!(
        args.endpoint.socket_path,
        Some(PathBuf::from("/run/api.sock"))
    );
}

#[test]
fn socket_path_flag_wins() {
    let endpoint = endpoint_args(Path::new("/run/api.sock"))
        .endpoint()
        .unwrap();
    assert!(matches!(endpoint, Endpoint::Unix(path) if path == Path::new("/run/api.sock")));
}

#[tokio::test(flavor = "current_thread")]
async fn healthcheck_passes_when_agent_serving() {
    let server = TestServer::start().await;
    server.health.publish(Readiness::Ready).await;

    let args = HealthcheckArgs {
        endpoint: endpoint_args(&server.socket_path),
        timeout: Duration::from_secs(10),
    };
    healthcheck(&args).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn healthcheck_fails_when_agent_not_ready() {
    let server = TestServer::start().await;
    let args = HealthcheckArgs {
        endpoint: endpoint_args(&server.socket_path),
        timeout: Duration::from_secs(10),
    };

    let error = healthcheck(&args).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("not serving"), "{message}");
}

#[tokio::test(flavor = "current_thread")]
async fn healthcheck_fails_without_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("missing.sock");
    let args = HealthcheckArgs {
        endpoint: endpoint_args(&socket_path),
        timeout: Duration::from_secs(10),
    };

    let error = healthcheck(&args).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(
        message.contains(&socket_path.display().to_string()),
        "{message}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_writes_svid_key_and_bundle() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let web = signed_identity(&ca, "spiffe://example.org/web", vec![own_uid_selector()]);
    let material = std::sync::Arc::clone(web.svid.as_ref().unwrap());
    server.cache.publish(snapshot(&ca, vec![web]));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");

    let args = FetchX509Args {
        endpoint: endpoint_args(&server.socket_path),
        write: Some(out.clone()),
        output: OutputFormat::Json,
    };
    run_api(ApiCommand::Fetch(FetchCommand::X509(args)))
        .await
        .unwrap();

    let chain = pem::parse_many(fs::read(out.join("svid.0.pem")).unwrap()).unwrap();
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0].contents(), material.chain[0].as_ref());

    let key_path = out.join("svid.0.key");
    let key = pem::parse(fs::read(&key_path).unwrap()).unwrap();
    assert_eq!(key.tag(), "PRIVATE KEY");
    assert_eq!(key.contents(), material.private_key_pkcs8.as_slice());
    let mode = fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let bundle = pem::parse_many(fs::read(out.join("bundle.0.pem")).unwrap()).unwrap();
    assert_eq!(bundle.len(), 1);
    assert_eq!(bundle[0].contents(), ca.bundle()[0].as_ref());
}

#[test]
fn healthcheck_rejects_zero_timeout() {
    let error = Cli::try_parse_from(["signet-agent", "healthcheck", "--timeout", "0"]).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("--timeout"), "{message}");
    assert!(message.contains("greater than zero"), "{message}");
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_with_write_path_of_regular_file_fails_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    fs::write(&file, b"keep").unwrap();
    let args = FetchX509Args {
        // No agent listens here: the error must come from the --write check first.
        endpoint: endpoint_args(&dir.path().join("missing.sock")),
        write: Some(file.clone()),
        output: OutputFormat::Human,
    };

    let error = run_api(ApiCommand::Fetch(FetchCommand::X509(args)))
        .await
        .unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("is not a directory"), "{message}");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert_eq!(fs::read(&file).unwrap(), b"keep");
}

#[test]
fn parses_fetch_jwt_with_repeated_audience() {
    let cli = Cli::try_parse_from([
        "signet-agent",
        "api",
        "fetch",
        "jwt",
        "--audience",
        "db",
        "--audience",
        "cache",
        "--spiffe-id",
        "spiffe://example.org/web",
    ])
    .unwrap();

    let Command::Api(ApiCommand::Fetch(FetchCommand::Jwt(args))) = cli.command else {
        panic!("unexpected command {:?}", cli.command);
    };
    assert_eq!(args.audience, ["db", "cache"]);
    assert_eq!(args.spiffe_id.as_deref(), Some("spiffe://example.org/web"));
    assert_eq!(args.output, OutputFormat::Human);
}

#[test]
fn fetch_jwt_requires_audience() {
    let error = Cli::try_parse_from(["signet-agent", "api", "fetch", "jwt"]).unwrap_err();
    assert_eq!(
        error.kind(),
        clap::error::ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn parses_validate_jwt() {
    let cli = Cli::try_parse_from([
        "signet-agent",
        "api",
        "validate",
        "jwt",
        "--audience",
        "db",
        "--svid",
        "a.b.c",
    ])
    .unwrap();

    let Command::Api(ApiCommand::Validate(ValidateCommand::Jwt(args))) = cli.command else {
        panic!("unexpected command {:?}", cli.command);
    };
    assert_eq!(args.audience, "db");
    assert_eq!(args.svid.as_deref(), Some("a.b.c"));
}

#[test]
fn validate_jwt_takes_token_from_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    fs::write(&path, "a.b.c\n").unwrap();
    let parse = |svid: &[&str]| {
        let mut line = vec!["signet-agent", "api", "validate", "jwt", "--audience", "db"];
        line.extend_from_slice(svid);
        Cli::try_parse_from(line)
    };

    let Command::Api(ApiCommand::Validate(ValidateCommand::Jwt(args))) =
        parse(&["--svid-file", path.to_str().unwrap()])
            .unwrap()
            .command
    else {
        panic!("unexpected command");
    };
    assert_eq!(jwt::read_token(&args).unwrap().as_str(), "a.b.c");

    assert!(parse(&[]).is_err(), "no token accepted");
    assert!(
        parse(&["--svid", "-", "--svid-file", "x"]).is_err(),
        "two token sources accepted"
    );
    assert!(parse(&["--svid", "-"]).is_ok());
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_and_validate_jwt_through_agent() {
    let signer = std::sync::Arc::new(TestSigner::new(Duration::from_secs(300)));
    let server = TestServer::start_with_signer(std::sync::Arc::clone(&signer) as _).await;
    let ca = TestCa::new();
    let web = signed_identity(&ca, "spiffe://example.org/web", vec![own_uid_selector()]);
    let mut synced = snapshot(&ca, vec![web]);
    synced.jwt_authorities = vec![signer.key.authority()];
    server.cache.publish(synced);

    let fetch = FetchJwtArgs {
        endpoint: endpoint_args(&server.socket_path),
        audience: vec!["db".to_owned()],
        spiffe_id: None,
        output: OutputFormat::Json,
    };
    run_api(ApiCommand::Fetch(FetchCommand::Jwt(fetch)))
        .await
        .unwrap();
    assert_eq!(signer.calls(), 1);

    let bundles = FetchJwtBundleArgs {
        endpoint: endpoint_args(&server.socket_path),
        output: OutputFormat::Json,
    };
    run_api(ApiCommand::Fetch(FetchCommand::JwtBundle(bundles)))
        .await
        .unwrap();

    let validate = |svid: String, audience: &str| ValidateJwtArgs {
        endpoint: endpoint_args(&server.socket_path),
        audience: audience.to_owned(),
        svid: Some(svid),
        svid_file: None,
        output: OutputFormat::Human,
    };
    let token = signer
        .key
        .token("spiffe://example.org/web", &["db"], Duration::from_secs(60));
    run_api(ApiCommand::Validate(ValidateCommand::Jwt(validate(
        token.clone(),
        "db",
    ))))
    .await
    .unwrap();
    let error = run_api(ApiCommand::Validate(ValidateCommand::Jwt(validate(
        token, "other",
    ))))
    .await
    .unwrap_err();
    assert!(format!("{error:#}").contains("other"), "{error:#}");
}
