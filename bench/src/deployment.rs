//! One `signet-server` and one `signet-agent` started in a temporary directory, the server's
//! agent API on a free loopback port.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use spiffe::{SpiffeId, TrustDomain};
use tokio::process::Command;
use tokio::time::Instant;

use crate::admin::AdminClient;
use crate::binaries::Binaries;
use crate::cpu::{CpuSeconds, process_cpu_time};
use crate::process::Process;
use crate::wait;

/// Trust domain of the benchmark deployment.
pub const TRUST_DOMAIN: &str = "example.org";
/// Time the server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A running server, and once [`Deployment::start_agent`] succeeded, a running agent attested
/// to it. Dropping it kills both processes.
#[derive(Debug)]
pub struct Deployment {
    binaries: Binaries,
    dir: PathBuf,
    trust_domain: TrustDomain,
    server_address: String,
    admin_socket: PathBuf,
    workload_socket: PathBuf,
    server: Process,
    agent: Option<Process>,
}

/// `signet-server token generate --output json`.
#[derive(Deserialize)]
struct JoinToken {
    value: String,
}

impl Deployment {
    /// Starts the server with its data, sockets and log in `dir`, and waits until both its
    /// admin socket and its agent API port accept connections.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot start, exits, or does not listen within
    /// [`wait::START_TIMEOUT`].
    pub async fn start_server(binaries: Binaries, dir: &Path) -> anyhow::Result<Self> {
        let trust_domain = TrustDomain::new(TRUST_DOMAIN)
            .with_context(|| format!("invalid trust domain {TRUST_DOMAIN}"))?;
        let server_address = free_loopback_address()?;
        let admin_socket = dir.join("admin.sock");
        let server = spawn_server(&binaries, dir, &server_address, &admin_socket)?;

        let mut deployment = Self {
            binaries,
            dir: dir.to_owned(),
            trust_domain,
            server_address,
            admin_socket,
            workload_socket: dir.join("workload.sock"),
            server,
            agent: None,
        };
        deployment.wait_for_server().await?;
        Ok(deployment)
    }

    /// Stops the server with SIGTERM and starts it again on the same data directory, address
    /// and admin socket. Returns the time from starting the process until its agent API port accepts
    /// connections and its admin API returns a CountAgents result.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be stopped or started, exits, or does not serve within
    /// [`wait::START_TIMEOUT`].
    pub async fn restart_server(&mut self) -> anyhow::Result<Duration> {
        self.server.terminate(STOP_GRACE).await?;
        let started = Instant::now();
        self.server = spawn_server(
            &self.binaries,
            &self.dir,
            &self.server_address,
            &self.admin_socket,
        )?;

        let server = &mut self.server;
        let (socket, address) = (&self.admin_socket, &self.server_address);
        wait::until_closely("the server to serve", wait::START_TIMEOUT, || {
            let running = server.check_running();
            async move {
                running?;
                wait::tcp_accepts(address).await?;
                AdminClient::connect(socket).await?.count_agents().await
            }
        })
        .await?;
        Ok(started.elapsed())
    }

    /// Creates a join token and starts the agent with it, trusting the server's current
    /// bundle, then waits until the Workload API socket accepts connections. Returns the
    /// agent's SPIFFE ID.
    ///
    /// # Errors
    ///
    /// Fails when the server CLI fails, or the agent cannot start, exits, or does not listen
    /// within [`wait::START_TIMEOUT`].
    pub async fn start_agent(&mut self) -> anyhow::Result<SpiffeId> {
        let token = self.generate_join_token().await?;
        let agent_id = signet_core::ids::join_token_agent_id(&self.trust_domain, &token)
            .context("the server generated a join token that cannot form an agent ID")?;
        let bundle = self.write_bundle().await?;

        let mut command = Command::new(&self.binaries.agent);
        command
            .arg("run")
            .args(["--trust-domain", TRUST_DOMAIN])
            .args(["--server-address", &self.server_address])
            .arg("--trust-bundle")
            .arg(&bundle)
            .arg("--data-dir")
            .arg(self.dir.join("agent"))
            .arg("--socket-path")
            .arg(&self.workload_socket)
            .env("SIGNET_AGENT_JOIN_TOKEN", &token);
        let agent = Process::spawn("signet-agent", command, &self.dir.join("agent.log"))?;
        let agent = self.agent.insert(agent);

        let socket = &self.workload_socket;
        wait::until("the Workload API socket", wait::START_TIMEOUT, || {
            let running = agent.check_running();
            async move {
                running?;
                wait::unix_socket_accepts(socket).await
            }
        })
        .await?;
        Ok(agent_id)
    }

    /// Returns the trust domain the server issues SPIFFE IDs in.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Returns `spiffe://<trust domain>/bench/<name>`, the SPIFFE ID of a benchmark entry.
    ///
    /// # Errors
    ///
    /// Fails when `name` does not form a valid SPIFFE ID path.
    pub fn workload_id(&self, name: &str) -> anyhow::Result<SpiffeId> {
        let text = format!("spiffe://{}/bench/{name}", self.trust_domain);
        signet_core::ids::parse_spiffe_id(&text)
            .with_context(|| format!("invalid SPIFFE ID {text}"))
    }

    /// Returns the path of the server's admin socket.
    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    /// Returns the `host:port` of the server's agent API.
    pub fn server_address(&self) -> &str {
        &self.server_address
    }

    /// Returns the process ID of the server.
    ///
    /// # Errors
    ///
    /// Fails when the server has exited and been reaped.
    pub fn server_pid(&self) -> anyhow::Result<u32> {
        self.server.pid()
    }

    /// Returns the process ID of the agent.
    ///
    /// # Errors
    ///
    /// Fails when the agent has not started or has been reaped.
    pub fn agent_pid(&self) -> anyhow::Result<u32> {
        self.agent
            .as_ref()
            .context("the agent has not started")?
            .pid()
    }

    /// Returns the X.509 authorities of the server's trust bundle, from
    /// `signet-server bundle show --format pem`.
    ///
    /// # Errors
    ///
    /// Fails when the CLI fails or prints no certificate.
    pub async fn trust_bundle(&self) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let pem = self.bundle_pem().await?;
        let authorities = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .context("`signet-server bundle show` printed an invalid PEM certificate")?;
        if authorities.is_empty() {
            bail!("`signet-server bundle show` printed no certificate");
        }
        Ok(authorities)
    }

    /// Returns the path of the agent's Workload API socket.
    pub fn workload_socket(&self) -> &Path {
        &self.workload_socket
    }

    /// Returns the CPU time the server, the agent and this process have used so far.
    ///
    /// # Errors
    ///
    /// Fails when the agent has not started or a CPU time cannot be read.
    pub fn cpu_seconds(&self) -> anyhow::Result<CpuSeconds> {
        let agent = self.agent.as_ref().context("the agent has not started")?;
        Ok(CpuSeconds {
            server: self.server.cpu_time()?.as_secs_f64(),
            agent: agent.cpu_time()?.as_secs_f64(),
            bench: process_cpu_time(std::process::id())?.as_secs_f64(),
        })
    }

    /// Stops the agent, then the server.
    ///
    /// # Errors
    ///
    /// Fails when a process cannot be stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(agent) = &mut self.agent {
            agent.stop().await?;
        }
        self.server.stop().await
    }

    async fn wait_for_server(&mut self) -> anyhow::Result<()> {
        let server = &mut self.server;
        let (socket, address) = (&self.admin_socket, &self.server_address);
        wait::until("the server's sockets", wait::START_TIMEOUT, || {
            let running = server.check_running();
            async move {
                running?;
                wait::unix_socket_accepts(socket).await?;
                wait::tcp_accepts(address).await
            }
        })
        .await
    }

    async fn generate_join_token(&self) -> anyhow::Result<String> {
        let output = self
            .server_cli(&["token", "generate", "--output", "json"])
            .await?;
        let token: JoinToken = serde_json::from_slice(&output)
            .context("`signet-server token generate --output json` printed no token")?;
        Ok(token.value)
    }

    async fn bundle_pem(&self) -> anyhow::Result<Vec<u8>> {
        self.server_cli(&["bundle", "show", "--format", "pem"])
            .await
    }

    async fn write_bundle(&self) -> anyhow::Result<PathBuf> {
        let pem = self.bundle_pem().await?;
        let path = self.dir.join("bundle.pem");
        tokio::fs::write(&path, pem)
            .await
            .with_context(|| format!("failed to write the trust bundle to {}", path.display()))?;
        Ok(path)
    }

    /// Runs an operator command of `signet-server` against the admin socket, returning stdout.
    async fn server_cli(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let output = Command::new(&self.binaries.server)
            .args(args)
            .arg("--admin-socket")
            .arg(&self.admin_socket)
            .output()
            .await
            .with_context(|| format!("failed to run signet-server {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "signet-server {} failed with {}: {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output.stdout)
    }
}

/// Starts `signet-server run` with its data in `dir`, serving the agent API on `address` and the
/// admin API on `admin_socket`, with its output appended to `dir/server.log`.
fn spawn_server(
    binaries: &Binaries,
    dir: &Path,
    address: &str,
    admin_socket: &Path,
) -> anyhow::Result<Process> {
    let mut command = Command::new(&binaries.server);
    command
        .arg("run")
        .args(["--trust-domain", TRUST_DOMAIN])
        .arg("--data-dir")
        .arg(dir.join("server"))
        .args(["--bind-address", address])
        .arg("--admin-socket")
        .arg(admin_socket);
    Process::spawn("signet-server", command, &dir.join("server.log"))
}

/// Returns `127.0.0.1:<port>` with a port the kernel just found free.
///
/// NOTE: the port is released before the server binds it, so another process could take it in
/// between. The server then fails to start, and the benchmark reports that.
fn free_loopback_address() -> anyhow::Result<String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("failed to find a free port on 127.0.0.1")?;
    let address = listener
        .local_addr()
        .context("failed to read the address of a loopback listener")?;
    Ok(address.to_string())
}
