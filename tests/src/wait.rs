//! Bounded waiting: poll a condition until it is true or a deadline passes. Tests never sleep for
//! a fixed time to let something happen.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

/// Bound for a process to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound for a change (entry created or deleted, restart) to reach a workload.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(20);

const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(20);
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Calls `attempt` until it returns `Ok`, and returns that value. Waits between attempts with
/// a growing interval.
///
/// # Errors
///
/// Fails after `timeout` with the last error of `attempt`.
pub async fn eventually<T, F, Fut>(
    condition: &str,
    timeout: Duration,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = FIRST_POLL_INTERVAL;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {condition}: {error:#}");
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(MAX_POLL_INTERVAL);
    }
}

/// Returns `Ok` once a TCP connection to `address` succeeds.
///
/// # Errors
///
/// Fails when the connection is refused.
pub async fn tcp_accepts(address: &str) -> anyhow::Result<()> {
    TcpStream::connect(address).await?;
    Ok(())
}

/// Returns `Ok` once a connection to the Unix socket at `path` succeeds.
///
/// # Errors
///
/// Fails when the socket is missing or refuses the connection.
pub async fn unix_socket_accepts(path: &Path) -> anyhow::Result<()> {
    UnixStream::connect(path).await?;
    Ok(())
}
