//! The agent's CLI: `api fetch x509 --write`, `healthcheck`, and config validation of both
//! binaries.

use std::fs;

use signet_e2e::binaries;
use signet_e2e::cli::printed;
use signet_e2e::files::mode;
use signet_e2e::svid;
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::workload::as_slices;
use signet_e2e::{Deployment, Server};
use tokio::process::Command;

/// Exit code for invalid configuration (`EX_USAGE` from sysexits.h).
const INVALID_CONFIG_EXIT_CODE: i32 = 64;

#[tokio::test]
async fn api_fetch_writes_svid_key_and_bundle() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();

    let output = deployment
        .agent
        .cli(&["api", "fetch", "x509", "--write", &out])
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "api fetch x509 failed: {}",
        printed(&output)
    );

    let chain = svid::pem_certificates(&fs::read_to_string(dir.path().join("svid.0.pem")).unwrap())
        .unwrap();
    let bundle =
        svid::pem_certificates(&fs::read_to_string(dir.path().join("bundle.0.pem")).unwrap())
            .unwrap();
    svid::check_x509_svid(
        &as_slices(&chain),
        &as_slices(&bundle),
        &deployment.workload_id,
    )
    .unwrap();
    let key_path = dir.path().join("svid.0.key");
    assert!(
        fs::read_to_string(&key_path)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(mode(&key_path).unwrap(), 0o600, "svid.0.key mode");
}

#[tokio::test]
async fn api_fetch_prints_spiffe_id_and_expiry() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();

    let output = deployment
        .agent
        .cli(&["api", "fetch", "x509"])
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "api fetch x509 failed: {}",
        printed(&output)
    );
    assert!(stdout.contains(&deployment.workload_id), "{stdout}");
    assert!(
        stdout.to_lowercase().contains("expires"),
        "no expiry shown: {stdout}"
    );
}

#[tokio::test]
async fn healthchecks_follow_process_state() {
    let mut deployment = Deployment::start().await.unwrap();

    // The agent reports ready once its first sync succeeded, which may follow its start.
    wait::eventually(
        "the agent healthcheck to pass",
        PROPAGATION_TIMEOUT,
        || async {
            let agent_up = deployment.agent.cli(&["healthcheck"]).await?;
            anyhow::ensure!(
                agent_up.status.success(),
                "agent healthcheck: {}",
                printed(&agent_up)
            );
            Ok(())
        },
    )
    .await
    .unwrap();
    let server_up = deployment.server.cli(&["healthcheck"]).await.unwrap();
    assert!(
        server_up.status.success(),
        "server healthcheck: {}",
        printed(&server_up)
    );

    deployment.agent.stop().await.unwrap();
    deployment.server.stop().await.unwrap();

    let agent_down = deployment.agent.cli(&["healthcheck"]).await.unwrap();
    assert_eq!(
        agent_down.status.code(),
        Some(1),
        "agent healthcheck: {}",
        printed(&agent_down)
    );
    let server_down = deployment.server.cli(&["healthcheck"]).await.unwrap();
    assert_ne!(
        server_down.status.code(),
        Some(0),
        "server healthcheck: {}",
        printed(&server_down)
    );
}

#[tokio::test]
async fn unknown_config_key_rejected_by_both_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    fs::write(
        &config,
        "trust_domain = \"example.org\"\nlisten_everywhere = true\n",
    )
    .unwrap();
    let config = config.display().to_string();

    for binary in [binaries::SERVER, binaries::AGENT] {
        let output = Command::new(binaries::path(binary).unwrap())
            .args(["run", "--config", &config])
            .output()
            .await
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(INVALID_CONFIG_EXIT_CODE),
            "{binary}: {}",
            printed(&output)
        );
        assert!(
            printed(&output).contains("listen_everywhere"),
            "{binary} does not name the unknown key: {}",
            printed(&output)
        );
    }
}

#[tokio::test]
async fn invalid_trust_domain_rejected_at_start() {
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data").display().to_string();

    let output = Command::new(binaries::path(binaries::AGENT).unwrap())
        .args([
            "run",
            "--trust-domain",
            "Not A Domain",
            "--data-dir",
            &data_dir,
        ])
        .args([
            "--server-address",
            &server.address(),
            "--insecure-bootstrap",
        ])
        .args(["--join-token", "unused"])
        .output()
        .await
        .unwrap();

    assert_eq!(
        output.status.code(),
        Some(INVALID_CONFIG_EXIT_CODE),
        "{}",
        printed(&output)
    );
    assert!(
        printed(&output).contains("Not A Domain"),
        "{}",
        printed(&output)
    );
}
