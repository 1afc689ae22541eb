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
/// Pause between two checks of [`until_closely`].
const CLOSE_PAUSE: Duration = Duration::from_millis(1);

/// Runs `check` until it returns `Ok`, and returns its value.
///
/// # Errors
///
/// Fails at once when `check` fails with [`ProcessExited`]. Otherwise fails once `timeout` has
/// passed, with the last error of `check` and `condition` in the message.
pub async fn until<T, F, Fut>(condition: &str, timeout: Duration, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    retry(condition, timeout, (FIRST_PAUSE, MAX_PAUSE), check).await
}

/// Runs `check` every [`CLOSE_PAUSE`] until it returns `Ok`, for a start time measured to the
/// millisecond rather than to the growing pauses of [`until`].
///
/// # Errors
///
/// As for [`until`].
pub async fn until_closely<T, F, Fut>(
    condition: &str,
    timeout: Duration,
    check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    retry(condition, timeout, (CLOSE_PAUSE, CLOSE_PAUSE), check).await
}

/// Runs `check` until it succeeds, pausing `pauses.0` after the first failure and doubling the
/// pause up to `pauses.1`.
async fn retry<T, F, Fut>(
    condition: &str,
    timeout: Duration,
    pauses: (Duration, Duration),
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    let (mut pause, max_pause) = pauses;
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
        pause = (pause * 2).min(max_pause);
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
