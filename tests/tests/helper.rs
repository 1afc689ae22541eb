//! `signet-agent helper`: the files it writes for software that cannot speak the Workload API,
//! and the command and signal it sends after each rotation.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use rcgen::{KeyPair, PublicKeyData};
use signet_e2e::files::mode;
use signet_e2e::process::Process;
use signet_e2e::wait::{PROPAGATION_TIMEOUT, eventually};
use signet_e2e::{Deployment, ServerOptions, binaries, svid};
use spiffe::{JwtBundle, JwtBundleSet, JwtSvid, TrustDomain};
use tokio::process::Command;

/// Entry TTL in the rotation tests: the agent renews at half of it.
const SHORT_SVID_TTL_SECS: u64 = 20;

/// Message the helper logs once when the Workload API goes away.
const OUTAGE_LOG: &str = "The Workload API is unavailable";

/// Message the helper logs once when the Workload API is back.
const RECOVERY_LOG: &str = "The Workload API is available again";

/// Bound for the reconnection: the agent's start plus the helper's longest backoff.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(50);

/// Bound for two updates: one full TTL plus room for a slow machine.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(SHORT_SVID_TTL_SECS + 25);

/// Server default JWT-SVID TTL in the JWT refresh test.
const SHORT_JWT_TTL_SECS: u64 = 6;

/// Bound for a JWT-SVID refresh: one full TTL plus room for a slow machine.
const JWT_REFRESH_TIMEOUT: Duration = Duration::from_secs(SHORT_JWT_TTL_SECS + 20);

/// Starts `signet-agent helper` in daemon mode against the deployment's agent, writing into
/// `dir/certs` and logging to `dir/helper.log`.
fn start_helper<S: AsRef<std::ffi::OsStr>>(
    deployment: &Deployment,
    dir: &Path,
    extra: &[S],
) -> anyhow::Result<Process> {
    let mut command = Command::new(binaries::path(binaries::AGENT)?);
    command
        .arg("helper")
        .arg("--socket-path")
        .arg(deployment.agent.socket_path())
        .arg("--cert-dir")
        .arg(dir.join("certs"))
        .args(extra);
    Process::spawn("signet-agent helper", command, &dir.join("helper.log"))
}

/// Returns the serial of the leaf in `svid.pem`, in hex.
fn leaf_serial(cert_dir: &Path) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(cert_dir.join("svid.pem"))?;
    let chain = svid::pem_certificates(&pem)?;
    let leaf = chain.first().context("svid.pem holds no certificate")?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)?;
    Ok(parsed.raw_serial_as_string())
}

/// Returns `--cmd` arguments for a command that appends a line to `dir/runs.log` on each run.
fn counting_command(dir: &Path) -> anyhow::Result<Vec<String>> {
    let script = dir.join("notify.sh");
    std::fs::write(&script, "#!/bin/sh\necho updated >> \"$1\"\n")?;
    let runs = dir.join("runs.log");
    Ok(vec![
        "--cmd".to_owned(),
        "/bin/sh".to_owned(),
        "--cmd-args".to_owned(),
        format!("{} {}", script.display(), runs.display()),
    ])
}

/// Reads the JWK Set file of `trust_domain` into a bundle set.
fn jwt_bundles(path: &Path, trust_domain: &str) -> anyhow::Result<JwtBundleSet> {
    let jwks = std::fs::read(path)?;
    let bundle = JwtBundle::from_jwt_authorities(TrustDomain::new(trust_domain)?, &jwks)?;
    Ok(std::iter::once(bundle).collect())
}

/// Returns the claims of a token without verifying it, for checks on `iat` and `exp`.
fn claims(token: &str) -> anyhow::Result<serde_json::Value> {
    Ok(jsonwebtoken::dangerous::insecure_decode_claims(token)?)
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

#[tokio::test]
async fn one_shot_writes_verifiable_files() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("certs");

    let output = deployment
        .agent
        .cli(&[
            "helper",
            "--one-shot",
            "--cert-dir",
            &cert_dir.display().to_string(),
        ])
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "helper --one-shot failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let chain =
        svid::pem_certificates(&std::fs::read_to_string(cert_dir.join("svid.pem")).unwrap())
            .unwrap();
    let bundle =
        svid::pem_certificates(&std::fs::read_to_string(cert_dir.join("svid_bundle.pem")).unwrap())
            .unwrap();
    let chain_refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let bundle_refs: Vec<&[u8]> = bundle.iter().map(Vec::as_slice).collect();
    svid::check_x509_svid(&chain_refs, &bundle_refs, &deployment.workload_id).unwrap();

    let key_pem = std::fs::read_to_string(cert_dir.join("svid_key.pem")).unwrap();
    let key = KeyPair::from_pem(&key_pem).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(
        key.subject_public_key_info(),
        leaf.tbs_certificate.subject_pki.raw,
        "svid_key.pem does not match the leaf"
    );

    assert_eq!(mode(&cert_dir.join("svid_key.pem")).unwrap(), 0o600);
    assert_eq!(mode(&cert_dir.join("svid.pem")).unwrap(), 0o644);
    assert_eq!(mode(&cert_dir.join("svid_bundle.pem")).unwrap(), 0o644);
}

#[tokio::test]
async fn one_shot_fails_when_notify_fails() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("certs").display().to_string();
    let pid_file = dir.path().join("missing.pid").display().to_string();

    let output = deployment
        .agent
        .cli(&[
            "helper",
            "--one-shot",
            "--cert-dir",
            &cert_dir,
            "--pid-file-name",
            &pid_file,
            "--renew-signal",
            "SIGHUP",
            "--cmd",
            "false",
        ])
        .await
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("SIGHUP"), "{stderr}");
    assert!(stderr.contains(&pid_file), "{stderr}");
    assert!(stderr.contains("the command false failed"), "{stderr}");
}

#[tokio::test]
async fn daemon_reruns_command_after_rotation() {
    let deployment = Deployment::start_with_ttl(Some(SHORT_SVID_TTL_SECS))
        .await
        .unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("certs");
    let runs = dir.path().join("runs.log");
    let mut helper = start_helper(
        &deployment,
        dir.path(),
        &counting_command(dir.path()).unwrap(),
    )
    .unwrap();
    let first_serial = eventually("the helper's first write", PROPAGATION_TIMEOUT, || async {
        ensure!(line_count(&runs) >= 1, "the command has not run");
        leaf_serial(&cert_dir)
    })
    .await
    .unwrap();
    eventually(
        "a rotation written and announced",
        ROTATION_TIMEOUT,
        || async {
            ensure!(
                line_count(&runs) >= 2,
                "the command ran {} times",
                line_count(&runs)
            );
            let serial = leaf_serial(&cert_dir)?;
            ensure!(
                serial != first_serial,
                "svid.pem still holds serial {serial}"
            );
            Ok(())
        },
    )
    .await
    .unwrap();

    let status = helper.stop().await.unwrap();
    assert!(
        status.success(),
        "helper exited with {status} after SIGTERM"
    );
}

#[tokio::test]
async fn daemon_recovers_after_agent_restart() {
    let mut deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs.log");
    let mut helper = start_helper(
        &deployment,
        dir.path(),
        &counting_command(dir.path()).unwrap(),
    )
    .unwrap();
    eventually("the helper's first write", PROPAGATION_TIMEOUT, || async {
        ensure!(line_count(&runs) >= 1, "the command has not run");
        Ok(())
    })
    .await
    .unwrap();

    deployment.agent.stop().await.unwrap();
    eventually(
        "the helper to see the outage",
        PROPAGATION_TIMEOUT,
        || async {
            ensure!(helper.log().contains(OUTAGE_LOG), "no outage logged yet");
            Ok(())
        },
    )
    .await
    .unwrap();
    deployment.agent.restart().await.unwrap();
    eventually("the helper to recover", RECOVERY_TIMEOUT, || async {
        ensure!(
            helper.log().contains(RECOVERY_LOG),
            "no recovery logged yet"
        );
        ensure!(
            line_count(&runs) >= 2,
            "the command ran {} times",
            line_count(&runs)
        );
        Ok(())
    })
    .await
    .unwrap();

    let log = helper.log();
    assert_eq!(log.matches(OUTAGE_LOG).count(), 1, "{log}");
    assert_eq!(log.matches(RECOVERY_LOG).count(), 1, "{log}");
    let status = helper.stop().await.unwrap();
    assert!(
        status.success(),
        "helper exited with {status} after SIGTERM"
    );
}

#[tokio::test]
async fn daemon_signals_the_pid_file_process() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let received = dir.path().join("received");
    let ready = dir.path().join("ready");
    let pid_file = dir.path().join("server.pid");

    let trap = format!(
        "trap 'echo got >> {}' USR1; touch {}; while :; do sleep 0.1; done",
        received.display(),
        ready.display()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&trap)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    std::fs::write(&pid_file, format!("{pid}\n")).unwrap();
    eventually("the trap to be installed", PROPAGATION_TIMEOUT, || async {
        ensure!(ready.exists(), "the shell has not started");
        Ok(())
    })
    .await
    .unwrap();

    let mut helper = start_helper(
        &deployment,
        dir.path(),
        &[
            "--pid-file-name",
            &pid_file.display().to_string(),
            "--renew-signal",
            "SIGUSR1",
        ],
    )
    .unwrap();
    eventually(
        "SIGUSR1 to reach the process",
        PROPAGATION_TIMEOUT,
        || async {
            ensure!(line_count(&received) >= 1, "no signal received yet");
            Ok(())
        },
    )
    .await
    .unwrap();

    let status = helper.stop().await.unwrap();
    assert!(
        status.success(),
        "helper exited with {status} after SIGTERM"
    );
    child.start_kill().ok();
}

#[tokio::test]
async fn unknown_config_key_exits_64() {
    let deployment = Deployment::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config: PathBuf = dir.path().join("helper.toml");
    std::fs::write(&config, "cert_dir = \"/tmp\"\nrenew_signa = \"SIGHUP\"\n").unwrap();
    let output = deployment
        .agent
        .cli(&["helper", "--config", &config.display().to_string()])
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("renew_signa"), "{stderr}");
}

#[tokio::test]
async fn one_shot_writes_jwt_svid_and_jwt_bundle() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("certs");

    let output = deployment
        .agent
        .cli(&[
            "helper",
            "--one-shot",
            "--cert-dir",
            &cert_dir.display().to_string(),
            "--jwt-svid",
            "orders=orders.token",
            "--jwt-bundle-file-name",
            "jwt_bundle.json",
        ])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "helper --one-shot failed: {stderr}"
    );

    let token = std::fs::read_to_string(cert_dir.join("orders.token")).unwrap();
    assert!(!stderr.contains(&token), "the token was logged");
    let bundles = jwt_bundles(&cert_dir.join("jwt_bundle.json"), "example.org").unwrap();
    let svid = JwtSvid::parse_and_validate(&token, &bundles, &["orders"]).unwrap();
    assert_eq!(svid.spiffe_id().to_string(), deployment.workload_id);
    assert_eq!(svid.audience(), ["orders"]);
    assert!(JwtSvid::parse_and_validate(&token, &bundles, &["billing"]).is_err());

    assert_eq!(mode(&cert_dir.join("orders.token")).unwrap(), 0o600);
    assert_eq!(mode(&cert_dir.join("jwt_bundle.json")).unwrap(), 0o644);
    assert_eq!(mode(&cert_dir.join("svid_key.pem")).unwrap(), 0o600);
}

#[tokio::test]
async fn daemon_refreshes_jwt_svid_before_expiry() {
    let options = ServerOptions {
        extra_args: vec![
            "--default-jwt-svid-ttl".to_owned(),
            format!("{SHORT_JWT_TTL_SECS}s"),
        ],
        ..ServerOptions::default()
    };
    let deployment = Deployment::start_with(options, None).await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("certs").join("orders.token");
    let bundle_file = dir.path().join("certs").join("jwt_bundle.json");
    let mut helper = start_helper(
        &deployment,
        dir.path(),
        &[
            "--jwt-svid",
            "orders=orders.token",
            "--jwt-bundle-file-name",
            "jwt_bundle.json",
        ],
    )
    .unwrap();

    let first = eventually("the first JWT-SVID file", PROPAGATION_TIMEOUT, || async {
        Ok(std::fs::read_to_string(&token_file)?)
    })
    .await
    .unwrap();
    let second = eventually("a refreshed JWT-SVID", JWT_REFRESH_TIMEOUT, || async {
        let token = std::fs::read_to_string(&token_file)?;
        ensure!(token != first, "the file still holds the first token");
        Ok(token)
    })
    .await
    .unwrap();

    eventually(
        "a JWT bundle file that verifies the token",
        PROPAGATION_TIMEOUT,
        || async {
            let bundles = jwt_bundles(&bundle_file, "example.org")?;
            JwtSvid::parse_and_validate(&second, &bundles, &["orders"])?;
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(mode(&bundle_file).unwrap(), 0o644);
    let log = helper.log();
    assert!(
        !log.contains(&first) && !log.contains(&second),
        "a token was logged"
    );
    let (first, second) = (claims(&first).unwrap(), claims(&second).unwrap());
    assert!(
        second["iat"].as_i64().unwrap() < first["exp"].as_i64().unwrap(),
        "the new token was issued only after the old one expired: {first} {second}"
    );
    assert!(
        second["aud"] == serde_json::json!(["orders"]) || second["aud"] == "orders",
        "{second}"
    );
    assert_eq!(mode(&token_file).unwrap(), 0o600);
    let status = helper.stop().await.unwrap();
    assert!(
        status.success(),
        "helper exited with {status} after SIGTERM"
    );
}
