//! A child process whose output goes to a log file, printed when the test that owns it fails.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::wait::START_TIMEOUT;

/// Time a process gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Interval between readiness checks.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Number of log lines printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// A running child process. Killed on drop; its log tail is printed if the test is panicking.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log_path`.
    ///
    /// # Errors
    ///
    /// Fails when the log file cannot be opened or the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, log_path: &Path) -> anyhow::Result<Self> {
        let log = open_log(log_path)?;
        let log_for_stderr = log.try_clone().context("duplicating the log file handle")?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log_path: log_path.to_path_buf(),
        })
    }

    /// Polls `ready` until it succeeds, for at most 20 s.
    ///
    /// # Errors
    ///
    /// Fails with the log tail when the process exits first or the time runs out.
    pub async fn wait_ready<F, Fut>(&mut self, condition: &str, mut ready: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.try_exit()? {
                bail!(
                    "{} exited ({status}) before {condition}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            match ready().await {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() >= deadline => bail!(
                    "{} not ready after {START_TIMEOUT:?}: {condition}: {error:#}\n{}",
                    self.name,
                    self.log_tail()
                ),
                Err(_) => tokio::time::sleep(READY_POLL_INTERVAL).await,
            }
        }
    }

    /// Sends SIGTERM and waits for the exit, killing the process if it takes longer than 10 s.
    ///
    /// # Errors
    ///
    /// Fails when the process had to be killed or waiting failed.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        if let Some(pid) = self.child.id() {
            // The process may exit between the check above and the signal; ESRCH is fine then.
            let _ = signal::kill(Pid::from_raw(pid.cast_signed()), Signal::SIGTERM);
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(status.with_context(|| format!("waiting for {}", self.name))?),
            Err(_) => {
                self.child.start_kill().ok();
                bail!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.name,
                    self.log_tail()
                )
            }
        }
    }

    /// Sends SIGKILL and waits for the exit. As after a crash, the process gets no chance to
    /// finish its writes or remove its sockets.
    ///
    /// # Errors
    ///
    /// Fails when the signal cannot be sent or waiting for the exit fails.
    pub async fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        self.child
            .kill()
            .await
            .with_context(|| format!("sending SIGKILL to {}", self.name))?;
        self.child
            .wait()
            .await
            .with_context(|| format!("waiting for {}", self.name))
    }

    /// Returns the exit status if the process has exited.
    ///
    /// # Errors
    ///
    /// Fails when the status cannot be read.
    pub fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking whether {} exited", self.name))
    }

    /// Returns the name given at start, used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Returns the whole log written so far, or an empty string if it cannot be read.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Returns the last lines of the log, headed by the process name, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!(
            "--- last lines of {} log ({}) ---\n{}\n--- end of {} log ---",
            self.name,
            self.log_path.display(),
            lines[start..].join("\n"),
            self.name
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        self.child.start_kill().ok();
    }
}

fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log file {}", path.display()))
}
