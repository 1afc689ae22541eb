//! Steady mode, the one the latency goal is judged on: every connection keeps an open
//! FetchX509SVID stream, as a real workload does, and calls are sent open loop at a fixed rate,
//! one connection after another.
//!
//! Open loop means that each call has a scheduled send time that does not depend on earlier
//! calls, and its latency counts from that time. A stall in the agent, or in this process, then
//! delays every call scheduled during it, instead of delaying the next sends and hiding itself.
//!
//! tokio's timers have a resolution of 1 ms, coarser than the latencies measured, so a blocking
//! thread sleeps until each send time and hands the call to the runtime.

use std::time::Duration;

use anyhow::Context;
use futures::future::try_join_all;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{CallKind, Timed};
use crate::load::milliseconds;
use crate::workload_client::WorkloadClient;

/// The FetchX509SVID streams the connections hold open while the calls run. Dropping it closes
/// them.
#[derive(Debug)]
pub(super) struct HeldStreams {
    readers: Vec<JoinHandle<()>>,
}

/// Scheduled send time, actual send time and response time of one call.
struct Sample {
    scheduled: Instant,
    sent: Instant,
    received: Instant,
}

/// Opens one FetchX509SVID stream per client and keeps reading each one, as a workload waiting
/// for rotated SVIDs does.
///
/// # Errors
///
/// Fails when a stream cannot be opened or has no first message.
pub(super) async fn hold_streams(clients: &[WorkloadClient]) -> anyhow::Result<HeldStreams> {
    let streams = try_join_all(clients.iter().map(|client| {
        let mut client = client.clone();
        async move { client.open_x509_stream().await }
    }))
    .await
    .context("failed to open the FetchX509SVID streams to hold")?;

    let readers = streams
        .into_iter()
        .map(|(_, mut stream)| {
            tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} })
        })
        .collect();
    Ok(HeldStreams { readers })
}

/// Sends `calls` calls of `kind`, `rate` per second, to the clients in turn, and times each from
/// its scheduled send time.
///
/// # Errors
///
/// The first failed call, after every call was sent.
pub(super) async fn run(
    clients: &[WorkloadClient],
    calls: u32,
    rate: u32,
    kind: CallKind,
) -> anyhow::Result<Timed> {
    let interval = Duration::from_secs(1) / rate.max(1);
    let start = Instant::now() + START_DELAY;
    let clients = clients.to_vec();
    let runtime = Handle::current();
    let pending = tokio::task::spawn_blocking(move || {
        send_on_schedule(&runtime, &clients, calls, start, interval, kind)
    })
    .await
    .context("the thread sending the calls failed")?;

    let mut latencies_ms = Vec::with_capacity(pending.len());
    let mut send_lags_ms = Vec::with_capacity(pending.len());
    let mut responses = Vec::with_capacity(pending.len());
    for call in pending {
        let sample = call.await.context("a call task failed")??;
        latencies_ms.push(milliseconds(sample.received - sample.scheduled));
        send_lags_ms.push(milliseconds(sample.sent - sample.scheduled));
        responses.push(sample.received);
    }
    Ok(Timed {
        achieved_per_second: response_rate(&responses),
        latencies_ms,
        send_lags_ms: Some(send_lags_ms),
        offered_per_second: Some(f64::from(rate)),
    })
}

/// Returns the responses per second between the first and the last of `responses`, or 0 with fewer
/// than two responses. The count leaves out the first response, so that N responses sent one interval
/// apart give exactly the offered rate.
fn response_rate(responses: &[Instant]) -> f64 {
    let (Some(first), Some(last)) = (responses.iter().min(), responses.iter().max()) else {
        return 0.0;
    };
    let seconds = (*last - *first).as_secs_f64();
    if responses.len() < 2 || seconds <= 0.0 {
        return 0.0;
    }
    (responses.len() - 1) as f64 / seconds
}

/// Sleeps until the send time of each call and spawns it on `runtime`. Blocks the thread for
/// the whole schedule.
fn send_on_schedule(
    runtime: &Handle,
    clients: &[WorkloadClient],
    calls: u32,
    start: Instant,
    interval: Duration,
    kind: CallKind,
) -> Vec<JoinHandle<anyhow::Result<Sample>>> {
    (0..calls)
        .zip(clients.iter().cycle())
        .map(|(index, client)| {
            let scheduled = start + interval * index;
            sleep_until(scheduled);
            let client = client.clone();
            runtime.spawn(async move {
                let sent = Instant::now();
                kind.call(client).await?;
                Ok(Sample {
                    scheduled,
                    sent,
                    received: Instant::now(),
                })
            })
        })
        .collect()
}

/// Sleeps the thread until `deadline`, or not at all when it has passed. The kernel's timer
/// slack (50 µs by default) may add to the sleep, and the send lag includes it.
fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

// === impl HeldStreams ===

impl HeldStreams {
    /// Returns the number of streams still open.
    pub(super) fn count_open(&self) -> u32 {
        let open = self.readers.iter().filter(|reader| !reader.is_finished());
        u32::try_from(open.count()).unwrap_or(u32::MAX)
    }
}

impl Drop for HeldStreams {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// Time between computing the schedule and the first send, so that the first call is not late
/// because the sending thread was still starting.
const START_DELAY: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_rate_counts_intervals_between_responses() {
        let first = Instant::now();
        let responses: Vec<Instant> = (0..11)
            .map(|index| first + Duration::from_millis(2) * index)
            .collect();

        let rate = response_rate(&responses);

        assert!((rate - 500.0).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn response_rate_of_one_response_is_zero() {
        assert_eq!(response_rate(&[Instant::now()]), 0.0);
        assert_eq!(response_rate(&[]), 0.0);
    }
}
