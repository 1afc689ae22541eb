//! Drives a Workload API response stream from cache snapshots: the first message at once, then
//! one message per change that the caller can see.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use signet_core::selector::Selector;
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};
use tonic::Status;
use tracing::warn;

use super::delivery::Delivery;
use crate::cache::Snapshot;

/// A boxed server stream as tonic's generated trait expects it.
pub(super) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// An attested caller of the Workload API.
#[derive(Debug)]
pub(super) struct Caller {
    pub(super) pid: i32,
    pub(super) uid: u32,
    pub(super) selectors: Vec<Selector>,
}

/// The receivers a stream waits on.
#[derive(Debug)]
pub(super) struct Updates {
    /// Cache snapshots.
    pub(super) snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Becomes true when the server shuts down.
    pub(super) stopping: watch::Receiver<bool>,
}

enum Change {
    Snapshot,
    Stopping,
}

/// Opens a stream for `caller` whose messages `deliver` builds from each snapshot.
///
/// The first message is ready when this returns. Later messages go out only when they differ
/// from the previous one. The stream ends with `PermissionDenied` once the caller loses its last
/// identity, and with `Unavailable` when the server shuts down.
///
/// # Errors
///
/// `PermissionDenied` when the caller has no identity, `Unavailable` when nothing can be sent
/// within [`FIRST_MESSAGE_WAIT`] or the server shuts down first.
pub(super) async fn open<T, F>(
    mut updates: Updates,
    caller: Caller,
    not_ready: &'static str,
    deliver: F,
) -> Result<ResponseStream<T>, Status>
where
    T: Clone + PartialEq + Send + 'static,
    F: Fn(&Snapshot, &[Selector]) -> Delivery<T> + Send + 'static,
{
    let first = first_message(&mut updates, &caller, not_ready, &deliver).await?;
    Ok(Box::pin(async_stream::stream! {
        yield Ok(first.clone());
        let mut last = first;
        loop {
            if let Change::Stopping = next_change(&mut updates).await {
                yield Err(shutting_down());
                break;
            }
            let snapshot = Arc::clone(&updates.snapshots.borrow_and_update());
            match deliver(&snapshot, &caller.selectors) {
                Delivery::Denied => {
                    yield Err(deny(&caller, &snapshot));
                    break;
                }
                Delivery::Waiting => {}
                Delivery::Partial(message) | Delivery::Complete(message) => {
                    if message != last {
                        yield Ok(message.clone());
                        last = message;
                    }
                }
            }
        }
    }))
}

/// Waits until everything the caller is entitled to is ready, at most [`FIRST_MESSAGE_WAIT`],
/// then returns what is ready.
async fn first_message<T, F>(
    updates: &mut Updates,
    caller: &Caller,
    not_ready: &'static str,
    deliver: &F,
) -> Result<T, Status>
where
    F: Fn(&Snapshot, &[Selector]) -> Delivery<T>,
{
    let deadline = Instant::now() + FIRST_MESSAGE_WAIT;
    loop {
        let snapshot = Arc::clone(&updates.snapshots.borrow_and_update());
        let partial = match deliver(&snapshot, &caller.selectors) {
            Delivery::Denied => return Err(deny(caller, &snapshot)),
            Delivery::Complete(message) => return Ok(message),
            Delivery::Partial(message) => Some(message),
            Delivery::Waiting => None,
        };
        match timeout_at(deadline, next_change(updates)).await {
            Ok(Change::Snapshot) => {}
            Ok(Change::Stopping) => return Err(shutting_down()),
            Err(_elapsed) => return partial.ok_or_else(|| Status::unavailable(not_ready)),
        }
    }
}

async fn next_change(updates: &mut Updates) -> Change {
    tokio::select! {
        biased;
        _ = updates.stopping.wait_for(|stopping| *stopping) => Change::Stopping,
        changed = updates.snapshots.changed() => match changed {
            Ok(()) => Change::Snapshot,
            // The cache is gone, which only happens while the agent stops.
            Err(_) => Change::Stopping,
        },
    }
}

/// Logs why `caller` receives nothing and returns the `PermissionDenied` status for it.
pub(super) fn deny(caller: &Caller, snapshot: &Snapshot) -> Status {
    let selectors: Vec<String> = caller.selectors.iter().map(ToString::to_string).collect();
    warn!(
        pid = caller.pid,
        uid = caller.uid,
        selectors = ?selectors,
        entries = snapshot.identities.len(),
        "No identity issued"
    );
    Status::permission_denied(NO_IDENTITY_ISSUED)
}

fn shutting_down() -> Status {
    Status::unavailable("agent is shutting down")
}

/// The message SPIRE uses; clients such as rust-spiffe match on it.
const NO_IDENTITY_ISSUED: &str = "no identity issued";
/// How long a new stream waits for the agent to sync or for the caller's SVIDs to be signed.
const FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(5);
