//! A closed-loop load generator: a fixed number of calls in flight until every call is done,
//! with the latency of each call.

use std::future::Future;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::time::Instant;

/// Latencies of the calls of one run, and the run's wall-clock time.
#[derive(Debug)]
pub struct LoadRun {
    /// Latency of each call in completion order, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Time from the first call's start to the last call's end.
    pub elapsed: Duration,
}

/// Calls `call` once per item of `items`, with up to `concurrency` calls in flight.
///
/// # Errors
///
/// The first error of a call; the calls still in flight are dropped.
pub async fn run<T, F, Fut>(items: Vec<T>, concurrency: usize, call: F) -> anyhow::Result<LoadRun>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let latencies_ms = futures::stream::iter(items)
        .map(|item| {
            let call = call(item);
            async move {
                let before = Instant::now();
                call.await?;
                Ok::<_, anyhow::Error>(milliseconds(before.elapsed()))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(LoadRun {
        latencies_ms,
        elapsed: started.elapsed(),
    })
}

/// Returns `duration` in milliseconds.
pub fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
