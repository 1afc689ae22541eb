//! Bounded waits on observable conditions. Nothing here sleeps for a fixed time to let
//! something happen. Each wait retries a check with growing pauses until the check passes or
//! the bound is reached.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use crate::process::ProcessExited;

/// Bound for a process to start accepting connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after the first failed check, doubled after each further failure.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Maximum pause between two checks.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Runs `check` until it returns `Ok`, and returns its value.
///
/// # Errors
///
/// Fails at once when `check` fails with [`ProcessExited`]. Otherwise fails once `timeout` has
/// passed, with the last error of `check` and `condition` in the message.
pub async fn until<T, F, Fut>(condition: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let error = match check().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is::<ProcessExited>() => return Err(error),
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {condition}: {error:#}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Succeeds when a TCP connection to `address` is accepted.
///
/// # Errors
///
/// The connection error.
pub async fn tcp_accepts(address: &str) -> anyhow::Result<()> {
    TcpStream::connect(address).await?;
    Ok(())
}

/// Succeeds when a connection to the Unix socket at `path` is accepted.
///
/// # Errors
///
/// The connection error.
pub async fn unix_socket_accepts(path: &Path) -> anyhow::Result<()> {
    UnixStream::connect(path).await?;
    Ok(())
}
