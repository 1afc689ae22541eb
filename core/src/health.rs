//! Readiness of a daemon, published to the HTTP probes (`/live`, `/ready`) and to the gRPC health
//! service `grpc.health.v1.Health`, and the client side of that service for `healthcheck`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::{HealthCheckRequest, health_check_response};
use tonic_health::server::{HealthReporter, HealthService};

use crate::http::{HttpResponse, HttpRoutes};

/// Whether a daemon can do its work.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Readiness {
    /// The daemon cannot do its work yet, or no longer. The text gives the reason to operators.
    NotReady(String),
    /// The daemon can do its work.
    Ready,
}

/// The published readiness of a daemon. Clones share the state.
#[derive(Clone, Debug)]
pub struct HealthState {
    readiness: Arc<watch::Sender<Readiness>>,
    reporter: HealthReporter,
    service: &'static str,
}

/// Error of a `grpc.health.v1.Health/Check` call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthcheckError {
    /// The daemon responded, but is not ready.
    #[error(
        "the daemon is not serving (status {0}): its log, or GET /ready on its health address, gives the reason"
    )]
    NotServing(&'static str),
    /// The daemon does not report the requested service, so it is another kind of daemon, such
    /// as a signet-server admin socket given to `signet-agent healthcheck`.
    #[error(
        "the daemon does not report the health service {service}: the socket belongs to another \
         kind of daemon, so check the socket path"
    )]
    UnknownService {
        /// The service name that was requested.
        service: &'static str,
    },
    /// The call failed, for example because nothing listens on the socket.
    #[error("the health check failed with {code}: {message}")]
    Rpc {
        /// The gRPC code.
        code: tonic::Code,
        /// The message of the status.
        message: String,
    },
    /// No response arrived within the timeout.
    #[error("the health check timed out after {0:?}")]
    TimedOut(Duration),
}

// === impl HealthState ===

impl HealthState {
    /// Creates the state, not ready until the first [`HealthState::publish`], and the gRPC
    /// health service that reports it for the overall server (service name "") and for
    /// `service`. That is the daemon's own name ([`AGENT_SERVICE`] or [`SERVER_SERVICE`]), which
    /// `healthcheck` requests so that a socket of the wrong daemon fails the check.
    pub async fn new(service: &'static str) -> (Self, HealthServer<HealthService>) {
        let reporter = HealthReporter::new();
        let starting = Readiness::NotReady("starting".to_owned());
        let state = Self {
            readiness: Arc::new(watch::channel(starting).0),
            reporter: reporter.clone(),
            service,
        };
        state.set_status(ServingStatus::NotServing).await;
        let health_service = HealthServer::new(HealthService::from_health_reporter(reporter));
        (state, health_service)
    }

    /// Publishes `readiness` to the probes and the gRPC health service, and logs a change.
    pub async fn publish(&self, readiness: Readiness) {
        let status = match &readiness {
            Readiness::Ready => ServingStatus::Serving,
            Readiness::NotReady(_) => ServingStatus::NotServing,
        };
        self.set_status(status).await;
        let previous = self.readiness.send_replace(readiness.clone());
        if previous == readiness {
            return;
        }
        // Losing readiness needs attention. Not being ready yet during startup does not.
        match (&previous, &readiness) {
            (_, Readiness::Ready) => tracing::info!("Ready"),
            (Readiness::Ready, Readiness::NotReady(reason)) => {
                tracing::warn!(reason = %reason, "No longer ready");
            }
            (Readiness::NotReady(_), Readiness::NotReady(reason)) => {
                tracing::info!(reason = %reason, "Not ready");
            }
        }
    }

    /// Returns the readiness published last.
    pub fn readiness(&self) -> Readiness {
        self.readiness.borrow().clone()
    }

    /// Returns the handler of `/live` and `/ready`.
    pub fn routes(&self) -> Arc<dyn HttpRoutes> {
        Arc::new(self.clone())
    }

    /// Runs `check` now and then every `interval` for ever, publishing each result. A check that
    /// takes longer than [`CHECK_TIMEOUT`] counts as not ready.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the state keeps the last published result.
    pub async fn keep_updated<F, Fut>(&self, interval: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Readiness>,
    {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let readiness = tokio::time::timeout(CHECK_TIMEOUT, check())
                .await
                .unwrap_or_else(|_| {
                    Readiness::NotReady("the readiness check timed out".to_owned())
                });
            self.publish(readiness).await;
        }
    }

    async fn set_status(&self, status: ServingStatus) {
        for service in ["", self.service] {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

impl HttpRoutes for HealthState {
    fn respond(&self, path: &str) -> Option<HttpResponse> {
        match path {
            // Any response shows that the runtime schedules tasks, which is all liveness means.
            "/live" => Some(HttpResponse::text(StatusCode::OK, "live\n")),
            "/ready" => Some(match self.readiness() {
                Readiness::Ready => HttpResponse::text(StatusCode::OK, "ready\n"),
                Readiness::NotReady(reason) => HttpResponse::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                ),
            }),
            _ => None,
        }
    }
}

/// Calls `grpc.health.v1.Health/Check` for `service` on `channel`, and succeeds when the
/// response is `SERVING`.
///
/// # Errors
///
/// [`HealthcheckError::NotServing`] for any other status, [`HealthcheckError::UnknownService`]
/// when the daemon does not report `service`, [`HealthcheckError::Rpc`] when the call fails
/// otherwise, [`HealthcheckError::TimedOut`] after `timeout`.
pub async fn check_serving(
    channel: Channel,
    service: &'static str,
    timeout: Duration,
) -> Result<(), HealthcheckError> {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let response = tokio::time::timeout(timeout, HealthClient::new(channel).check(request))
        .await
        .map_err(|_| HealthcheckError::TimedOut(timeout))?
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => HealthcheckError::UnknownService { service },
            code => HealthcheckError::Rpc {
                code,
                message: status.message().to_owned(),
            },
        })?;
    match response.into_inner().status() {
        health_check_response::ServingStatus::Serving => Ok(()),
        status => Err(HealthcheckError::NotServing(status.as_str_name())),
    }
}

/// Health service name of `signet-agent`, reported on its Workload API socket.
pub const AGENT_SERVICE: &str = "signet.agent.v1.Agent";
/// Health service name of `signet-server`, reported on its admin socket.
pub const SERVER_SERVICE: &str = "signet.server.v1.Server";
/// Time a readiness check may take before it counts as not ready.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn ready_path_follows_published_readiness() {
        let (state, _service) = HealthState::new(SERVER_SERVICE).await;
        let status = |state: &HealthState| state.respond("/ready").unwrap().status;
        assert_eq!(status(&state), StatusCode::SERVICE_UNAVAILABLE);

        state.publish(Readiness::Ready).await;
        assert_eq!(status(&state), StatusCode::OK);

        state
            .publish(Readiness::NotReady("datastore unreachable".to_owned()))
            .await;
        let response = state.respond("/ready").unwrap();
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.body, "not ready: datastore unreachable\n");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn live_path_succeeds_while_not_ready() {
        let (state, _service) = HealthState::new(SERVER_SERVICE).await;
        assert_eq!(state.respond("/live").unwrap().status, StatusCode::OK);
        assert_eq!(state.respond("/metrics"), None);
    }
}
