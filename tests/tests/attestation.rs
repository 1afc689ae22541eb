//! Node attestation with join tokens, and what survives an agent or server restart.

use std::time::Duration;

use signet_e2e::cli::printed;
use signet_e2e::files::{key_files, mode};
use signet_e2e::svid;
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::workload::{self, as_slices};
use signet_e2e::{Agent, AgentOptions, Bootstrap, Deployment, EntrySpec, Server, TRUST_DOMAIN};
use spiffe::X509Source;

/// Bound for an agent that must give up attestation.
const REJECTION_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn unknown_join_token_is_rejected() {
    let server = Server::start().await.unwrap();
    let token = "7d1f0c2e9b8a4d6f8e3c5a1b2d4f6e8a";

    let output = Agent::run_to_exit(&server, token, REJECTION_TIMEOUT)
        .await
        .unwrap();

    let printed = printed(&output);
    assert!(
        !output.status.success(),
        "agent attested with an unknown token:\n{printed}"
    );
    assert!(
        printed.contains("join token"),
        "the error does not mention the join token:\n{printed}"
    );
    assert!(
        !printed.contains(token),
        "the agent printed the join token:\n{printed}"
    );
    let server_log = server.log();
    let leaks: Vec<&str> = server_log
        .lines()
        .filter(|line| line.contains(token))
        .collect();
    assert!(
        leaks.is_empty(),
        "the server logged the join token:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test]
async fn reused_join_token_is_rejected() {
    let deployment = Deployment::start().await.unwrap();
    let token = &deployment.join_token;

    let output = Agent::run_to_exit(&deployment.server, token, REJECTION_TIMEOUT)
        .await
        .unwrap();

    let printed = printed(&output);
    assert!(
        !output.status.success(),
        "a second agent attested with a used token:\n{printed}"
    );
    assert!(
        printed.contains("join token"),
        "the error does not mention the join token:\n{printed}"
    );
    assert!(
        !printed.contains(token.as_str()),
        "the agent printed the join token:\n{printed}"
    );
}

#[tokio::test]
async fn insecure_bootstrap_attests_without_trust_bundle() {
    let server = Server::start().await.unwrap();
    let token = server.create_token().await.unwrap();
    let options = AgentOptions {
        bootstrap: Bootstrap::Insecure,
        ..AgentOptions::default()
    };
    let agent = Agent::start_with(&server, &token, options).await.unwrap();
    let workload_id = server.spiffe_id("/workload/insecure-bootstrap");
    let entry = EntrySpec::new(&workload_id, agent.spiffe_id())
        .selector(signet_e2e::current_uid_selector());
    server.create_entry(&entry).await.unwrap();

    let context =
        workload::fetch_x509_context_with(&agent.endpoint(), &workload_id, PROPAGATION_TIMEOUT)
            .await
            .unwrap();
    workload::check_served_svid(&context, &workload_id, TRUST_DOMAIN).unwrap();
}

#[tokio::test]
async fn token_with_spiffe_id_creates_node_alias() {
    let server = Server::start().await.unwrap();
    let node_id = server.spiffe_id("/node/e2e");
    let stdout = server
        .cli_ok(&["token", "generate", "--ttl", "600", "--spiffe-id", &node_id])
        .await
        .unwrap();
    let token = signet_e2e::cli::field(&stdout, "Token").unwrap();
    let workload_id = server.spiffe_id("/workload/under-alias");
    let entry = EntrySpec::new(&workload_id, &node_id).selector(signet_e2e::current_uid_selector());
    server.create_entry(&entry).await.unwrap();

    let agent = Agent::start(&server, &token).await.unwrap();

    let context =
        workload::fetch_x509_context_with(&agent.endpoint(), &workload_id, PROPAGATION_TIMEOUT)
            .await
            .unwrap();
    workload::check_served_svid(&context, &workload_id, TRUST_DOMAIN).unwrap();
    assert_eq!(
        workload::spiffe_ids(&context),
        vec![workload_id.clone()],
        "the node alias entry itself must not be served to workloads"
    );
}

#[tokio::test]
async fn agent_restart_keeps_serving_without_token() {
    let mut deployment = Deployment::start().await.unwrap();
    let endpoint = deployment.agent.endpoint();
    let before = deployment.fetch_x509_context().await.unwrap();
    let old_chain =
        workload::chain_der(workload::find_svid(&before, &deployment.workload_id).unwrap());

    deployment.agent.restart().await.unwrap();

    let after = deployment.fetch_x509_context().await.unwrap();
    workload::check_served_svid(&after, &deployment.workload_id, TRUST_DOMAIN).unwrap();
    let bundle = workload::bundle_der(&after, TRUST_DOMAIN).unwrap();
    svid::verify_chain(&as_slices(&old_chain), &as_slices(&bundle))
        .expect("an SVID served before the restart verifies against the bundle served after it");

    let new_id = deployment.server.spiffe_id("/workload/after-agent-restart");
    let entry = EntrySpec::new(&new_id, deployment.agent.spiffe_id())
        .selector(signet_e2e::current_uid_selector());
    deployment.server.create_entry(&entry).await.unwrap();
    workload::fetch_x509_context_with(&endpoint, &new_id, PROPAGATION_TIMEOUT)
        .await
        .unwrap();

    assert_no_token_in_logs(&deployment);
}

#[tokio::test]
async fn server_restart_keeps_ca_and_agent() {
    let mut deployment = Deployment::start().await.unwrap();
    let endpoint = deployment.agent.endpoint();
    let before = deployment.fetch_x509_context().await.unwrap();
    let old_chain =
        workload::chain_der(workload::find_svid(&before, &deployment.workload_id).unwrap());

    deployment.server.restart().await.unwrap();

    // An entry created after the restart reaches the workload only once the agent reconnected.
    let new_id = deployment
        .server
        .spiffe_id("/workload/after-server-restart");
    let entry = EntrySpec::new(&new_id, deployment.agent.spiffe_id())
        .selector(signet_e2e::current_uid_selector());
    deployment.server.create_entry(&entry).await.unwrap();
    let after = workload::fetch_x509_context_with(&endpoint, &new_id, PROPAGATION_TIMEOUT)
        .await
        .unwrap();

    workload::check_served_svid(&after, &new_id, TRUST_DOMAIN).unwrap();
    let bundle = workload::bundle_der(&after, TRUST_DOMAIN).unwrap();
    svid::verify_chain(&as_slices(&old_chain), &as_slices(&bundle))
        .expect("an SVID served before the restart verifies against the bundle served after it");
    assert_eq!(deployment.server.entry_count().await.unwrap(), 2);

    assert_no_token_in_logs(&deployment);
}

#[tokio::test]
async fn x509_source_recovers_after_agent_restart() {
    let mut deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let source = X509Source::builder()
        .endpoint(deployment.agent.endpoint())
        .build()
        .await
        .unwrap();
    let svid = source.svid().unwrap();
    assert_eq!(svid.spiffe_id().to_string(), deployment.workload_id);

    deployment.agent.restart().await.unwrap();
    let new_id = deployment.server.spiffe_id("/workload/seen-by-source");
    let entry = EntrySpec::new(&new_id, deployment.agent.spiffe_id())
        .selector(signet_e2e::current_uid_selector());
    deployment.server.create_entry(&entry).await.unwrap();

    wait::eventually(
        "the X509Source to learn the new entry",
        PROPAGATION_TIMEOUT,
        || async {
            let context = source.x509_context()?;
            anyhow::ensure!(
                workload::find_svid(&context, &new_id).is_some(),
                "the source contains {:?}",
                workload::spiffe_ids(&context)
            );
            Ok(())
        },
    )
    .await
    .unwrap();
    source.shutdown().await;
}

#[tokio::test]
async fn agent_key_files_are_private() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();

    let data_dir = deployment.agent.data_dir();
    let keys = key_files(&data_dir);
    assert!(
        !keys.is_empty(),
        "no key file found in {}",
        data_dir.display()
    );
    for key in keys {
        assert_eq!(mode(&key).unwrap(), 0o600, "{} mode", key.display());
    }
}

fn assert_no_token_in_logs(deployment: &Deployment) {
    let logs = deployment.logs();
    assert!(!logs.is_empty(), "the processes wrote no log at all");
    let leaks: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(&deployment.join_token))
        .take(5)
        .collect();
    assert!(
        leaks.is_empty(),
        "log lines contain the join token:\n{}",
        leaks.join("\n")
    );
}
