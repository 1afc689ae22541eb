//! Rotation: the agent renews workload X509-SVIDs and its own agent SVID before they expire.

use std::time::Duration;

use signet_e2e::spire_api;
use signet_e2e::spire_api::agent::v1::ListAgentsRequest;
use signet_e2e::spire_api::agent::v1::agent_client::AgentClient;
use signet_e2e::spire_api::types::Agent as AgentRecord;
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::workload;
use signet_e2e::{Deployment, EntrySpec, ServerOptions, TRUST_DOMAIN};

/// Short lifetimes so rotation happens within the test: agents renew at half of them.
const SHORT_SVID_TTL_SECS: u64 = 10;

/// Shortest time between two X509-SVIDs of one entry that still counts as planned renewal: a
/// quarter of the TTL, where renewal at half the TTL would give five seconds.
const MIN_RENEWAL_GAP_SECS: i64 = 2;

/// Bound for a rotation: the SVID lifetime plus room for a slow machine.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(SHORT_SVID_TTL_SECS + 20);

#[tokio::test]
async fn workload_svid_rotated_before_expiry() {
    let deployment = Deployment::start_with_ttl(Some(SHORT_SVID_TTL_SECS))
        .await
        .unwrap();
    let first_context = deployment.fetch_x509_context().await.unwrap();
    let first =
        workload::check_served_svid(&first_context, &deployment.workload_id, TRUST_DOMAIN).unwrap();

    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    let rotated = workload::next_context_where(&mut stream, ROTATION_TIMEOUT, |context| {
        workload::check_served_svid(context, &deployment.workload_id, TRUST_DOMAIN)
            .is_ok_and(|facts| facts.serial != first.serial)
    })
    .await
    .unwrap();

    let second =
        workload::check_served_svid(&rotated, &deployment.workload_id, TRUST_DOMAIN).unwrap();
    assert!(
        second.not_after > first.not_after,
        "the new X509-SVID does not outlive the old one: {first:?} then {second:?}"
    );
    // Renewing at half the TTL leaves seconds between the two. Much less means the agent
    // re-signs over and over.
    let issued_apart = second.not_before - first.not_before;
    assert!(
        issued_apart >= MIN_RENEWAL_GAP_SECS,
        "the X509-SVID was replaced {issued_apart} s after issue: {first:?} then {second:?}"
    );
    assert!(
        signet_e2e::unix_now() < first.not_after,
        "the X509-SVID was replaced only after it expired at {}",
        first.not_after
    );
}

#[tokio::test]
async fn agent_keeps_working_after_its_svid_lifetime() {
    let options = ServerOptions {
        extra_args: vec![
            "--agent-svid-ttl".to_owned(),
            format!("{SHORT_SVID_TTL_SECS}s"),
        ],
        ..ServerOptions::default()
    };
    let deployment = Deployment::start_with(options, None).await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let first = attested_agent(&deployment).await.unwrap();

    // Wait past the first agent SVID's expiry: only a renewed SVID can reach the server now.
    wait::eventually(
        "the first agent SVID to expire",
        ROTATION_TIMEOUT,
        || async {
            anyhow::ensure!(
                signet_e2e::unix_now() > first.x509svid_expires_at,
                "not yet"
            );
            Ok(())
        },
    )
    .await
    .unwrap();

    let renewed = attested_agent(&deployment).await.unwrap();
    assert_ne!(
        renewed.x509svid_serial_number, first.x509svid_serial_number,
        "the server still records the first agent SVID"
    );
    assert!(renewed.x509svid_expires_at > signet_e2e::unix_now());

    let new_id = deployment.server.spiffe_id("/workload/after-renewal");
    let entry = EntrySpec::new(&new_id, deployment.agent.spiffe_id())
        .selector(signet_e2e::current_uid_selector());
    deployment.server.create_entry(&entry).await.unwrap();
    workload::fetch_x509_context_with(&deployment.agent.endpoint(), &new_id, PROPAGATION_TIMEOUT)
        .await
        .unwrap();
}

/// Returns the server's record of the deployment's only agent.
async fn attested_agent(deployment: &Deployment) -> anyhow::Result<AgentRecord> {
    let channel = spire_api::connect_admin(&deployment.server.admin_socket()).await?;
    let response = AgentClient::new(channel)
        .list_agents(ListAgentsRequest::default())
        .await?
        .into_inner();
    match response.agents.as_slice() {
        [agent] => Ok(agent.clone()),
        agents => anyhow::bail!("expected one attested agent, the server lists {agents:?}"),
    }
}
