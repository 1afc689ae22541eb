//! The calls of the scenario: who makes each, along which hop, with which credentials, and
//! the outcome it must have.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use http::Method;
use rustls::{ClientConfig, RootCertStore};
use signet_e2e::wait;
use signet_sdk::{AllowedPeers, WorkloadIdentity};
use spiffe::TrustDomain;
use tokio::process::Command;

use super::table::{Expected, Row};
use super::workloads::{GATEWAY_SVID_TTL, Programs};
use crate::client::{self, Call, Outcome};
use crate::{ORDERS_AUDIENCE, ORDERS_DNS_NAME, TRUST_DOMAIN, spiffe_id};

/// Bound on one client program, its wait for an SVID included.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(45);

/// Bound on the wait for nginx to present a rotated X509-SVID: the gateway's SVID lifetime,
/// plus room for a slow machine.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(GATEWAY_SVID_TTL.as_secs() + 20);

/// One attempted call.
#[derive(Debug)]
struct Attempt {
    actor: Actor,
    method: Method,
    path: &'static str,
    expected: Expected,
    /// Made only once nginx presents a rotated X509-SVID, which shows that the helper's SIGHUP
    /// made nginx load the new files.
    after_rotation: bool,
}

/// The program that makes a call, and its credentials.
#[derive(Debug)]
enum Actor {
    /// `billing-batch` with a JWT-SVID, through the gateway or straight to orders.
    BillingBatch { hop: Hop, token: Token },
    /// `inventory`, straight to orders with its X509-SVID.
    Inventory,
    /// This runner as `reports`: a valid X509-SVID of a workload the policy does not name.
    Reports,
    /// This runner without a client certificate, trusting the bundle.
    Anonymous,
}

/// The hop a billing-batch call takes.
#[derive(Clone, Copy, Debug)]
enum Hop {
    Direct,
    Gateway,
}

/// The JWT-SVID a billing-batch call sends.
#[derive(Clone, Copy, Debug)]
enum Token {
    /// One fetched from the Workload API for this audience.
    Fetched(&'static str),
    /// One minted by the server with a short TTL, expired by the time it is sent.
    Expired,
    /// None.
    Missing,
}

/// The addresses, programs and runner identity that the calls need.
#[derive(Debug)]
pub(super) struct Targets<'a> {
    /// nginx.
    pub gateway: SocketAddr,
    /// The orders service.
    pub orders: SocketAddr,
    /// The agent's Workload API endpoint (`unix:<path>`).
    pub endpoint: String,
    /// The executables.
    pub programs: &'a Programs,
    /// File with an expired JWT-SVID of billing-batch.
    pub expired_token: PathBuf,
    /// The runner's identity, `reports`.
    pub identity: &'a WorkloadIdentity,
}

/// Makes every call in order and returns one row each.
///
/// # Errors
///
/// When a call cannot be made at all: a program fails, or a TCP connection is refused.
pub(super) async fn make_all(targets: &Targets<'_>) -> anyhow::Result<Vec<Row>> {
    let first_certificate = gateway_certificate(targets).await?;
    let mut rows = Vec::new();
    for (index, attempt) in attempts().into_iter().enumerate() {
        if attempt.after_rotation {
            wait_for_rotation(targets, &first_certificate).await?;
        }
        let outcome = make(&attempt, targets).await.with_context(|| {
            format!("call {} ({:?}) could not be made", index + 1, attempt.actor)
        })?;
        rows.push(Row::new(
            index + 1,
            attempt.actor.name(),
            attempt.actor.hop(),
            format!("{} {}", attempt.method, attempt.path),
            attempt.credentials(),
            attempt.expected,
            outcome,
        ));
    }
    Ok(rows)
}

/// Returns the scenario's calls: the allowed ones, each attack, then an allowed call once nginx
/// has reloaded a rotated X509-SVID.
fn attempts() -> Vec<Attempt> {
    use Actor::{Anonymous, BillingBatch, Inventory, Reports};
    use Expected::{Status, TlsFailure};

    let gateway = |token| BillingBatch {
        hop: Hop::Gateway,
        token,
    };
    let order = "/orders/42";
    vec![
        attempt(
            gateway(Token::Fetched(ORDERS_AUDIENCE)),
            Method::GET,
            order,
            Status(200),
        ),
        attempt(Inventory, Method::GET, "/orders/42/items", Status(200)),
        attempt(
            gateway(Token::Fetched(ORDERS_AUDIENCE)),
            Method::DELETE,
            order,
            Status(403),
        ),
        attempt(Inventory, Method::GET, order, Status(403)),
        attempt(
            gateway(Token::Fetched("inventory")),
            Method::GET,
            order,
            Status(401),
        ),
        attempt(gateway(Token::Expired), Method::GET, order, Status(401)),
        attempt(gateway(Token::Missing), Method::GET, order, Status(401)),
        attempt(
            BillingBatch {
                hop: Hop::Direct,
                token: Token::Fetched(ORDERS_AUDIENCE),
            },
            Method::GET,
            order,
            Status(403),
        ),
        attempt(Reports, Method::GET, order, Status(403)),
        attempt(Anonymous, Method::GET, order, TlsFailure),
        Attempt {
            after_rotation: true,
            ..attempt(
                gateway(Token::Fetched(ORDERS_AUDIENCE)),
                Method::GET,
                order,
                Status(200),
            )
        },
    ]
}

fn attempt(actor: Actor, method: Method, path: &'static str, expected: Expected) -> Attempt {
    Attempt {
        actor,
        method,
        path,
        expected,
        after_rotation: false,
    }
}

/// Returns the DER of the X509-SVID that nginx presents to clients.
async fn gateway_certificate(targets: &Targets<'_>) -> anyhow::Result<Vec<u8>> {
    let servers = AllowedPeers::parse([spiffe_id("gateway")])?;
    let config = targets.identity.client_config(servers)?;
    client::server_certificate(Arc::new(config), targets.gateway).await
}

/// Waits until nginx presents another X509-SVID than `first`.
async fn wait_for_rotation(targets: &Targets<'_>, first: &[u8]) -> anyhow::Result<()> {
    wait::eventually(
        "nginx to present a rotated X509-SVID",
        ROTATION_TIMEOUT,
        || async {
            let current = gateway_certificate(targets).await?;
            ensure!(current != first, "nginx still presents its first X509-SVID");
            Ok(())
        },
    )
    .await
}

async fn make(attempt: &Attempt, targets: &Targets<'_>) -> anyhow::Result<Outcome> {
    let orders_id = spiffe_id("orders");
    match &attempt.actor {
        Actor::BillingBatch { hop, token } => {
            let (address, server_id) = match hop {
                Hop::Gateway => (targets.gateway, spiffe_id("gateway")),
                Hop::Direct => (targets.orders, orders_id),
            };
            let mut command = program(&targets.programs.billing_batch, targets, attempt, address);
            command.args(["--server-id", &server_id]);
            match token {
                Token::Fetched(audience) => command.args(["--audience", audience]),
                Token::Expired => command.arg("--token-file").arg(&targets.expired_token),
                Token::Missing => command.arg("--no-token"),
            };
            run_program(command).await
        }
        Actor::Inventory => {
            let mut command = program(
                &targets.programs.inventory,
                targets,
                attempt,
                targets.orders,
            );
            command.args(["--server-id", &orders_id]);
            run_program(command).await
        }
        Actor::Reports => {
            let servers = AllowedPeers::parse([&orders_id])?;
            let config = targets.identity.client_config(servers)?;
            client::send(Arc::new(config), &direct_call(attempt, targets)).await
        }
        Actor::Anonymous => {
            let config = without_certificate(targets.identity)?;
            client::send(Arc::new(config), &direct_call(attempt, targets)).await
        }
    }
}

/// Returns the command that runs a client `program` as its own workload, calling `address`.
fn program(
    program: &Path,
    targets: &Targets<'_>,
    attempt: &Attempt,
    address: SocketAddr,
) -> Command {
    let mut command = Command::new(program);
    command
        .env("SPIFFE_ENDPOINT_SOCKET", &targets.endpoint)
        .arg("--address")
        .arg(address.to_string())
        .arg(attempt.method.as_str())
        .arg(attempt.path)
        .kill_on_drop(true);
    command
}

async fn run_program(mut command: Command) -> anyhow::Result<Outcome> {
    let output = tokio::time::timeout(PROGRAM_TIMEOUT, command.output())
        .await
        .with_context(|| format!("no result within {PROGRAM_TIMEOUT:?}"))?
        .context("starting the program failed")?;
    if !output.status.success() {
        bail!(
            "the program failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_slice(&output.stdout).context("the program printed no outcome")
}

fn direct_call<'a>(attempt: &'a Attempt, targets: &Targets<'_>) -> Call<'a> {
    Call {
        address: targets.orders,
        server_name: ORDERS_DNS_NAME,
        method: attempt.method.clone(),
        path: attempt.path,
        token: None,
    }
}

/// Returns a client configuration that trusts the trust domain's bundle and checks the server's
/// DNS name, but has no certificate to present: what a client outside the mesh could build.
fn without_certificate(identity: &WorkloadIdentity) -> anyhow::Result<ClientConfig> {
    let trust_domain = TrustDomain::new(TRUST_DOMAIN)?;
    let bundle = identity
        .x509_source()
        .try_bundle_for_trust_domain(&trust_domain)
        .with_context(|| format!("no X.509 bundle for {trust_domain}"))?;
    let mut roots = RootCertStore::empty();
    for authority in bundle.authorities() {
        roots.add(authority.as_bytes().to_vec().into())?;
    }
    Ok(ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

// === impl Attempt ===

impl Attempt {
    fn credentials(&self) -> String {
        let credentials = self.actor.credentials();
        if self.after_rotation {
            format!("{credentials} (gateway SVID rotated)")
        } else {
            credentials
        }
    }
}

// === impl Actor ===

impl Actor {
    fn name(&self) -> &'static str {
        match self {
            Self::BillingBatch { .. } => "billing-batch",
            Self::Inventory => "inventory",
            Self::Reports => "reports",
            Self::Anonymous => "no identity",
        }
    }

    fn hop(&self) -> &'static str {
        match self {
            Self::BillingBatch {
                hop: Hop::Gateway, ..
            } => "nginx -> orders",
            Self::BillingBatch {
                hop: Hop::Direct, ..
            } => "orders (skips nginx)",
            Self::Inventory | Self::Reports => "orders",
            Self::Anonymous => "orders (skips nginx)",
        }
    }

    fn credentials(&self) -> String {
        match self {
            Self::BillingBatch {
                hop: Hop::Direct,
                token: Token::Fetched(audience),
            } => format!("own X509-SVID, JWT-SVID aud={audience}"),
            Self::BillingBatch { token, .. } => match token {
                Token::Fetched(audience) => format!("JWT-SVID aud={audience}"),
                Token::Expired => format!("expired JWT-SVID aud={ORDERS_AUDIENCE}"),
                Token::Missing => "none".to_owned(),
            },
            Self::Inventory => "X509-SVID".to_owned(),
            Self::Reports => "X509-SVID not in the policy".to_owned(),
            Self::Anonymous => "no client certificate".to_owned(),
        }
    }
}
