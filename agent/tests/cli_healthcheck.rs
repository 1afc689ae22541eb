//! Runs the `signet-agent healthcheck` binary against a Workload API, with a gRPC health service,
//! served in the test process.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test on any error"
)]

use std::path::Path;
use std::process::Output;

use rustls::pki_types::CertificateDer;
use signet_agent::cache::{Cache, Snapshot};
use signet_agent::workload_api::WorkloadApiListener;
use signet_core::health::{AGENT_SERVICE, HealthState, Readiness};
use spiffe::TrustDomain;
use tokio::process::Command;
use tokio::sync::oneshot;

async fn healthcheck(envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signet-agent"));
    command
        .arg("healthcheck")
        .args(args)
        .env_remove("SPIFFE_ENDPOINT_SOCKET");
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().await.unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Starts a Workload API whose cache is synced but entitles no caller, so every Workload API
/// call is denied, and whose health service reports `readiness`.
async fn serve_denying_api(socket_path: &Path, readiness: Readiness) -> oneshot::Sender<()> {
    let trust_domain = TrustDomain::new("example.org").unwrap();
    let cache = Cache::new(trust_domain.clone());
    let mut snapshot = Snapshot::empty(trust_domain);
    snapshot.bundle.push(CertificateDer::from(vec![0x30, 0x00]));
    cache.publish(snapshot);
    let (health, health_service) = HealthState::new(AGENT_SERVICE).await;
    health.publish(readiness).await;

    let listener = WorkloadApiListener::bind(socket_path)
        .unwrap()
        .with_health(health_service);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(listener.serve(cache, async {
        let _ = stopped.await;
    }));
    stop
}

#[tokio::test(flavor = "current_thread")]
async fn healthcheck_succeeds_without_identity() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("api.sock");
    let _stop = serve_denying_api(&socket_path, Readiness::Ready).await;
    let socket = socket_path.to_str().unwrap();

    let output = healthcheck(&[], &["--socket-path", socket]).await;
    assert!(output.status.success(), "{}", stderr(&output));

    let endpoint = format!("unix://{socket}");
    let output = healthcheck(&[("SPIFFE_ENDPOINT_SOCKET", &endpoint)], &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test(flavor = "current_thread")]
async fn healthcheck_fails_when_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("api.sock");
    let not_synced = Readiness::NotReady("not synced".to_owned());
    let _stop = serve_denying_api(&socket_path, not_synced).await;
    let socket = socket_path.to_str().unwrap();

    let output = healthcheck(&[], &["--socket-path", socket]).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("not serving"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn healthcheck_fails_without_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("missing.sock");
    let socket = socket_path.to_str().unwrap();

    let output = healthcheck(&[], &["--socket-path", socket]).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(socket), "{}", stderr(&output));
}

#[tokio::test(flavor = "current_thread")]
async fn healthcheck_rejects_invalid_endpoint_env() {
    let output = healthcheck(&[("SPIFFE_ENDPOINT_SOCKET", "not a uri")], &[]).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("SPIFFE_ENDPOINT_SOCKET"),
        "{}",
        stderr(&output)
    );
}
