//! Burst mode: every connection makes one call at the same instant, round after round. The
//! last call of a round waits for all the others, so the latency grows with the connections and
//! the completed calls per second give the agent's throughput.

use futures::future::try_join_all;
use tokio::time::Instant;

use super::{CallKind, Timed};
use crate::load::milliseconds;
use crate::workload_client::WorkloadClient;

/// Makes rounds of one `kind` call per client at once until at least `calls` calls are done,
/// and times each call from the start of its round.
pub(super) async fn run(
    clients: &[WorkloadClient],
    calls: u32,
    kind: CallKind,
) -> anyhow::Result<Timed> {
    let connections = u32::try_from(clients.len()).unwrap_or(u32::MAX).max(1);
    let rounds = calls.div_ceil(connections).max(1);

    let started = Instant::now();
    let mut latencies_ms = Vec::with_capacity(clients.len() * rounds as usize);
    for _ in 0..rounds {
        latencies_ms.extend(round(clients, kind).await?);
    }
    Ok(Timed {
        achieved_per_second: latencies_ms.len() as f64 / started.elapsed().as_secs_f64(),
        latencies_ms,
        send_lags_ms: None,
        offered_per_second: None,
    })
}

/// Starts one call per client at once and returns each call's latency in milliseconds.
async fn round(clients: &[WorkloadClient], kind: CallKind) -> anyhow::Result<Vec<f64>> {
    let started = Instant::now();
    try_join_all(clients.iter().map(|client| {
        let call = kind.call(client.clone());
        async move {
            call.await?;
            Ok::<_, anyhow::Error>(milliseconds(started.elapsed()))
        }
    }))
    .await
}
