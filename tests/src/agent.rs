//! A `signet-agent` process in a temporary directory that every local user can reach, so
//! workloads running under another uid can connect to its Workload API socket.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;
use tokio::process::Command;

use crate::binaries;
use crate::process::Process;
use crate::server::Server;
use crate::wait;

/// How the agent learns to trust the server on its first attestation.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Bootstrap {
    /// Skip server verification on the first attestation (`--insecure-bootstrap`).
    Insecure,
    /// Verify the server against `--trust-bundle`, written from `bundle show --format pem`.
    #[default]
    TrustBundle,
}

/// How to start an agent.
#[derive(Clone, Debug, Default)]
pub struct AgentOptions {
    /// How the agent trusts the server at first.
    pub bootstrap: Bootstrap,
    /// Value of `--metrics-address`; no metrics endpoint when `None`.
    pub metrics_address: Option<String>,
    /// Value of `--health-address`; no health endpoint when `None`.
    pub health_address: Option<String>,
    /// Further `run` arguments.
    pub extra_args: Vec<String>,
}

/// A running agent with its data directory, socket and log in one temporary directory.
#[derive(Debug)]
pub struct Agent {
    options: AgentOptions,
    server_address: String,
    trust_domain: String,
    join_token: String,
    process: Option<Process>,
    // Declared last so the directory outlives the process during drop.
    dir: TempDir,
}

impl Agent {
    /// Starts an agent attesting to `server` with `join_token`, trusting the server's bundle.
    ///
    /// # Errors
    ///
    /// See [`Agent::start_with`].
    pub async fn start(server: &Server, join_token: &str) -> anyhow::Result<Self> {
        Self::start_with(server, join_token, AgentOptions::default()).await
    }

    /// Starts an agent and waits until its Workload API socket accepts connections.
    ///
    /// # Errors
    ///
    /// Fails with the agent's log tail when it exits or is not ready within 20 s.
    pub async fn start_with(
        server: &Server,
        join_token: &str,
        options: AgentOptions,
    ) -> anyhow::Result<Self> {
        let mut agent = Self::prepare(server, join_token, options).await?;
        agent.launch(true).await?;
        Ok(agent)
    }

    /// Runs an agent that is expected to fail, and returns its output once it exits.
    ///
    /// # Errors
    ///
    /// Fails when the agent is still running after `timeout` (it is killed then).
    pub async fn run_to_exit(
        server: &Server,
        join_token: &str,
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        Self::run_to_exit_with(server, join_token, AgentOptions::default(), timeout).await
    }

    /// Runs an agent started with `options` that is expected to fail, and returns its output
    /// once it exits.
    ///
    /// # Errors
    ///
    /// Fails when the agent is still running after `timeout` (it is killed then).
    pub async fn run_to_exit_with(
        server: &Server,
        join_token: &str,
        options: AgentOptions,
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let agent = Self::prepare(server, join_token, options).await?;
        let mut command = agent.command(true)?;
        command.kill_on_drop(true);
        tokio::time::timeout(timeout, command.output())
            .await
            .with_context(|| format!("signet-agent still running after {timeout:?}"))?
            .context("running signet-agent")
    }

    /// Stops the agent with SIGTERM, keeping its data directory.
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

    /// Kills the agent with SIGKILL and keeps its data directory, so that [`Agent::restart`] can
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

    /// Stops the agent and starts it again on the same data directory, without a join token.
    ///
    /// # Errors
    ///
    /// See [`Agent::stop`] and [`Agent::start_with`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch(false).await
    }

    /// Stops the agent and starts it again on the same data directory with `join_token`.
    ///
    /// # Errors
    ///
    /// See [`Agent::stop`] and [`Agent::start_with`].
    pub async fn restart_with_token(&mut self, join_token: &str) -> anyhow::Result<()> {
        self.stop().await?;
        join_token.clone_into(&mut self.join_token);
        self.launch(true).await
    }

    /// Waits until the agent exits on its own, and returns its exit status.
    ///
    /// # Errors
    ///
    /// Fails when the agent is not running or still runs after `timeout`.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let process = self.process.as_mut().context("the agent is not running")?;
        let status = wait::eventually("the agent to exit", timeout, || {
            let exited = process.try_exit();
            async move { exited?.context("still running") }
        })
        .await?;
        self.process = None;
        Ok(status)
    }

    /// Returns the SPIFFE ID the server gives this agent.
    pub fn spiffe_id(&self) -> String {
        format!(
            "spiffe://{}/spire/agent/join_token/{}",
            self.trust_domain, self.join_token
        )
    }

    /// Returns the Workload API socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("public").join("api.sock")
    }

    /// Returns the Workload API endpoint as clients take it, `unix:<path>`.
    pub fn endpoint(&self) -> String {
        format!("unix:{}", self.socket_path().display())
    }

    /// Returns the admin socket path: the default for the Workload API socket above.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("private").join("admin.sock")
    }

    /// Returns the data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Returns the log file path.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// Returns the whole log of every run of this agent so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs `signet-agent <args> --socket-path <socket>` and returns its output, whatever the
    /// exit code.
    ///
    /// # Errors
    ///
    /// Fails only when the CLI cannot be started.
    pub async fn cli<S: AsRef<str>>(&self, args: &[S]) -> anyhow::Result<Output> {
        let mut command = Command::new(binaries::path(binaries::AGENT)?);
        command
            .args(args.iter().map(AsRef::as_ref))
            .arg("--socket-path")
            .arg(self.socket_path());
        command
            .output()
            .await
            .context("running the signet-agent CLI")
    }

    /// Runs `signet-agent explain <args> --admin-socket <socket>` and returns its output,
    /// whatever the exit code.
    ///
    /// # Errors
    ///
    /// Fails only when the CLI cannot be started.
    pub async fn explain<S: AsRef<str>>(&self, args: &[S]) -> anyhow::Result<Output> {
        Command::new(binaries::path(binaries::AGENT)?)
            .arg("explain")
            .args(args.iter().map(AsRef::as_ref))
            .arg("--admin-socket")
            .arg(self.admin_socket())
            .output()
            .await
            .context("running signet-agent explain")
    }

    async fn prepare(
        server: &Server,
        join_token: &str,
        options: AgentOptions,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("signet-agent-")
            .tempdir()
            .context("creating the agent directory")?;
        // Other users must reach the socket below; the data directory is created by the agent.
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755))
            .context("opening the agent directory to other users")?;
        if options.bootstrap == Bootstrap::TrustBundle {
            let bundle = server.bundle_pem().await?;
            write_file(&dir.path().join("bundle.pem"), &bundle)?;
        }
        Ok(Self {
            options,
            server_address: server.address(),
            trust_domain: server.trust_domain().to_owned(),
            join_token: join_token.to_owned(),
            process: None,
            dir,
        })
    }

    fn command(&self, with_join_token: bool) -> anyhow::Result<Command> {
        let mut command = Command::new(binaries::path(binaries::AGENT)?);
        command
            .arg("run")
            .args(["--trust-domain", &self.trust_domain])
            .args(["--server-address", &self.server_address])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--socket-path")
            .arg(self.socket_path());
        match self.options.bootstrap {
            Bootstrap::Insecure => {
                command.arg("--insecure-bootstrap");
            }
            Bootstrap::TrustBundle => {
                command
                    .arg("--trust-bundle")
                    .arg(self.dir.path().join("bundle.pem"));
            }
        }
        if with_join_token {
            command.args(["--join-token", &self.join_token]);
        }
        if let Some(address) = &self.options.metrics_address {
            command.args(["--metrics-address", address]);
        }
        if let Some(address) = &self.options.health_address {
            command.args(["--health-address", address]);
        }
        command.args(&self.options.extra_args);
        Ok(command)
    }

    async fn launch(&mut self, with_join_token: bool) -> anyhow::Result<()> {
        let command = self.command(with_join_token)?;
        let mut process = Process::spawn(binaries::AGENT, command, &self.log_path())?;
        let socket = self.socket_path();
        process
            .wait_ready("Workload API socket accepts connections", || {
                let socket = socket.clone();
                async move { wait::unix_socket_accepts(&socket).await }
            })
            .await?;
        self.process = Some(process);
        Ok(())
    }
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}
