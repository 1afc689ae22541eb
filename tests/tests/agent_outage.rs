//! Server outages: the agent keeps serving its workloads' X509-SVIDs while the server is down,
//! also after its own restart, logs the outage once, and catches up when the server returns.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use signet_e2e::svid::SvidFacts;
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::workload;
use signet_e2e::{Agent, AgentOptions, Deployment, EntrySpec, Server, ServerOptions, TRUST_DOMAIN};

/// Workload X509-SVID lifetime, short so that an outage can outlast half of it.
const SHORT_SVID_TTL_SECS: u64 = 10;
const HALF_SVID_TTL_SECS: i64 = 5;

/// Bound for the agent to catch up after the server returns: its retry backoff after an outage
/// of a few seconds, plus room for a slow machine.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Time between two Workload API fetches during an outage.
const FETCH_INTERVAL: Duration = Duration::from_millis(500);

/// How long a workload waits for an identity from an agent that must not have one.
const NO_IDENTITY_WAIT: Duration = Duration::from_secs(3);

/// The agent's warning when the server becomes unreachable, and its info line on recovery.
const OUTAGE_WARNING: &str = "Server unreachable";
const RECOVERY_INFO: &str = "Server reachable again";

/// Log line the agent writes first on every start.
const START_LINE: &str = "Starting signet-agent";

/// Name of the stored workload cache in the agent's data directory.
const CACHE_FILE: &str = "workload_cache.json";

#[tokio::test]
async fn svid_served_through_long_outage() {
    let mut deployment = Deployment::start_with_ttl(Some(SHORT_SVID_TTL_SECS))
        .await
        .unwrap();
    let first = current_svid_when_served(&deployment).await.unwrap();
    // Stop the server right after a renewal, so the outage can outlast half the lifetime of
    // the agent's current SVID while that SVID stays valid.
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    workload::next_context_where(&mut stream, CATCH_UP_TIMEOUT, |context| {
        workload::check_served_svid(context, &deployment.workload_id, TRUST_DOMAIN)
            .is_ok_and(|served| served.serial != first.serial)
    })
    .await
    .unwrap();

    deployment.server.stop().await.unwrap();
    let outage_start = signet_e2e::unix_now();
    let last = current_svid(&deployment).await.unwrap();
    let half_life_passed = outage_start.max(last.not_before) + HALF_SVID_TTL_SECS + 1;
    let mut fetches = 0;
    while signet_e2e::unix_now() <= half_life_passed {
        let served = current_svid(&deployment).await.unwrap();
        let now = signet_e2e::unix_now();
        assert!(
            now < served.not_after,
            "at {now} the agent served an X509-SVID that expired at {}",
            served.not_after
        );
        fetches += 1;
        tokio::time::sleep(FETCH_INTERVAL).await;
    }
    assert!(fetches > 1, "only {fetches} fetches during the outage");

    deployment.server.restart().await.unwrap();
    let fresh = wait::eventually("a renewed X509-SVID", CATCH_UP_TIMEOUT, || async {
        let served = current_svid(&deployment).await?;
        anyhow::ensure!(
            served.not_after > last.not_after,
            "still the X509-SVID from before the outage: {served:?}"
        );
        Ok(served)
    })
    .await
    .unwrap();
    assert!(signet_e2e::unix_now() < fresh.not_after);

    let log = deployment.agent.log();
    assert_eq!(count(&log, OUTAGE_WARNING), 1, "{log}");
    wait_for_log(&deployment.agent, RECOVERY_INFO)
        .await
        .unwrap();
}

#[tokio::test]
async fn restarted_agent_serves_stored_svid() {
    let mut deployment = Deployment::start().await.unwrap();
    let before = current_svid_when_served(&deployment).await.unwrap();

    deployment.server.stop().await.unwrap();
    deployment.agent.restart().await.unwrap();

    let after = current_svid(&deployment).await.unwrap();
    assert_eq!(after.serial, before.serial, "{before:?} then {after:?}");
    assert!(signet_e2e::unix_now() < after.not_after);
    wait_for_log(&deployment.agent, OUTAGE_WARNING)
        .await
        .unwrap();

    // Keep serving while the agent retries, long enough for several retries with backoff.
    for _ in 0..10 {
        let served = current_svid(&deployment).await.unwrap();
        assert_eq!(served.serial, before.serial);
        tokio::time::sleep(FETCH_INTERVAL).await;
    }
    deployment.server.restart().await.unwrap();
    wait_for_log(&deployment.agent, RECOVERY_INFO)
        .await
        .unwrap();

    let log = deployment.agent.log();
    let last_run = last_run(&log);
    assert_eq!(count(last_run, OUTAGE_WARNING), 1, "{last_run}");
    assert_eq!(count(last_run, RECOVERY_INFO), 1, "{last_run}");
    let cache_file = deployment.agent.data_dir().join(CACHE_FILE);
    let mode = std::fs::metadata(&cache_file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "mode {mode:o} of {}",
        cache_file.display()
    );
}

#[tokio::test]
async fn unpersisted_agent_serves_nothing_after_restart() {
    let mut server = Server::start().await.unwrap();
    let token = server.create_token().await.unwrap();
    let workload_id = server.spiffe_id("/workload/unpersisted");
    let entry = EntrySpec::new(&workload_id, server.join_token_agent_id(&token))
        .selector(signet_e2e::current_uid_selector());
    server.create_entry(&entry).await.unwrap();
    let options = AgentOptions {
        extra_args: vec!["--persist-workload-svids".to_owned(), "false".to_owned()],
        ..AgentOptions::default()
    };
    let mut agent = Agent::start_with(&server, &token, options).await.unwrap();
    workload::fetch_x509_context_with(&agent.endpoint(), &workload_id, PROPAGATION_TIMEOUT)
        .await
        .unwrap();

    server.stop().await.unwrap();
    agent.restart().await.unwrap();
    wait_for_log(&agent, OUTAGE_WARNING).await.unwrap();

    let client = workload::connect(&agent.endpoint()).await.unwrap();
    let fetched = tokio::time::timeout(NO_IDENTITY_WAIT, client.fetch_x509_context()).await;
    assert!(
        !matches!(fetched, Ok(Ok(_))),
        "the agent served an identity without persistence: {fetched:?}"
    );
    assert!(!agent.data_dir().join(CACHE_FILE).exists());
}

#[tokio::test]
async fn expired_agent_svid_needs_new_token() {
    let options = ServerOptions {
        extra_args: vec![
            "--agent-svid-ttl".to_owned(),
            format!("{SHORT_SVID_TTL_SECS}s"),
        ],
        ..ServerOptions::default()
    };
    let mut deployment = Deployment::start_with(options, None).await.unwrap();
    let attested_at = signet_e2e::unix_now();
    deployment.agent.stop().await.unwrap();
    let old_agent_id = deployment.agent.spiffe_id();
    let expired_by = attested_at + 2 * HALF_SVID_TTL_SECS + 1;
    wait::eventually("the agent SVID to expire", CATCH_UP_TIMEOUT, || async {
        anyhow::ensure!(signet_e2e::unix_now() > expired_by, "not yet");
        Ok(())
    })
    .await
    .unwrap();

    let error = deployment.agent.restart().await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("exited"), "{message}");
    assert!(
        message.contains("signet-server token generate --spiffe-id"),
        "{message}"
    );
    assert!(message.contains("--join-token"), "{message}");

    // Follow the advice: a join token with a node alias, and an entry under that alias.
    let alias = deployment.server.spiffe_id("/node/outage");
    let output = deployment
        .server
        .cli_ok(&["token", "generate", "--spiffe-id", &alias])
        .await
        .unwrap();
    let token = output.trim().strip_prefix("Token: ").unwrap().to_owned();
    let workload_id = deployment.server.spiffe_id("/workload/under-alias");
    let entry = EntrySpec::new(&workload_id, &alias).selector(signet_e2e::current_uid_selector());
    deployment.server.create_entry(&entry).await.unwrap();
    deployment.agent.restart_with_token(&token).await.unwrap();

    assert_ne!(deployment.agent.spiffe_id(), old_agent_id);
    workload::fetch_x509_context_with(
        &deployment.agent.endpoint(),
        &workload_id,
        PROPAGATION_TIMEOUT,
    )
    .await
    .unwrap();
}

/// Fetches the workload's X509-SVID once it is served, waiting up to 20 s for the first sync.
async fn current_svid_when_served(deployment: &Deployment) -> anyhow::Result<SvidFacts> {
    let context = deployment.fetch_x509_context().await?;
    workload::check_served_svid(&context, &deployment.workload_id, TRUST_DOMAIN)
}

/// Fetches the workload's X509-SVID once and checks it against the served bundle.
async fn current_svid(deployment: &Deployment) -> anyhow::Result<SvidFacts> {
    let client = workload::connect(&deployment.agent.endpoint()).await?;
    let context = client.fetch_x509_context().await?;
    workload::check_served_svid(&context, &deployment.workload_id, TRUST_DOMAIN)
}

/// Waits until the agent's log contains `text`.
async fn wait_for_log(agent: &Agent, text: &str) -> anyhow::Result<()> {
    let condition = format!("the agent to log {text:?}");
    wait::eventually(&condition, PROPAGATION_TIMEOUT, || async {
        anyhow::ensure!(agent.log().contains(text), "not yet");
        Ok(())
    })
    .await
}

/// Returns the part of `log` written by the agent's last start.
fn last_run(log: &str) -> &str {
    log.rfind(START_LINE).map_or(log, |start| &log[start..])
}

fn count(log: &str, text: &str) -> usize {
    log.lines().filter(|line| line.contains(text)).count()
}
