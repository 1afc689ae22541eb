//! The `SpiffeWorkloadAPI` gRPC service: security header, caller attestation and the RPCs.

use std::error::Error as StdError;
use std::sync::Arc;

use signet_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use signet_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::{debug, error, warn};

use super::connection::ConnectionInfo;
use super::delivery;
use super::jwt::{self, JwtSvidIssuer};
use super::matching::{ExpansionWarnings, match_identities};
use super::stream::{self, Caller, ResponseStream, Updates};
use crate::cache::Cache;
use crate::jwt::JwtSigner;
use crate::metrics::AgentMetrics;
use crate::workload_attestor::{AttestationError, UnixAttestor};

/// Serves the Workload API from the agent's cache.
#[derive(Clone, Debug)]
pub(super) struct WorkloadApiService {
    cache: Cache,
    attestor: Arc<UnixAttestor>,
    jwt_svids: Arc<JwtSvidIssuer>,
    stopping: watch::Receiver<bool>,
    metrics: AgentMetrics,
    template_warnings: Arc<ExpansionWarnings>,
}

/// Rejects a request unless it carries the metadata `workload.spiffe.io: true` exactly once.
///
/// The header shows that a Workload API client made the request. A program tricked into sending
/// a plain HTTP request to the socket (server-side request forgery) cannot add it.
pub(super) fn check_security_header(request: Request<()>) -> Result<Request<()>, Status> {
    let mut values = request.metadata().get_all(SECURITY_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(value), None) if value.as_bytes() == b"true" => Ok(request),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

// === impl WorkloadApiService ===

impl WorkloadApiService {
    pub(super) fn new(
        cache: Cache,
        jwt_signer: Option<Arc<dyn JwtSigner>>,
        stopping: watch::Receiver<bool>,
        metrics: AgentMetrics,
    ) -> Self {
        Self {
            cache,
            attestor: Arc::new(UnixAttestor::new()),
            jwt_svids: Arc::new(JwtSvidIssuer::new(jwt_signer)),
            stopping,
            metrics,
            template_warnings: Arc::default(),
        }
    }

    /// Attests the process that opened the request's connection.
    async fn attest<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let peer = request
            .extensions()
            .get::<ConnectionInfo>()
            .and_then(|info| info.peer.clone());
        let Some(peer) = peer else {
            warn!("Workload API connection has no peer credentials");
            return Err(AttestationError::MissingPeerCredentials.into());
        };
        let pid = peer.pid;
        let attestor = Arc::clone(&self.attestor);
        let started = Instant::now();

        let attested = tokio::task::spawn_blocking(move || {
            let selectors = attestor.attest(&peer)?;
            Ok::<_, AttestationError>(Caller {
                pid: peer.pid,
                uid: peer.uid,
                selectors,
            })
        })
        .await;
        self.metrics.observe_workload_attestation(started.elapsed());

        match attested {
            Ok(Ok(caller)) => {
                debug!(
                    pid,
                    uid = caller.uid,
                    selectors = caller.selectors.len(),
                    "Workload attested"
                );
                Ok(caller)
            }
            Ok(Err(attestation_error)) => {
                warn!(pid, error = %error_chain(&attestation_error), "Workload attestation failed");
                Err(attestation_error.into())
            }
            Err(join_error) => {
                error!(pid, error = %join_error, "Workload attestation task failed");
                Err(Status::unavailable(ATTESTATION_FAILED))
            }
        }
    }

    /// Returns whether an X509-SVID of the caller expired and sync withdrew it, so that the
    /// error for a caller without SVIDs reports the expiry instead of "not signed yet".
    fn has_expired_svid(&self, caller: &Caller) -> bool {
        let snapshot = self.cache.current();
        let matches = match_identities(&snapshot, &caller.selectors);
        matches.entitled.iter().any(|entitled| {
            entitled.svid().is_none() && self.cache.expired_at(&entitled.spiffe_id).is_some()
        })
    }

    fn updates(&self) -> Updates {
        Updates {
            snapshots: self.cache.subscribe(),
            stopping: self.stopping.clone(),
        }
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApiService {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let caller = self.attest(&request).await?;
        let not_ready = if self.has_expired_svid(&caller) {
            X509_SVID_EXPIRED
        } else {
            X509_SVID_NOT_SIGNED
        };
        let deliver = delivery::x509_svid_messages(
            self.cache.demand().lease(),
            Arc::clone(&self.template_warnings),
            caller.pid,
        );
        let stream = stream::open(self.updates(), caller, not_ready, deliver).await?;
        Ok(Response::new(stream))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let caller = self.attest(&request).await?;
        let not_ready = "the agent has not received the trust bundle yet";
        let stream =
            stream::open(self.updates(), caller, not_ready, delivery::x509_bundles).await?;
        Ok(Response::new(stream))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let requested = jwt::check_fetch_request(request.get_ref())?;
        let caller = self.attest(&request).await?;
        let response = self
            .jwt_svids
            .fetch(
                &self.cache.current(),
                &caller,
                &request.get_ref().audience,
                requested.as_ref(),
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let caller = self.attest(&request).await?;
        let not_ready = "the agent has not received the trust bundle yet";
        let stream = stream::open(self.updates(), caller, not_ready, jwt::jwt_bundles).await?;
        Ok(Response::new(stream))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        jwt::check_validate_request(request.get_ref())?;
        let caller = self.attest(&request).await?;
        let response = jwt::validate(&self.cache.current(), &caller, request.get_ref())?;
        Ok(Response::new(response))
    }
}

impl From<AttestationError> for Status {
    /// Maps every attestation failure to `Unavailable`, which clients retry. The details stay in
    /// the agent's log, because they name `/proc` paths.
    fn from(_: AttestationError) -> Self {
        Self::unavailable(ATTESTATION_FAILED)
    }
}

/// Formats an error with its sources, for logs and status messages.
pub(crate) fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

const SECURITY_HEADER: &str = "workload.spiffe.io";
const ATTESTATION_FAILED: &str = "workload attestation failed";
/// Error of `FetchX509SVID` when no X509-SVID of the caller has been signed within the wait.
const X509_SVID_NOT_SIGNED: &str = "X509-SVIDs for the caller are not signed yet";
/// Error of `FetchX509SVID` when the caller's X509-SVID expired before the server renewed it.
const X509_SVID_EXPIRED: &str = "the caller's X509-SVID expired and the agent could not renew it: \
                                 is the signet-server reachable?";
