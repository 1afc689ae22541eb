//! The runner: starts a Signet server and agent, registers the workloads, starts orders and
//! the nginx gateway, makes every call and reports what happened.

mod calls;
pub mod nginx;
pub mod table;
mod workloads;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use signet_e2e::process::Process;
use signet_e2e::wait::{self, START_TIMEOUT};
use signet_e2e::{Agent, Server, unix_now};
use signet_sdk::WorkloadIdentity;
use spiffe::JwtSvid;
use tokio::process::Command;

use self::calls::Targets;
use self::nginx::Gateway;
use self::table::Row;
use self::workloads::Programs;
use crate::{ORDERS_AUDIENCE, spiffe_id};

/// The policy file of the orders service.
const ORDERS_POLICY: &str = include_str!("../../policy/orders.toml");

/// Lifetime of the JWT-SVID that the scenario lets expire before sending it.
const EXPIRED_TOKEN_TTL: Duration = Duration::from_secs(1);

/// Runs the whole scenario in a temporary directory and returns one row per call. Every
/// process it starts is stopped before it returns.
///
/// # Errors
///
/// When a process cannot be started or a call cannot be made at all. A call with an
/// unexpected outcome is no error, and its row shows it.
pub async fn run() -> anyhow::Result<Vec<Row>> {
    let programs = Programs::locate()?;
    let dir = tempfile::Builder::new()
        .prefix("zero-trust-gateway-")
        .tempdir()
        .context("creating the scenario directory failed")?;

    let server = Server::start().await?;
    let join_token = server.create_token().await?;
    workloads::register(&server, &server.join_token_agent_id(&join_token), &programs).await?;
    let expired_token = dir.path().join("expired.token");
    mint_short_lived_token(&server, &expired_token).await?;
    let agent = Agent::start(&server, &join_token).await?;

    let orders = free_address()?;
    let mut orders_process = start_orders(&programs, &agent, dir.path(), orders).await?;
    let mut gateway = Gateway::start(
        &programs.nginx,
        &programs.signet_agent,
        &agent,
        dir.path(),
        free_address()?,
        orders,
    )
    .await?;

    let rows = async {
        let identity = WorkloadIdentity::builder()
            .socket_path(agent.socket_path())
            .initial_sync_timeout(START_TIMEOUT)
            .build()
            .await
            .context("getting the runner's own X509-SVID (reports) failed")?;
        wait_until_expired(&expired_token).await?;
        let targets = Targets {
            gateway: gateway.address(),
            orders,
            endpoint: agent.endpoint(),
            programs: &programs,
            expired_token: expired_token.clone(),
            identity: &identity,
        };
        calls::make_all(&targets).await
    }
    .await;

    // nginx must get SIGTERM whatever happened, or its workers would outlive the runner.
    let gateway_stopped = gateway.stop().await;
    orders_process.stop().await?;
    gateway_stopped?;
    rows
}

/// Starts the orders service with the example's policy, and waits until it listens.
async fn start_orders(
    programs: &Programs,
    agent: &Agent,
    dir: &Path,
    address: SocketAddr,
) -> anyhow::Result<Process> {
    let policy = dir.join("orders.toml");
    std::fs::write(&policy, ORDERS_POLICY).context("writing the orders policy failed")?;
    let mut command = Command::new(&programs.orders);
    command
        .env("SPIFFE_ENDPOINT_SOCKET", agent.endpoint())
        .arg("--listen")
        .arg(address.to_string())
        .arg("--policy")
        .arg(&policy);
    let mut process = Process::spawn("orders", command, &dir.join("orders.log"))?;
    nginx::wait_accepting(&mut process, address).await?;
    Ok(process)
}

/// Has the server mint a JWT-SVID of billing-batch for the orders audience that expires in a
/// second, and writes it to `path`.
async fn mint_short_lived_token(server: &Server, path: &Path) -> anyhow::Result<()> {
    server
        .cli_ok(&[
            "jwt".to_owned(),
            "mint".to_owned(),
            "--spiffe-id".to_owned(),
            spiffe_id("billing-batch"),
            "--audience".to_owned(),
            ORDERS_AUDIENCE.to_owned(),
            "--ttl".to_owned(),
            format!("{}s", EXPIRED_TOKEN_TTL.as_secs()),
            "--write".to_owned(),
            path.display().to_string(),
        ])
        .await
        .context("minting the short-lived JWT-SVID failed")?;
    Ok(())
}

/// Waits, within a bound, until the token in `path` is past its `exp`.
async fn wait_until_expired(path: &Path) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} failed", path.display()))?;
    let expiry = JwtSvid::parse_insecure(token.trim())
        .context("the minted JWT-SVID does not parse")?
        .claims()
        .exp();
    wait::eventually("the minted JWT-SVID to expire", START_TIMEOUT, || async {
        ensure!(unix_now() > expiry, "it expires at {expiry}");
        Ok(())
    })
    .await
}

/// Returns a loopback address whose port was free a moment ago.
fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?)
}
