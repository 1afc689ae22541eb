//! Health of both daemons: the HTTP probes `/live` and `/ready`, the gRPC health service on the
//! admin socket and the Workload API socket, and the `healthcheck` subcommands built on it.

use hyper::{Method, StatusCode};
use signet_e2e::binaries;
use signet_e2e::cli::printed;
use signet_e2e::http::{self, HttpReply, free_loopback_address};
use signet_e2e::python::{self, Script};
use signet_e2e::spire_api;
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::{Agent, AgentOptions, Server, ServerOptions};
use tokio::process::Command;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Waits until `GET <path>` on `address` returns `status`, and returns that reply.
async fn wait_for_status(
    address: &str,
    path: &str,
    status: StatusCode,
) -> anyhow::Result<HttpReply> {
    wait::eventually(
        &format!("GET {path} to return {status}"),
        PROPAGATION_TIMEOUT,
        || async {
            let reply = http::get(address, path).await?;
            anyhow::ensure!(reply.status == status, "{}: {}", reply.status, reply.body);
            Ok(reply)
        },
    )
    .await
}

async fn start_agent(server: &Server, health_address: &str) -> anyhow::Result<Agent> {
    let join_token = server.create_token().await?;
    let options = AgentOptions {
        health_address: Some(health_address.to_owned()),
        ..AgentOptions::default()
    };
    Agent::start_with(server, &join_token, options).await
}

#[tokio::test]
async fn server_probes_share_the_metrics_listener() {
    let address = free_loopback_address().unwrap();
    let _server = Server::start_with(ServerOptions {
        metrics_address: Some(address.clone()),
        health_address: Some(address.clone()),
        ..ServerOptions::default()
    })
    .await
    .unwrap();

    let live = http::get(&address, "/live").await.unwrap();
    assert_eq!(live.status, StatusCode::OK);
    wait_for_status(&address, "/ready", StatusCode::OK)
        .await
        .unwrap();
    let head = http::request(Method::HEAD, &address, "/ready")
        .await
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body, "");
    let metrics = http::get(&address, "/metrics").await.unwrap();
    assert_eq!(metrics.status, StatusCode::OK);
    let post = http::request(Method::POST, &address, "/ready")
        .await
        .unwrap();
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    let unknown = http::get(&address, "/healthz").await.unwrap();
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn server_healthcheck_follows_the_server() {
    let mut server = Server::start().await.unwrap();
    let checked = wait::eventually(
        "signet-server healthcheck to pass",
        PROPAGATION_TIMEOUT,
        || async {
            let output = server.cli(&["healthcheck", "--timeout", "5s"]).await?;
            anyhow::ensure!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(output)
        },
    )
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&checked.stdout).contains("healthy"));

    // Agents reach the same service on the agent API port, over TLS without a client certificate.
    let bundle = server.bundle_pem().await.unwrap();
    let channel = spire_api::connect_agent_api(&server.address(), &bundle)
        .await
        .unwrap();
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);

    server.stop().await.unwrap();
    let output = server
        .cli(&["healthcheck", "--timeout", "5s"])
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is the server running?"), "{stderr}");
}

#[tokio::test]
async fn agent_not_ready_until_synced() {
    let mut server = Server::start().await.unwrap();
    let address = free_loopback_address().unwrap();
    let mut agent = start_agent(&server, &address).await.unwrap();
    wait_for_status(&address, "/ready", StatusCode::OK)
        .await
        .unwrap();
    let output = agent.cli(&["healthcheck"]).await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Restarted with its stored SVID while the server is down, the agent is attested and
    // listening but cannot sync.
    server.stop().await.unwrap();
    agent.restart().await.unwrap();
    let not_ready = wait::eventually(
        "the agent to report no sync",
        PROPAGATION_TIMEOUT,
        || async {
            let reply = http::get(&address, "/ready").await?;
            anyhow::ensure!(
                reply.body.contains("not synced"),
                "{}: {}",
                reply.status,
                reply.body
            );
            Ok(reply)
        },
    )
    .await
    .unwrap();
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let live = http::get(&address, "/live").await.unwrap();
    assert_eq!(live.status, StatusCode::OK);
    let output = agent
        .cli(&["healthcheck", "--timeout", "5s"])
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not serving"), "{stderr}");

    server.restart().await.unwrap();
    wait_for_status(&address, "/ready", StatusCode::OK)
        .await
        .unwrap();
}

#[tokio::test]
async fn workload_api_health_needs_no_security_header() {
    let server = Server::start().await.unwrap();
    let address = free_loopback_address().unwrap();
    let agent = start_agent(&server, &address).await.unwrap();
    wait_for_status(&address, "/ready", StatusCode::OK)
        .await
        .unwrap();

    // tonic-health's client sends no `workload.spiffe.io` header.
    let endpoint =
        spiffe::transport::Endpoint::parse(&format!("unix://{}", agent.socket_path().display()))
            .unwrap();
    let channel = spiffe::transport::connect(&endpoint).await.unwrap();
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);

    let script = Script::load("raw_call.py").unwrap();
    let output = script
        .run(&[&agent.endpoint(), "FetchX509SVID", "--without-header"])
        .await
        .unwrap();
    let json = python::json_output(&output).unwrap();
    assert_eq!(json["code"], "INVALID_ARGUMENT", "{json}");

    // The test process has no registration entry, so it has no identity to present either.
    let output = agent.cli(&["healthcheck"]).await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn healthchecks_reject_the_other_daemons_socket() {
    let server = Server::start().await.unwrap();
    let address = free_loopback_address().unwrap();
    let agent = start_agent(&server, &address).await.unwrap();
    wait_for_status(&address, "/ready", StatusCode::OK)
        .await
        .unwrap();

    let agent_ok = agent.cli(&["healthcheck"]).await.unwrap();
    assert!(agent_ok.status.success(), "{}", printed(&agent_ok));
    assert_eq!(
        String::from_utf8_lossy(&agent_ok.stdout),
        "Agent is healthy.\n"
    );

    let agent_on_server = Command::new(binaries::path(binaries::AGENT).unwrap())
        .arg("healthcheck")
        .arg("--socket-path")
        .arg(server.admin_socket())
        .output()
        .await
        .unwrap();
    assert_eq!(
        agent_on_server.status.code(),
        Some(1),
        "{}",
        printed(&agent_on_server)
    );
    assert!(
        printed(&agent_on_server).contains("signet.agent.v1.Agent"),
        "{}",
        printed(&agent_on_server)
    );

    let server_on_agent = Command::new(binaries::path(binaries::SERVER).unwrap())
        .arg("healthcheck")
        .arg("--admin-socket")
        .arg(agent.socket_path())
        .output()
        .await
        .unwrap();
    assert_ne!(
        server_on_agent.status.code(),
        Some(0),
        "{}",
        printed(&server_on_agent)
    );
    assert!(
        printed(&server_on_agent).contains("signet.server.v1.Server"),
        "{}",
        printed(&server_on_agent)
    );
}
