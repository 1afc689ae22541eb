//! A child process of the benchmark, with its output in a log file.

use std::error::Error as StdError;
use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::cpu::process_cpu_time;

/// A running `signet-server` or `signet-agent`. Dropping it kills the process.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// Error of a process that exited while the benchmark needed it. Waiting longer cannot help.
#[derive(Debug)]
pub struct ProcessExited {
    name: &'static str,
    status: ExitStatus,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    ///
    /// # Errors
    ///
    /// Fails when the log file cannot be created or the process cannot start.
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("failed to create the log file {}", log.display()))?;
        let errors = output
            .try_clone()
            .with_context(|| format!("failed to open the log file {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {name}"))?;
        Ok(Self {
            name,
            child,
            log: log.to_owned(),
        })
    }

    /// Returns the process ID.
    ///
    /// # Errors
    ///
    /// Fails when the process has been reaped.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} is no longer running", self.name))
    }

    /// Returns the CPU time the process has used so far.
    ///
    /// # Errors
    ///
    /// Fails when the process has been reaped or its CPU time cannot be read.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        process_cpu_time(self.pid()?)
    }

    /// Succeeds while the process runs.
    ///
    /// # Errors
    ///
    /// Fails with [`ProcessExited`] when the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(ProcessExited {
                name: self.name,
                status,
                log: self.log.clone(),
            }
            .into()),
            Err(error) => bail!("failed to check whether {} runs: {error}", self.name),
        }
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit, as an operator's stop
    /// does, then kills it if it still runs.
    ///
    /// # Errors
    ///
    /// Fails when the signal cannot be sent or the process cannot be killed or reaped.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<()> {
        let pid = Pid::from_raw(
            i32::try_from(self.pid()?).context("the process ID does not fit a pid_t")?,
        );
        kill(pid, Signal::SIGTERM)
            .with_context(|| format!("failed to send SIGTERM to {}", self.name))?;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status
                .map(drop)
                .with_context(|| format!("failed to wait for {} to exit", self.name)),
            Err(_) => self.stop().await,
        }
    }

    /// Kills the process and waits for it to exit.
    ///
    /// # Errors
    ///
    /// Fails when the process cannot be killed or reaped.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("failed to stop {}", self.name))
    }
}

impl fmt::Display for ProcessExited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} exited with {}, and its output is in {}",
            self.name,
            self.status,
            self.log.display()
        )
    }
}

impl StdError for ProcessExited {}
