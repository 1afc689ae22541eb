//! Actions after each update: a signal to the process named by a PID file, and a command.
//! Failures are returned. One-shot mode exits with them, and daemon mode logs them and goes on.

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

/// Sends the signal and runs the command that `notify` names. The command runs even when the
/// signal fails.
///
/// # Errors
///
/// A message naming the signal, the command or both when they failed.
pub async fn notify(notify: &NotifyConfig) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    if let Some((pid_file, signal)) = &notify.signal
        && let Err(error) = signal_pid_file(pid_file, *signal)
    {
        failures.push(error);
    }
    if let Some((program, args)) = &notify.command
        && let Err(error) = run_command(program, args, COMMAND_TIMEOUT).await
    {
        failures.push(error);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(failures.join("; ")))
    }
}

fn signal_pid_file(pid_file: &Path, signal: Signal) -> Result<(), String> {
    let not_sent = |reason: String| {
        format!(
            "{} not sent to the process in {}: {reason}",
            signal.as_str(),
            pid_file.display()
        )
    };
    let contents = std::fs::read_to_string(pid_file)
        .map_err(|error| not_sent(format!("cannot read the PID file: {error}")))?;
    let pid =
        parse_pid(&contents).map_err(|error| not_sent(format!("invalid PID file: {error}")))?;
    kill(pid, signal).map_err(|error| not_sent(format!("kill({pid}) failed: {error}")))?;
    tracing::info!(%pid, signal = signal.as_str(), "Signalled the process");
    Ok(())
}

/// Runs `program` with `args`, waits at most `timeout`, and kills it when that runs out.
///
/// # Errors
///
/// A message naming `program` when it cannot start, exits unsuccessfully or times out.
pub async fn run_command(program: &str, args: &[String], timeout: Duration) -> Result<(), String> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| format!("failed to start the command {program}: {error}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::info!(program, "The command succeeded");
            Ok(())
        }
        Ok(Ok(status)) => Err(format!("the command {program} failed: {status}")),
        Ok(Err(error)) => Err(format!("failed to wait for the command {program}: {error}")),
        Err(_) => {
            if let Err(error) = child.kill().await {
                tracing::warn!(program, %error, "Failed to kill the command");
            }
            Err(format!(
                "the command {program} did not finish within {timeout:?} and was killed"
            ))
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
        run_command("touch", &args, COMMAND_TIMEOUT).await.unwrap();
        assert!(marker.exists());
    }

    #[tokio::test]
    async fn slow_command_is_stopped_at_the_timeout() {
        let started = std::time::Instant::now();
        let error = run_command("sleep", &["30".to_owned()], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(error.contains("sleep"), "{error}");
    }

    #[tokio::test]
    async fn failed_command_is_named() {
        let error = run_command("false", &[], COMMAND_TIMEOUT)
            .await
            .unwrap_err();
        assert!(error.contains("the command false failed"), "{error}");
    }

    #[test]
    fn missing_pid_file_names_signal_and_file() {
        let error =
            signal_pid_file(Path::new("/nonexistent/signet.pid"), Signal::SIGHUP).unwrap_err();
        assert!(error.contains("SIGHUP"), "{error}");
        assert!(error.contains("/nonexistent/signet.pid"), "{error}");
    }
}
