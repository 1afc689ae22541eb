//! Actions after each update: a signal to the process named by a PID file, and a command.
//! Failures are logged and never stop the helper.

use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signet_core::config::ConfigError;
use tokio::process::Command;

use super::config::NotifyConfig;

/// Maximum time the command may run before it is killed, so it cannot hold up the next update.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Parses a signal name such as `SIGHUP`, `HUP` or `sighup`.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the value when it is not a known signal.
pub fn parse_signal(name: &str) -> Result<Signal, ConfigError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| ConfigError::Invalid {
        key: "renew_signal",
        value: name.to_owned(),
        reason: "expected a signal name such as SIGHUP or SIGUSR1".to_owned(),
    })
}

/// Parses the contents of a PID file: one positive process ID, blanks around it allowed.
///
/// # Errors
///
/// A message naming the contents when they are not a positive integer. Zero and negative values
/// are rejected because `kill` would then signal a process group or every process.
pub fn parse_pid(contents: &str) -> Result<Pid, String> {
    let text = contents.trim();
    match text.parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(Pid::from_raw(pid)),
        _ => Err(format!("{text:?} is not a positive process ID")),
    }
}

/// Sends the signal and runs the command that `notify` names, logging any failure at warn.
pub async fn notify(notify: &NotifyConfig) {
    if let Some((pid_file, signal)) = &notify.signal {
        signal_pid_file(pid_file, *signal);
    }
    if let Some((program, args)) = &notify.command {
        run_command(program, args, COMMAND_TIMEOUT).await;
    }
}

fn signal_pid_file(pid_file: &Path, signal: Signal) {
    let contents = match std::fs::read_to_string(pid_file) {
        Ok(contents) => contents,
        Err(error) => {
            tracing::warn!(pid_file = %pid_file.display(), %error, "Cannot read the PID file; no signal sent");
            return;
        }
    };
    let pid = match parse_pid(&contents) {
        Ok(pid) => pid,
        Err(error) => {
            tracing::warn!(pid_file = %pid_file.display(), %error, "Invalid PID file; no signal sent");
            return;
        }
    };
    match kill(pid, signal) {
        Ok(()) => tracing::info!(%pid, signal = signal.as_str(), "Signalled the process"),
        Err(error) => {
            tracing::warn!(%pid, signal = signal.as_str(), %error, "Failed to signal the process");
        }
    }
}

/// Runs `program` with `args`, waits at most `timeout`, and kills it when that runs out.
pub async fn run_command(program: &str, args: &[String], timeout: Duration) {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(program, %error, "Failed to start the command");
            return;
        }
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => tracing::info!(program, "The command succeeded"),
        Ok(Ok(status)) => tracing::warn!(program, %status, "The command failed"),
        Ok(Err(error)) => tracing::warn!(program, %error, "Failed to wait for the command"),
        Err(_) => {
            tracing::warn!(
                program,
                ?timeout,
                "The command did not finish in time; killing it"
            );
            if let Err(error) = child.kill().await {
                tracing::warn!(program, %error, "Failed to kill the command");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_parse_with_or_without_prefix() {
        assert_eq!(parse_signal("SIGHUP").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal(" SigTerm ").unwrap(), Signal::SIGTERM);
    }

    #[test]
    fn unknown_signal_is_rejected_by_name() {
        let error = parse_signal("SIGNOPE").unwrap_err();
        assert!(error.to_string().contains("SIGNOPE"), "{error}");
    }

    #[test]
    fn pid_file_contents_parse() {
        assert_eq!(parse_pid("1234\n").unwrap(), Pid::from_raw(1234));
        assert_eq!(parse_pid("  42 ").unwrap(), Pid::from_raw(42));
    }

    #[test]
    fn invalid_pids_are_rejected() {
        for contents in ["", "abc", "0", "-1", "12 34", "99999999999"] {
            assert!(parse_pid(contents).is_err(), "{contents:?} accepted");
        }
    }

    #[tokio::test]
    async fn command_runs_to_completion() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let args = vec![marker.display().to_string()];
        run_command("touch", &args, COMMAND_TIMEOUT).await;
        assert!(marker.exists());
    }

    #[tokio::test]
    async fn slow_command_is_stopped_at_the_timeout() {
        let started = std::time::Instant::now();
        run_command("sleep", &["30".to_owned()], Duration::from_millis(200)).await;
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_pid_file_only_warns() {
        signal_pid_file(Path::new("/nonexistent/signet.pid"), Signal::SIGHUP);
    }
}
