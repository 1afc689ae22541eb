//! Process plumbing both daemons share: logging set-up, exit codes and shutdown signals.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Environment variable with the tracing filter, for example `info` or `signet_agent=debug`.
pub const LOG_FILTER_ENV: &str = "SIGNET_LOG";

/// Environment variable with the log format: `plain` (default) or `json`.
pub const LOG_FORMAT_ENV: &str = "SIGNET_LOG_FORMAT";

/// Process exit code for an invalid configuration or command line (`EX_USAGE` of sysexits.h).
pub const EXIT_INVALID_CONFIG: u8 = 64;

/// Exit code of the `explain` commands when they fail to explain, for example because the daemon
/// is unreachable or the PID does not exist. As with grep, 0 and 1 mean that an identity is or
/// is not issued.
pub const EXIT_EXPLAIN_FAILED: u8 = 2;

/// Prints clap's help, version or usage error and returns the exit code: 0 for help and version,
/// [`EXIT_INVALID_CONFIG`] for a usage error, in both daemons and all their subcommands.
pub fn usage_exit(error: &clap::Error) -> ExitCode {
    // Printing can fail only if stdout or stderr is closed, and then there is nowhere to report it.
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(EXIT_INVALID_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}

/// Installs the global tracing subscriber, writing to stderr.
///
/// The filter comes from [`LOG_FILTER_ENV`], or `default_filter` when it is unset or invalid (with
/// a warning); the format from [`LOG_FORMAT_ENV`]. Colours are used only on a terminal, so log
/// files stay plain text.
pub fn init_tracing(default_filter: &str) {
    let filter = std::env::var(LOG_FILTER_ENV).unwrap_or_else(|_| default_filter.to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!(
            "warning: invalid {LOG_FILTER_ENV} {filter:?} ({error}); using {default_filter:?}"
        );
        EnvFilter::new(default_filter)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match std::env::var(LOG_FORMAT_ENV).as_deref() {
        Ok("json") => builder.json().init(),
        Ok("plain") | Err(_) => builder.init(),
        Ok(other) => {
            builder.init();
            tracing::warn!(value = other, "Unknown {LOG_FORMAT_ENV}; use plain or json");
        }
    }
}

/// Completes on SIGTERM or SIGINT.
///
/// If the handlers cannot be installed, it logs the error and never completes, so the daemon keeps
/// running until it is killed.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};

    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    let (mut terminate, mut interrupt) = match handlers {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "Failed to install signal handlers");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "Shutting down"),
        _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "Shutting down"),
    }
}
