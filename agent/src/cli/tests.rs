use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clap::{CommandFactory, Parser};
use rustls::pki_types::CertificateDer;

use super::*;
use crate::cache::Snapshot;
use crate::test_util::TestCa;
use crate::workload_api::test_support::{
    TestServer, own_uid_selector, signed_identity, snapshot, trust_domain,
};

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
async fn healthcheck_accepts_permission_denied() {
    let server = TestServer::start().await;
    let mut synced = Snapshot::empty(trust_domain());
    synced.bundle.push(CertificateDer::from(vec![0x30, 0x00]));
    server.cache.publish(synced);

    let args = HealthcheckArgs {
        endpoint: endpoint_args(&server.socket_path),
        timeout: Duration::from_secs(10),
    };
    healthcheck(&args).await.unwrap();
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
