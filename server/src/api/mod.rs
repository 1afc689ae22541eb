//! The gRPC services of the server: SPIRE's Agent, Entry, SVID and Bundle APIs and Signet's Sync
//! API, shared by the agent endpoint (TLS) and the admin endpoint (Unix socket).

mod agent;
mod bundle;
mod caller;
mod changes;
mod diagnostics;
mod entry;
mod error;
mod filter;
mod localauthority;
mod mask;
mod paging;
mod registration;
mod svid;
mod sync;
mod template_svid;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use signet_proto::signet::server::diagnostics::v1::diagnostics_server::DiagnosticsServer;
use signet_proto::signet::server::registration::v1::registration_server::RegistrationServer;
use signet_proto::signet::server::svid::v1::template_svid_server::TemplateSvidServer;
use signet_proto::signet::server::sync::v1::sync_server::SyncServer;
use signet_proto::spire::api::server::agent::v1::agent_server::AgentServer;
use signet_proto::spire::api::server::bundle::v1::bundle_server::BundleServer;
use signet_proto::spire::api::server::entry::v1::entry_server::EntryServer;
use signet_proto::spire::api::server::localauthority::v1::local_authority_server::LocalAuthorityServer;
use signet_proto::spire::api::server::svid::v1::svid_server::SvidServer;
use spiffe::TrustDomain;
use tonic::Request;
use tonic::service::Routes;

use crate::authority::{JwtKind, Rotation, X509Kind};
use crate::authorization::cache::EntryCache;
use crate::ca::CertificateAuthority;
use crate::datastore::Datastore;
use crate::jwt::JwtSigner;
use crate::metrics::ServerMetrics;
use crate::model::AttestedAgent;

pub use changes::ChangeFeed;
pub use error::ApiError;

use caller::AgentAuthenticator;

/// Which listener a request arrived on; it decides which RPCs a caller may use.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Endpoint {
    /// The Unix socket for operators: every RPC except the agent-only ones.
    Admin,
    /// The TLS port for agents: attestation, renewal, entry sync, SVID signing and the bundle.
    Agent,
}

/// Shared state of every service: the datastore, the CA and the server's settings.
#[derive(Debug)]
pub struct ServerState {
    /// Trust domain of every SPIFFE ID the server issues.
    pub trust_domain: TrustDomain,
    /// Entries, agents, join tokens and the bundle.
    pub datastore: Datastore,
    /// The X.509 CAs; the active one signs agent and workload X509-SVIDs.
    pub x509_authorities: Rotation<X509Kind>,
    /// Lifetime of workload X509-SVIDs whose entry sets no TTL.
    pub default_x509_svid_ttl: Duration,
    /// Lifetime of agent X509-SVIDs.
    pub agent_svid_ttl: Duration,
    /// The JWT signing keys; the active one signs JWT-SVIDs.
    pub jwt_authorities: Rotation<JwtKind>,
    /// Notifies agents of changes.
    pub changes: ChangeFeed,
    /// Prometheus metrics of issuance, attestation and the authorities.
    pub metrics: ServerMetrics,
    authenticator: AgentAuthenticator,
    entry_cache: EntryCache,
}

impl ServerState {
    /// Bundles the server's parts. `changes` should start at the bundle's current sequence number,
    /// and the bundle should already publish every authority.
    pub fn new(
        trust_domain: TrustDomain,
        datastore: Datastore,
        x509_authorities: Rotation<X509Kind>,
        jwt_authorities: Rotation<JwtKind>,
        svid_ttls: SvidTtls,
        changes: ChangeFeed,
    ) -> Self {
        Self {
            trust_domain,
            datastore,
            x509_authorities,
            default_x509_svid_ttl: svid_ttls.default_x509_svid_ttl,
            agent_svid_ttl: svid_ttls.agent_svid_ttl,
            jwt_authorities,
            changes,
            metrics: ServerMetrics::new(),
            authenticator: AgentAuthenticator::default(),
            entry_cache: EntryCache::default(),
        }
    }

    /// Returns the CA that signs X509-SVIDs now.
    pub fn ca(&self) -> Arc<CertificateAuthority> {
        self.x509_authorities.active()
    }

    /// Returns the signer of JWT-SVIDs now.
    pub fn jwt(&self) -> Arc<JwtSigner> {
        self.jwt_authorities.active()
    }
}

/// Lifetimes of X509-SVIDs the server signs.
#[derive(Clone, Copy, Debug)]
pub struct SvidTtls {
    /// Lifetime of workload X509-SVIDs whose entry sets no TTL.
    pub default_x509_svid_ttl: Duration,
    /// Lifetime of agent X509-SVIDs.
    pub agent_svid_ttl: Duration,
}

/// Builds the gRPC routes served on `endpoint`.
pub fn routes(state: Arc<ServerState>, endpoint: Endpoint) -> Routes {
    let services = Services { state, endpoint };
    Routes::new(AgentServer::new(services.clone()))
        .add_service(EntryServer::new(services.clone()))
        .add_service(SvidServer::new(services.clone()))
        .add_service(TemplateSvidServer::new(services.clone()))
        .add_service(BundleServer::new(services.clone()))
        .add_service(LocalAuthorityServer::new(services.clone()))
        .add_service(RegistrationServer::new(services.clone()))
        .add_service(DiagnosticsServer::new(services.clone()))
        .add_service(SyncServer::new(services))
}

/// Implements every service trait; the methods live in one module per service.
#[derive(Clone, Debug)]
struct Services {
    state: Arc<ServerState>,
    endpoint: Endpoint,
}

impl Services {
    /// Returns the stored record of the agent that made the request over mTLS.
    async fn authenticate_agent<T>(&self, request: &Request<T>) -> Result<AttestedAgent, ApiError> {
        self.state
            .authenticator
            .authenticate(&self.state, request)
            .await
    }

    /// Rejects admin RPCs that arrive on the agent endpoint.
    fn require_admin(&self) -> Result<(), ApiError> {
        match self.endpoint {
            Endpoint::Admin => Ok(()),
            Endpoint::Agent => Err(ApiError::PermissionDenied(
                "this RPC is only served on the admin socket".to_owned(),
            )),
        }
    }
}

/// Returns the current time in Unix seconds.
fn unix_now() -> i64 {
    unix_seconds(SystemTime::now())
}

/// Converts a time to Unix seconds; times before 1970 become 0.
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    i64::try_from(seconds).unwrap_or(i64::MAX)
}
