//! Readiness of the agent, and the HTTP endpoints and readiness checks that report it and the
//! metrics.
//!
//! The agent is ready when it is attested, its Workload API socket listens, and it has synced
//! with the server at least once since it started.

use std::sync::Arc;
use std::time::Duration;

use signet_core::health::{AGENT_SERVICE, HealthState, Readiness};
use signet_core::http::{HttpBindError, HttpEndpoint, HttpRoutes};
use tokio::task::JoinHandle;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use crate::config::AgentConfig;
use crate::metrics::AgentMetrics;

/// The metrics and readiness of a running agent. Dropping it stops the HTTP endpoints and the
/// readiness checks.
#[derive(Debug)]
pub struct Telemetry {
    /// The agent's metrics, which also tell the readiness check what the agent serves.
    pub metrics: AgentMetrics,
    /// The gRPC health service for the Workload API socket.
    pub health_service: HealthServer<HealthService>,
    tasks: Vec<JoinHandle<()>>,
}

impl Telemetry {
    /// Binds the metrics and health endpoints that `config` enables and starts the readiness
    /// checks.
    ///
    /// # Errors
    ///
    /// [`HttpBindError`] when an endpoint's address cannot be bound.
    pub async fn start(config: &AgentConfig) -> Result<Self, HttpBindError> {
        let metrics = AgentMetrics::default();
        let (health, health_service) = HealthState::new(AGENT_SERVICE).await;
        let metrics_routes: Arc<dyn HttpRoutes> = Arc::new(metrics.clone());
        let endpoints = HttpEndpoint::bind_enabled(
            config
                .metrics_address
                .map(|address| (address, metrics_routes)),
            config
                .health_address
                .map(|address| (address, health.routes())),
        )
        .await?;

        let mut tasks: Vec<JoinHandle<()>> = endpoints
            .into_iter()
            .map(|endpoint| tokio::spawn(endpoint.serve(std::future::pending())))
            .collect();
        let checked = metrics.clone();
        tasks.push(tokio::spawn(async move {
            health
                .keep_updated(READINESS_INTERVAL, || {
                    std::future::ready(check_readiness(&checked))
                })
                .await;
        }));
        Ok(Self {
            metrics,
            health_service,
            tasks,
        })
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Time between two readiness checks. They read memory only, so they can run often, which lets
/// `healthcheck` pass soon after the first sync.
pub const READINESS_INTERVAL: Duration = Duration::from_millis(250);

/// Checks whether the agent can give workloads current SVIDs.
///
/// SVIDs restored from disk do not count as a sync, so an agent that restarted during a server
/// outage is not ready, although it serves what it restored.
pub fn check_readiness(metrics: &AgentMetrics) -> Readiness {
    let Some(serving) = metrics.serving() else {
        return Readiness::NotReady(
            "the agent is not attested or its Workload API is not listening".to_owned(),
        );
    };
    if serving.cache.last_sync().is_none() {
        return Readiness::NotReady("the agent has not synced with the server yet".to_owned());
    }
    Readiness::Ready
}
