//! An agent the server evicted or banned: it attests again with a new join token, or stops with
//! an error that names the next step.

use std::time::Duration;

use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::{Agent, Server};

/// Bound for an agent to notice the server's verdict and exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn evicted_agent_attests_again_with_new_join_token() {
    let server = Server::start().await.unwrap();
    let first_token = server.create_token().await.unwrap();
    let mut agent = Agent::start(&server, &first_token).await.unwrap();
    server
        .cli_ok(&["agent", "evict", "--spiffe-id", &agent.spiffe_id()])
        .await
        .unwrap();

    let second_token = server.create_token().await.unwrap();
    agent.restart_with_token(&second_token).await.unwrap();

    let new_id = agent.spiffe_id();
    wait::eventually("the agent to attest again", PROPAGATION_TIMEOUT, || {
        let server = &server;
        let new_id = new_id.clone();
        async move {
            server
                .cli_ok(&["agent", "show", "--spiffe-id", &new_id])
                .await
                .map(drop)
        }
    })
    .await
    .unwrap();
    wait::eventually("the agent to serve again", PROPAGATION_TIMEOUT, || {
        let agent = &agent;
        async move {
            let output = agent.cli(&["healthcheck"]).await?;
            anyhow::ensure!(output.status.success(), "healthcheck failed");
            Ok(())
        }
    })
    .await
    .unwrap();
    assert!(
        agent.log().contains("attesting again with the join token"),
        "{}",
        agent.log()
    );
}

#[tokio::test]
async fn evicted_agent_with_used_token_exits_with_advice() {
    let server = Server::start().await.unwrap();
    let token = server.create_token().await.unwrap();
    let mut agent = Agent::start(&server, &token).await.unwrap();

    server
        .cli_ok(&["agent", "evict", "--spiffe-id", &agent.spiffe_id()])
        .await
        .unwrap();

    let status = agent.wait_for_exit(EXIT_TIMEOUT).await.unwrap();
    assert!(!status.success());
    let log = agent.log();
    assert!(log.contains("the server has no record of agent"), "{log}");
    assert!(log.contains("join token rejected"), "{log}");
    assert!(
        !log.contains(&token),
        "the agent logged its join token:\n{log}"
    );
}

#[tokio::test]
async fn banned_agent_exits() {
    let server = Server::start().await.unwrap();
    let token = server.create_token().await.unwrap();
    let mut agent = Agent::start(&server, &token).await.unwrap();

    server
        .cli_ok(&["agent", "ban", "--spiffe-id", &agent.spiffe_id()])
        .await
        .unwrap();

    let status = agent.wait_for_exit(EXIT_TIMEOUT).await.unwrap();
    assert!(!status.success());
    let log = agent.log();
    assert!(log.contains("the server banned agent"), "{log}");
}

#[tokio::test]
async fn banned_agent_attests_again_with_new_join_token() {
    let server = Server::start().await.unwrap();
    let first_token = server.create_token().await.unwrap();
    let mut agent = Agent::start(&server, &first_token).await.unwrap();
    let banned_id = agent.spiffe_id();
    server
        .cli_ok(&["agent", "ban", "--spiffe-id", &banned_id])
        .await
        .unwrap();
    agent.wait_for_exit(EXIT_TIMEOUT).await.unwrap();

    // The data directory still contains the banned agent's SVID, which has not expired.
    let second_token = server.create_token().await.unwrap();
    agent.restart_with_token(&second_token).await.unwrap();

    let new_id = agent.spiffe_id();
    assert_ne!(new_id, banned_id);
    wait::eventually("the agent to attest again", PROPAGATION_TIMEOUT, || {
        let server = &server;
        let new_id = new_id.clone();
        async move {
            server
                .cli_ok(&["agent", "show", "--spiffe-id", &new_id])
                .await
                .map(drop)
        }
    })
    .await
    .unwrap();
    wait::eventually("the agent to serve again", PROPAGATION_TIMEOUT, || {
        let agent = &agent;
        async move {
            let output = agent.cli(&["healthcheck"]).await?;
            anyhow::ensure!(output.status.success(), "healthcheck failed");
            Ok(())
        }
    })
    .await
    .unwrap();
    assert!(
        agent.log().contains("attesting with the new join token"),
        "{}",
        agent.log()
    );
}
