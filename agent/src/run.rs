//! `signet-agent run`: attests the node, keeps entries and SVIDs in sync, and serves the
//! Workload API until shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use signet_core::ids::redacted_agent_id;
use tokio::sync::watch;

use crate::cache::Cache;
use crate::config::AgentConfig;
use crate::jwt::JwtSigner;
use crate::node::{DataDirLock, Node, Rejection};
use crate::sync;
use crate::workload_api::{WorkloadApiListener, prepare_socket_path};

/// Runs the agent until `shutdown` completes or its SVID expires without renewal.
///
/// When the server has no record of the agent (it was evicted), the agent attests again with the
/// configured join token, or stops without one.
///
/// # Errors
///
/// A data directory in use by another agent, node attestation failures, a Workload API socket
/// that cannot be bound or served, an agent SVID that expired because the server could not
/// renew it, and an agent the server banned or has no record of.
///
/// # Cancel safety
///
/// Not cancel safe: complete `shutdown` instead, so open Workload API streams end cleanly and
/// the socket file is removed.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    prepare_socket_path(&config.socket_path).context("failed to start the Workload API")?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut node = tokio::select! {
        node = Node::start(&config) => Arc::new(node.context("node attestation failed")?),
        () = &mut shutdown => return Ok(()),
    };
    loop {
        let Some(rejection) = serve(&config, Arc::clone(&node), shutdown.as_mut()).await? else {
            return Ok(());
        };
        node = tokio::select! {
            next = Node::reattest(&config, &node, rejection) => Arc::new(next?),
            () = &mut shutdown => return Ok(()),
        };
    }
}

/// Serves the Workload API for `node` until `shutdown` completes, and returns the server's
/// rejection of the agent when one ends the service instead.
async fn serve(
    config: &AgentConfig,
    node: Arc<Node>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<Option<Rejection>> {
    let cache = Cache::new(config.trust_domain.clone());
    let listener = WorkloadApiListener::bind(&config.socket_path)
        .context("failed to start the Workload API")?
        .with_jwt_signer(Arc::clone(&node) as Arc<dyn JwtSigner>);
    let mut syncing = std::pin::pin!(sync::run(Arc::clone(&node), cache.clone()));

    let (stop, stopped) = watch::channel(false);
    let serving = listener.serve(cache.clone(), async move {
        let mut stopped = stopped;
        // An error means the sender is gone, which also means stop.
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let mut serving = std::pin::pin!(serving);
    let mut ready = std::pin::pin!(first_sync(cache, &node, config));

    let mut renewal = std::pin::pin!(node.keep_renewed());
    let mut rejected = std::pin::pin!(node.rejected());
    let mut is_ready = false;
    let outcome = loop {
        tokio::select! {
            () = &mut ready, if !is_ready => is_ready = true,
            () = &mut syncing => break Err(anyhow::anyhow!("entry sync stopped")),
            () = &mut shutdown => break Ok(None),
            rejection = &mut rejected => break Ok(Some(rejection)),
            error = &mut renewal => break Err(anyhow::Error::new(error)),
            result = &mut serving => return result.map(|()| None).context("Workload API failed"),
        }
    };

    stop.send_replace(true);
    serving.await.context("Workload API failed")?;
    if let Ok(Some(rejection)) = outcome {
        tracing::warn!(
            ?rejection,
            "Workload API stopped: the server rejected this agent"
        );
    } else {
        tracing::info!("Agent stopped");
    }
    outcome
}

/// Waits for the first complete sync, then logs that the agent is ready.
async fn first_sync(cache: Cache, node: &Node, config: &AgentConfig) {
    let mut snapshots = cache.subscribe();
    // An error means the cache is gone, which ends the agent anyway.
    if snapshots
        .wait_for(|snapshot| snapshot.is_synced())
        .await
        .is_ok()
    {
        tracing::info!(
            spiffe_id = %redacted_agent_id(node.agent_id()),
            socket_path = %config.socket_path.display(),
            "Agent ready"
        );
    }
}
