//! `signet-agent run`: attests the node, keeps entries and SVIDs in sync, and serves the
//! Workload API until shutdown.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use signet_core::admin_socket;
use signet_core::ids::redacted_agent_id;
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::cache::Cache;
use crate::config::AgentConfig;
use crate::debug_api;
use crate::health::Telemetry;
use crate::jwt::JwtSigner;
use crate::metrics::Serving;
use crate::node::{DataDirLock, Node, Rejection};
use crate::persist::WorkloadStore;
use crate::sync;
use crate::workload_api::WorkloadApiListener;
use crate::workload_attestor;

/// Runs the agent until `shutdown` completes or its SVID expires without renewal.
///
/// When the server has no record of the agent (it was evicted), the agent attests again with the
/// configured join token, or stops without one. When the server banned the agent, it attests
/// again only with a join token other than the one it attested with, and stops otherwise. In
/// every case it deletes its stored workload SVIDs.
///
/// # Errors
///
/// A `/proc` of another PID namespace. A data directory in use by another agent. A Workload API or admin socket that is in use or
/// in a directory other users can write to, checked before node attestation. Node attestation
/// failures, a Workload API socket that cannot be served, an agent SVID that expired because the
/// server could not renew it, and an agent the server banned or has no record of.
///
/// # Cancel safety
///
/// Not cancel safe: complete `shutdown` instead, so open Workload API streams end cleanly and
/// the socket file is removed.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    workload_attestor::check_proc_namespace()?;
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    if !config.persist_workload_svids {
        remove_stored_svids(&config)?;
    }
    let telemetry = Telemetry::start(&config).await?;
    // Binding first means that a socket in use or in an unsafe directory stops the agent before
    // node attestation uses up a single-use join token.
    let sockets = Sockets::bind(&config)?;
    let mut shutdown = std::pin::pin!(shutdown);
    let attested = tokio::select! {
        node = Node::start(&config) => node.context("node attestation failed").map(Some),
        () = &mut shutdown => Ok(None),
    };
    let mut node = match attested {
        Ok(Some(node)) => Arc::new(node),
        stopped => {
            sockets.remove(&config);
            return stopped.map(|_| ());
        }
    };
    let mut bound = Some(sockets);
    loop {
        let sockets = match bound.take() {
            Some(sockets) => sockets,
            None => Sockets::bind(&config)?,
        };
        let serving = serve(
            &config,
            Arc::clone(&node),
            sockets,
            &telemetry,
            shutdown.as_mut(),
        )
        .await;
        telemetry.metrics.detach();
        let Some(rejection) = serving? else {
            return Ok(());
        };
        remove_stored_svids(&config)?;
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
    sockets: Sockets,
    telemetry: &Telemetry,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<Option<Rejection>> {
    let cache = Cache::new(config.trust_domain.clone());
    let store = config
        .persist_workload_svids
        .then(|| WorkloadStore::new(&config.data_dir, node.agent_id()));
    if let Some(store) = &store {
        restore(store, &cache)?;
    }
    let mut saving = std::pin::pin!(async {
        match &store {
            Some(store) => store.keep_saved(&cache).await,
            None => std::future::pending().await,
        }
    });
    let listener = sockets
        .workload_api
        .with_jwt_signer(Arc::clone(&node) as Arc<dyn JwtSigner>)
        .with_metrics(telemetry.metrics.clone())
        .with_health(telemetry.health_service.clone());
    telemetry.metrics.attach(Serving {
        node: Arc::clone(&node),
        cache: cache.clone(),
    });
    let admin = sockets.admin;
    let mut syncing = std::pin::pin!(sync::run(
        Arc::clone(&node),
        cache.clone(),
        telemetry.metrics.clone(),
    ));

    let (stop, stopped) = watch::channel(false);
    let serving = listener.serve(cache.clone(), async move {
        let mut stopped = stopped;
        // An error means the sender is gone, which also means stop.
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let mut serving = std::pin::pin!(serving);
    let debugging = debug_api::serve(admin, cache.clone(), node.agent_id().clone(), {
        let mut stopped = stop.subscribe();
        // An error means the sender is gone, which also means stop.
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    });
    let mut debugging = std::pin::pin!(debugging);
    let mut debugging_stopped = false;
    let mut ready = std::pin::pin!(first_sync(cache.clone(), &node, config));

    let mut renewal = std::pin::pin!(node.keep_renewed());
    let mut rejected = std::pin::pin!(node.rejected());
    let mut is_ready = false;
    let outcome = loop {
        tokio::select! {
            () = &mut ready, if !is_ready => is_ready = true,
            () = &mut saving => break Err(anyhow::anyhow!("workload SVID storage stopped")),
            () = &mut syncing => break Err(anyhow::anyhow!("entry sync stopped")),
            () = &mut shutdown => break Ok(None),
            rejection = &mut rejected => break Ok(Some(rejection)),
            error = &mut renewal => break Err(anyhow::Error::new(error)),
            result = &mut serving => return result.map(|()| None).context("Workload API failed"),
            result = &mut debugging => {
                debugging_stopped = true;
                break Err(admin_api_stopped(result));
            }
        }
    };

    stop.send_replace(true);
    serving.await.context("Workload API failed")?;
    if !debugging_stopped {
        debugging.await.context("admin API failed")?;
    }
    remove_socket_file(&config.admin_socket);
    if let (Some(store), Ok(None)) = (&store, &outcome) {
        save_at_shutdown(store, &cache).await;
    }
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

/// The Workload API and admin sockets, bound but not served yet.
struct Sockets {
    workload_api: WorkloadApiListener,
    admin: UnixListener,
}

impl Sockets {
    /// Binds both sockets, and removes the Workload API socket again when the admin socket
    /// cannot be bound.
    fn bind(config: &AgentConfig) -> anyhow::Result<Self> {
        let workload_api = WorkloadApiListener::bind(&config.socket_path)
            .context("failed to start the Workload API")?;
        let admin = admin_socket::bind(&config.admin_socket)
            .context("failed to start the admin API")
            .inspect_err(|_| remove_socket_file(&config.socket_path))?;
        Ok(Self {
            workload_api,
            admin,
        })
    }

    /// Closes both sockets unserved and removes their files.
    fn remove(self, config: &AgentConfig) {
        drop(self);
        remove_socket_file(&config.socket_path);
        remove_socket_file(&config.admin_socket);
    }
}

/// Publishes the workload SVIDs a previous run stored, so the Workload API serves them before
/// the server is reached. A stored cache that cannot be used is ignored with a warning, because
/// the server can send everything again.
///
/// # Errors
///
/// The stored file is open to other users.
fn restore(store: &WorkloadStore, cache: &Cache) -> anyhow::Result<()> {
    match store.load(SystemTime::now()) {
        Ok(Some(snapshot)) => {
            let svids = snapshot
                .identities
                .iter()
                .filter(|identity| identity.svid.is_some())
                .count();
            tracing::info!(
                entries = snapshot.identities.len(),
                svids,
                "Serving the workload X509-SVIDs stored by the previous run until the server is reached"
            );
            cache.publish(snapshot);
        }
        Ok(None) => {}
        Err(error) if error.is_insecure() => {
            return Err(error).context("rejected the stored workload SVIDs");
        }
        Err(error) => {
            tracing::warn!(error = %error, "Ignoring the stored workload SVIDs");
        }
    }
    Ok(())
}

/// Stores the changes of the last write interval for the next start.
async fn save_at_shutdown(store: &WorkloadStore, cache: &Cache) {
    let snapshot = cache.current();
    // Before the first sync or restore there is nothing worth keeping.
    if !snapshot.is_synced() {
        return;
    }
    if let Err(error) = store.save_in_background(snapshot).await {
        tracing::warn!(error = %error, "Failed to store the workload SVIDs at shutdown");
    }
}

/// Returns the error for an admin API that stopped before the agent did.
fn admin_api_stopped(result: Result<(), tonic::transport::Error>) -> anyhow::Error {
    match result {
        Ok(()) => anyhow::anyhow!("admin API stopped"),
        Err(error) => anyhow::Error::new(error).context("admin API failed"),
    }
}

/// Removes a socket file the agent bound, which dropping its listener leaves behind.
fn remove_socket_file(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        tracing::debug!(error = %error, path = %path.display(), "Failed to remove a socket file");
    }
}

/// Deletes the stored workload SVIDs, when persistence is off or the server rejected the agent.
fn remove_stored_svids(config: &AgentConfig) -> anyhow::Result<()> {
    if WorkloadStore::remove(&config.data_dir)? {
        tracing::info!(
            data_dir = %config.data_dir.display(),
            "Deleted the stored workload SVIDs"
        );
    }
    Ok(())
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
