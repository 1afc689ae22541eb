//! A `signet-server` process in a temporary directory, and its operator CLI.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;
use tokio::process::Command;

use crate::binaries;
use crate::cli::{self, EntrySpec};
use crate::process::Process;
use crate::wait;

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Value of `--trust-domain`.
    pub trust_domain: String,
    /// Value of `--database`; the server's default (SQLite in the data directory) when `None`.
    pub database: Option<String>,
    /// Value of `--ca-ttl`, passed in whole seconds; the server's default when `None`.
    pub ca_ttl: Option<Duration>,
    /// Value of `--metrics-address`; no metrics endpoint when `None`.
    pub metrics_address: Option<String>,
    /// Value of `--health-address`; no health endpoint when `None`.
    pub health_address: Option<String>,
    /// Further `run` arguments.
    pub extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            trust_domain: crate::TRUST_DOMAIN.to_owned(),
            database: None,
            ca_ttl: None,
            metrics_address: None,
            health_address: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running server with its data directory, admin socket and log in one temporary directory.
#[derive(Debug)]
pub struct Server {
    options: ServerOptions,
    port: u16,
    process: Option<Process>,
    // Declared last so the directory outlives the process during drop.
    dir: TempDir,
}

impl Server {
    /// Starts a server with default options.
    ///
    /// # Errors
    ///
    /// See [`Server::start_with`].
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(ServerOptions::default()).await
    }

    /// Starts a server on a free loopback port and waits until both its admin socket and its
    /// agent API port accept connections.
    ///
    /// # Errors
    ///
    /// Fails with the server's log tail when it exits or is not ready within 20 s.
    pub async fn start_with(options: ServerOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("signet-server-")
            .tempdir()
            .context("creating the server directory")?;
        let mut server = Self {
            options,
            port: free_port()?,
            process: None,
            dir,
        };
        let mut attempt = 1;
        loop {
            match server.launch().await {
                Ok(()) => return Ok(server),
                // Another process may take the port between free_port() and the server's bind.
                Err(_) if attempt < START_ATTEMPTS && server.log().contains(ADDRESS_IN_USE) => {
                    attempt += 1;
                    server.port = free_port()?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Stops the server with SIGTERM, keeping its data directory.
    ///
    /// # Errors
    ///
    /// Fails when it does not exit within 10 s.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.stop().await?;
        }
        Ok(())
    }

    /// Kills the server with SIGKILL and keeps its data directory, so that [`Server::restart`] can
    /// start it again on that directory.
    ///
    /// # Errors
    ///
    /// Fails when the signal cannot be sent or waiting for the exit fails.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill().await?;
        }
        Ok(())
    }

    /// Stops the server and starts it again on the same data directory, port and socket.
    ///
    /// # Errors
    ///
    /// See [`Server::stop`] and [`Server::start_with`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch().await
    }

    /// Stops the server and starts it again on the same data directory and admin socket, but
    /// with the agent API on another port. Running agents keep dialing the old port, so they
    /// cannot sync while operators still reach the admin socket.
    ///
    /// # Errors
    ///
    /// See [`Server::stop`] and [`Server::start_with`].
    pub async fn restart_on_new_port(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let old_port = self.port;
        while self.port == old_port {
            self.port = free_port()?;
        }
        self.launch().await
    }

    /// Returns the agent API address, `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Returns the trust domain name.
    pub fn trust_domain(&self) -> &str {
        &self.options.trust_domain
    }

    /// Returns the admin socket path.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("private").join("api.sock")
    }

    /// Returns the data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Returns the log file path.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Returns the whole log of every run of this server so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Returns the SPIFFE ID the agent attested with `join_token` gets.
    pub fn join_token_agent_id(&self, join_token: &str) -> String {
        format!(
            "spiffe://{}/spire/agent/join_token/{join_token}",
            self.trust_domain()
        )
    }

    /// Returns `spiffe://<trust domain><path>`.
    pub fn spiffe_id(&self, path: &str) -> String {
        format!("spiffe://{}{path}", self.trust_domain())
    }

    /// Runs `signet-server <args> --admin-socket <socket>` and returns its output, whatever the
    /// exit code.
    ///
    /// # Errors
    ///
    /// Fails only when the CLI cannot be started.
    pub async fn cli<S: AsRef<str>>(&self, args: &[S]) -> anyhow::Result<Output> {
        let mut command = Command::new(binaries::path(binaries::SERVER)?);
        command
            .args(args.iter().map(AsRef::as_ref))
            .arg("--admin-socket")
            .arg(self.admin_socket());
        command
            .output()
            .await
            .context("running the signet-server CLI")
    }

    /// Runs a CLI command that must succeed and returns its stdout.
    ///
    /// # Errors
    ///
    /// Fails with the command's stderr when it exits non-zero.
    pub async fn cli_ok<S: AsRef<str>>(&self, args: &[S]) -> anyhow::Result<String> {
        let output = self.cli(args).await?;
        let command = args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ");
        cli::stdout_of_success(&format!("signet-server {command}"), &output)
    }

    /// Generates a join token with `token generate` and returns it.
    ///
    /// # Errors
    ///
    /// Fails when the command fails or prints no `Token:` line.
    pub async fn create_token(&self) -> anyhow::Result<String> {
        let stdout = self.cli_ok(&["token", "generate", "--ttl", "600"]).await?;
        cli::field(&stdout, "Token")
    }

    /// Creates a registration entry with `entry create` and returns its entry ID.
    ///
    /// # Errors
    ///
    /// Fails when the command fails or prints no `Entry ID` line.
    pub async fn create_entry(&self, entry: &EntrySpec) -> anyhow::Result<String> {
        let stdout = self.cli_ok(&entry.create_args()).await?;
        cli::field(&stdout, "Entry ID")
    }

    /// Deletes the registration entry `entry_id`.
    ///
    /// # Errors
    ///
    /// Fails when the command fails.
    pub async fn delete_entry(&self, entry_id: &str) -> anyhow::Result<()> {
        self.cli_ok(&["entry", "delete", "--entry-id", entry_id])
            .await?;
        Ok(())
    }

    /// Returns the number of registration entries from `entry count`.
    ///
    /// # Errors
    ///
    /// Fails when the command fails or prints no number.
    pub async fn entry_count(&self) -> anyhow::Result<u64> {
        let stdout = self.cli_ok(&["entry", "count"]).await?;
        cli::first_number(&stdout)
    }

    /// Returns the trust bundle as PEM from `bundle show --format pem`.
    ///
    /// # Errors
    ///
    /// Fails when the command fails.
    pub async fn bundle_pem(&self) -> anyhow::Result<String> {
        self.cli_ok(&["bundle", "show", "--format", "pem"]).await
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(binaries::path(binaries::SERVER)?);
        command
            .arg("run")
            .args(["--trust-domain", &self.options.trust_domain])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--bind-address", &self.address()])
            .arg("--admin-socket")
            .arg(self.admin_socket());
        if let Some(database) = &self.options.database {
            command.args(["--database", database]);
        }
        if let Some(ca_ttl) = &self.options.ca_ttl {
            command.args(["--ca-ttl", &format!("{}s", ca_ttl.as_secs())]);
        }
        if let Some(address) = &self.options.metrics_address {
            command.args(["--metrics-address", address]);
        }
        if let Some(address) = &self.options.health_address {
            command.args(["--health-address", address]);
        }
        command.args(&self.options.extra_args);

        let mut process = Process::spawn(binaries::SERVER, command, &self.log_path())?;
        let admin_socket = self.admin_socket();
        let address = self.address();
        process
            .wait_ready("admin socket and agent API accept connections", || {
                let (admin_socket, address) = (admin_socket.clone(), address.clone());
                async move {
                    wait::unix_socket_accepts(&admin_socket).await?;
                    wait::tcp_accepts(&address).await
                }
            })
            .await?;
        self.process = Some(process);
        Ok(())
    }
}

/// Number of ports tried before a server start fails because each was taken.
const START_ATTEMPTS: u32 = 3;

/// How the operating system words EADDRINUSE, as the server logs a failed bind.
const ADDRESS_IN_USE: &str = "Address already in use";

/// Returns a loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}
