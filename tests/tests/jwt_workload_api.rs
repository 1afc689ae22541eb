//! JWT-SVIDs through the Workload API, as rust-spiffe, py-spiffe and the agent CLI see them:
//! tokens signed by the real server, bundles from FetchJWTBundles, validation by the agent.

use anyhow::Context as _;
use signet_e2e::python::{self, Script};
use signet_e2e::{Deployment, ServerOptions, TRUST_DOMAIN};
use signet_e2e::{binaries, workload};
use spiffe::{JwtSvid, SpiffeId, TrustDomain, WorkloadApiError};

const AUDIENCE: &str = "spiffe://example.org/db";

/// Returns the `alg` of a JWT's header.
fn header_alg(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap_or_default();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap_or_default();
    let header: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
    header["alg"].as_str().unwrap_or_default().to_owned()
}

/// Starts a deployment and waits until the agent serves the workload's identity.
async fn start() -> anyhow::Result<Deployment> {
    let deployment = Deployment::start().await?;
    deployment.fetch_x509_context().await?;
    Ok(deployment)
}

#[tokio::test]
async fn jwt_svid_verifies_with_fetched_bundle() {
    let deployment = start().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();

    let svid = client.fetch_jwt_svid([AUDIENCE], None).await.unwrap();
    let bundles = client.fetch_jwt_bundles().await.unwrap();

    let trust_domain = TrustDomain::new(TRUST_DOMAIN).unwrap();
    let bundle = bundles
        .get(&trust_domain)
        .expect("FetchJWTBundles includes the own trust domain");
    assert!(
        bundle.find_jwt_authority(svid.key_id()).is_some(),
        "the bundle lacks the token's kid {}",
        svid.key_id()
    );
    let verified = JwtSvid::parse_and_validate(svid.token(), &bundles, &[AUDIENCE]).unwrap();
    assert_eq!(verified.spiffe_id().to_string(), deployment.workload_id);
    assert_eq!(verified.audience(), [AUDIENCE]);

    let validated = client
        .validate_jwt_token(AUDIENCE, svid.token())
        .await
        .unwrap();
    assert_eq!(validated.spiffe_id().to_string(), deployment.workload_id);
}

#[tokio::test]
async fn rsa_signed_jwt_svids_verify() {
    for key_type in ["rs256", "ps256"] {
        let options = ServerOptions {
            extra_args: vec!["--jwt-key-type".to_owned(), key_type.to_owned()],
            ..ServerOptions::default()
        };
        let deployment = Deployment::start_with(options, None).await.unwrap();
        deployment.fetch_x509_context().await.unwrap();
        let client = workload::connect(&deployment.agent.endpoint())
            .await
            .unwrap();

        let svid = client.fetch_jwt_svid([AUDIENCE], None).await.unwrap();
        assert_eq!(header_alg(svid.token()), key_type.to_uppercase());
        let bundles = client.fetch_jwt_bundles().await.unwrap();
        let verified = JwtSvid::parse_and_validate(svid.token(), &bundles, &[AUDIENCE]);
        let validated = client.validate_jwt_token(AUDIENCE, svid.token()).await;

        let verified = verified.unwrap_or_else(|error| panic!("{key_type}: {error:?}"));
        assert_eq!(
            verified.spiffe_id().to_string(),
            deployment.workload_id,
            "{key_type}"
        );
        let validated = validated.unwrap_or_else(|error| panic!("{key_type}: {error:?}"));
        assert_eq!(
            validated.spiffe_id().to_string(),
            deployment.workload_id,
            "{key_type}"
        );
    }
}

#[tokio::test]
async fn jwt_svid_is_cached_until_half_life() {
    let deployment = start().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();

    let first = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let second = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let other = client.fetch_jwt_token(["other"], None).await.unwrap();

    assert_eq!(first, second, "a second request got a new token");
    assert_ne!(first, other, "another audience got the same token");
}

#[tokio::test]
async fn fetch_jwt_svid_without_audience_is_invalid_argument() {
    let deployment = start().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();

    let error = client
        .fetch_jwt_svid(Vec::<String>::new(), None)
        .await
        .unwrap_err();

    assert!(error.is_invalid_argument(), "{error:?}");
    assert!(
        format!("{error:?}").contains("audience must be specified"),
        "{error:?}"
    );
}

#[tokio::test]
async fn fetch_jwt_svid_with_33_audiences_is_invalid_argument() {
    let deployment = start().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let audiences: Vec<String> = (0..33).map(|index| format!("aud{index}")).collect();

    let error = client.fetch_jwt_svid(audiences, None).await.unwrap_err();

    assert!(error.is_invalid_argument(), "{error:?}");
    assert!(format!("{error:?}").contains("at most 32"), "{error:?}");
}

#[tokio::test]
async fn jwt_svid_with_32_audiences_parses() {
    let deployment = start().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let audiences: Vec<String> = (0..32).map(|index| format!("aud{index}")).collect();

    let svid = client.fetch_jwt_svid(audiences, None).await.unwrap();

    assert_eq!(svid.audience().len(), 32);
}

#[tokio::test]
async fn jwt_svid_for_foreign_spiffe_id_is_denied() {
    let deployment = start().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let other = SpiffeId::new("spiffe://example.org/not-mine").unwrap();

    let error = client
        .fetch_jwt_svid([AUDIENCE], Some(&other))
        .await
        .unwrap_err();

    assert!(
        matches!(error, WorkloadApiError::NoIdentityIssued),
        "{error:?}"
    );
}

#[tokio::test]
async fn agent_rejects_token_for_other_audience() {
    let deployment = start().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let token = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();

    let error = client
        .validate_jwt_token("spiffe://example.org/other", &token)
        .await
        .unwrap_err();

    assert!(error.is_invalid_argument(), "{error:?}");
}

#[tokio::test]
async fn jwt_svid_fetched_and_verified_with_python_client() {
    let deployment = start().await.unwrap();

    let script = Script::load("fetch_jwt.py").unwrap();
    let output = script
        .run(&[&deployment.agent.endpoint(), AUDIENCE])
        .await
        .unwrap();
    let json = python::json_output(&output).unwrap();
    assert!(output.status.success(), "fetch_jwt.py failed: {json}");

    assert_eq!(json["spiffe_id"], deployment.workload_id.as_str());
    assert_eq!(json["verified_spiffe_id"], deployment.workload_id.as_str());
    assert_eq!(json["validated_spiffe_id"], deployment.workload_id.as_str());
    assert_eq!(json["audience"], serde_json::json!([AUDIENCE]));
    assert_eq!(
        json["bundle_trust_domains"],
        serde_json::json!([TRUST_DOMAIN])
    );
    let expiry = json["expiry"].as_i64().unwrap();
    assert!(expiry > signet_e2e::unix_now(), "expired token: {json}");
}

#[tokio::test]
async fn cli_fetches_and_validates_jwt_svid() {
    let deployment = start().await.unwrap();

    let fetched = deployment
        .agent
        .cli(&[
            "api",
            "fetch",
            "jwt",
            "--audience",
            AUDIENCE,
            "--output",
            "json",
        ])
        .await
        .unwrap();
    assert!(
        fetched.status.success(),
        "{}",
        signet_e2e::cli::printed(&fetched)
    );
    let svids: serde_json::Value = serde_json::from_slice(&fetched.stdout).unwrap();
    assert_eq!(svids[0]["spiffe_id"], deployment.workload_id.as_str());
    let token = svids[0]["token"].as_str().unwrap().to_owned();

    let valid = deployment
        .agent
        .cli(&[
            "api",
            "validate",
            "jwt",
            "--audience",
            AUDIENCE,
            "--svid",
            token.as_str(),
        ])
        .await
        .unwrap();
    assert!(
        valid.status.success(),
        "{}",
        signet_e2e::cli::printed(&valid)
    );
    assert!(
        signet_e2e::cli::printed(&valid).contains(&deployment.workload_id),
        "{}",
        signet_e2e::cli::printed(&valid)
    );

    let invalid = deployment
        .agent
        .cli(&[
            "api",
            "validate",
            "jwt",
            "--audience",
            "other",
            "--svid",
            token.as_str(),
        ])
        .await
        .unwrap();
    assert_eq!(
        invalid.status.code(),
        Some(1),
        "{}",
        signet_e2e::cli::printed(&invalid)
    );
}

#[tokio::test]
async fn cli_prints_invalid_argument_message_once() {
    let deployment = start().await.unwrap();

    let output = deployment
        .agent
        .cli(&["api", "fetch", "jwt", "--audience", ""])
        .await
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("invalid_argument"), "{stderr}");
    assert_eq!(
        stderr.matches("audience must be specified").count(),
        1,
        "{stderr}"
    );
}

/// Runs `api validate jwt` for `AUDIENCE` with `svid_args`, writing `stdin` to its standard input.
async fn validate_with(
    deployment: &Deployment,
    svid_args: &[&str],
    stdin: &str,
) -> anyhow::Result<std::process::Output> {
    use tokio::io::AsyncWriteExt as _;

    let mut command = tokio::process::Command::new(binaries::path(binaries::AGENT)?);
    command
        .args(["api", "validate", "jwt", "--audience", AUDIENCE])
        .args(svid_args)
        .arg("--socket-path")
        .arg(deployment.agent.socket_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn()?;
    let mut input = child.stdin.take().context("no stdin pipe")?;
    input.write_all(stdin.as_bytes()).await?;
    drop(input);
    Ok(child.wait_with_output().await?)
}

#[tokio::test]
async fn cli_validates_token_from_stdin_and_file() {
    let deployment = start().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let token = client
        .fetch_jwt_svid([AUDIENCE], None)
        .await
        .unwrap()
        .token()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_path = token_file.display().to_string();

    let from_stdin = validate_with(&deployment, &["--svid", "-"], &format!("{token}\n"))
        .await
        .unwrap();
    let from_file = validate_with(&deployment, &["--svid-file", &token_path], "")
        .await
        .unwrap();

    for (source, output) in [("stdin", from_stdin), ("file", from_file)] {
        let printed = signet_e2e::cli::printed(&output);
        assert!(output.status.success(), "{source}: {printed}");
        assert!(
            printed.contains(&deployment.workload_id),
            "{source}: {printed}"
        );
        assert!(!printed.contains(&token), "{source} printed the token");
    }
}
