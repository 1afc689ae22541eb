//! Node attestation: the agent's own X509-SVID, its trust in the server, and the client it uses
//! to reach the server.
//!
//! On start the agent resumes with the SVID and bundle stored in its data directory. Without
//! them (or once the SVID expired) it attests with a join token. The SVID is renewed shortly
//! before half its lifetime (see [`svid::refresh_at`]), and the client is rebuilt whenever the
//! SVID or the bundle changes.

mod backoff;
mod channel;
mod client;
mod lock;
mod outage;
mod rejection;
mod renewal;
mod store;

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use rustls::CertificateError;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::CertificateDer;
use signet_core::fs::create_private_dir;
use signet_core::ids::{join_token_agent_id, redacted_agent_id, server_id};
use signet_core::tls::{
    InsecureBootstrapVerifier, SpiffeIdCheckError, SpiffeServerVerifier, VerifierError,
};
use spiffe::{SpiffeId, TrustDomain};
use tonic::Status;

pub use self::backoff::Backoff;
pub use self::client::{ServerClient, SignResult, TrustBundle};
pub use self::lock::DataDirLock;
use self::outage::OutageLog;
pub(crate) use self::outage::is_server_unreachable;
pub use self::rejection::Rejection;
use self::rejection::RejectionSignal;
use crate::cache::X509SvidMaterial;
use crate::config::{AgentConfig, Bootstrap, JoinToken, ServerAddress};
use crate::svid::{self, PendingSvid, SvidError};
use crate::taint::TaintedAuthorities;

/// Error from attesting, resuming or renewing the agent's X509-SVID.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No stored SVID and no join token to attest with.
    #[error(
        "no agent SVID stored in {0}: start the agent with --join-token, using a token from \
         `signet-server token generate`"
    )]
    MissingJoinToken(PathBuf),
    /// The agent SVID expired (while the agent was stopped or could not reach the server) and
    /// no join token was given to attest again.
    #[error(
        "the SVID of agent {agent_id} stored in {data_dir} expired at {expired_at}, so the server \
         no longer accepts it: generate a join token with `signet-server token generate \
         --spiffe-id <node alias ID>` and start the agent with --join-token <token> (or \
         SIGNET_AGENT_JOIN_TOKEN); the agent then gets a new SPIFFE ID, so entries whose parent \
         is the old agent ID must be created again with the node alias as parent"
    )]
    SvidExpired {
        /// The agent's SPIFFE ID, with the join token redacted.
        agent_id: String,
        /// Data directory of the agent.
        data_dir: PathBuf,
        /// RFC 3339 time of the SVID's notAfter.
        expired_at: String,
    },
    /// Nothing to verify the server's certificate against for the first attestation.
    #[error(
        "no trust bundle to verify the server: set --trust-bundle to a PEM file with the server's \
         CA certificate (`signet-server bundle show`), or --insecure-bootstrap for tests"
    )]
    MissingTrust,
    /// The server rejected the join token.
    #[error(
        "join token rejected by the server ({message}): generate a new one with \
         `signet-server token generate`"
    )]
    JoinTokenRejected {
        /// The server's explanation, which never contains the token.
        message: String,
    },
    /// The join token does not form a valid agent SPIFFE ID. The message omits the secret value.
    #[error(
        "invalid join token: use the token exactly as `signet-server token generate` printed it"
    )]
    InvalidJoinToken,
    /// The server asked for a challenge response, which join token attestation never sends.
    #[error("the server asked for an attestation challenge, which join token attestation lacks")]
    UnexpectedChallenge,
    /// The server has no record of the agent and no join token was given to attest again.
    #[error(
        "the server has no record of agent {0}: it was evicted or never attested to this server; \
         start the agent with a new --join-token from `signet-server token generate`"
    )]
    Evicted(String),
    /// The server banned the agent.
    #[error(
        "the server banned agent {0}, so the agent stops; to run it again, an operator must \
         start it with a new --join-token"
    )]
    Banned(String),
    /// The server has no record of the agent, and attesting again with the join token failed.
    #[error(
        "the server has no record of agent {agent_id} (it may have been evicted), and attesting \
         again with --join-token failed"
    )]
    ReattestFailed {
        /// The agent's former SPIFFE ID, with the join token redacted.
        agent_id: String,
        /// The cause of the attestation failure.
        #[source]
        source: Box<NodeError>,
    },
    /// The server banned the agent, and attesting with the new join token failed.
    #[error("the server banned agent {agent_id}, and attesting with the new --join-token failed")]
    AttestAfterBanFailed {
        /// The agent's former SPIFFE ID, with the join token redacted.
        agent_id: String,
        /// The cause of the attestation failure.
        #[source]
        source: Box<NodeError>,
    },
    /// Another agent holds the lock on the data directory.
    #[error("data directory {0} is in use by another agent: stop it or choose another --data-dir")]
    DataDirInUse(PathBuf),
    /// The agent's private key file is open to other users.
    #[error(
        "{path} has mode {mode:04o}, so other users may read the agent's private key: run \
         `chmod 600 {path}`"
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A call to the server failed.
    #[error("{call} call to the server failed: {code:?}: {message}")]
    Rpc {
        /// Name of the RPC.
        call: &'static str,
        /// gRPC status code.
        code: tonic::Code,
        /// Status message, followed by the causes of a transport failure.
        message: String,
    },
    /// The server's response lacks the X509-SVID it should contain.
    #[error("the server's {0} response contains no X509-SVID")]
    MissingSvid(&'static str),
    /// The server's bundle cannot be used.
    #[error("invalid trust bundle from the server: {0}")]
    InvalidBundle(String),
    /// A signed SVID failed the agent's checks.
    #[error(transparent)]
    Svid(#[from] SvidError),
    /// The TLS settings could not be built from the SVID or bundle.
    #[error("failed to build the TLS settings for the server connection")]
    Tls(#[source] rustls::Error),
    /// The server verifier could not be built from the bundle.
    #[error(transparent)]
    Verifier(#[from] VerifierError),
    /// A file in the data directory could not be read or written.
    #[error("failed to access {path}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory contains state the agent cannot use.
    #[error(
        "unusable agent state in {path}: {reason}; remove the data directory and attest again \
         with a new --join-token"
    )]
    InvalidStore {
        /// The file or directory.
        path: PathBuf,
        /// The problem.
        reason: String,
    },
}

/// The attested agent: its SPIFFE ID, current X509-SVID, trust bundle and server client.
pub struct Node {
    agent_id: SpiffeId,
    trust_domain: TrustDomain,
    server_address: ServerAddress,
    data_dir: PathBuf,
    rejection_signal: RejectionSignal,
    outage_log: OutageLog,
    state: Mutex<State>,
}

struct State {
    svid: Arc<X509SvidMaterial>,
    /// When to renew `svid`.
    renew_at: SystemTime,
    bundle: Vec<CertificateDer<'static>>,
    client: ServerClient,
}

// === impl NodeError ===

impl NodeError {
    pub(crate) fn rpc(call: &'static str, status: &Status) -> Self {
        Self::Rpc {
            call,
            code: status.code(),
            message: describe_status(status),
        }
    }

    /// Returns true when a call failed because the server could not be reached. The node's
    /// outage log reports such failures once, so retries log them at debug only.
    pub fn is_server_unreachable(&self) -> bool {
        matches!(self, Self::Rpc { code, .. } if is_server_unreachable(*code))
    }
}

// === impl Node ===

impl Node {
    /// Resumes with the stored SVID, or attests with the configured join token.
    ///
    /// # Errors
    ///
    /// [`NodeError`] describing what the operator must fix: a missing or rejected join token,
    /// missing trust, an unreachable server or an unusable data directory.
    pub async fn start(config: &AgentConfig) -> Result<Self, NodeError> {
        create_private_dir(&config.data_dir).map_err(|source| NodeError::Store {
            path: config.data_dir.clone(),
            source,
        })?;
        let expired = match store::load(&config.data_dir)? {
            Some(stored) if SystemTime::now() < stored.svid.expires_at => {
                return Self::resume(config, stored);
            }
            expired => expired,
        };

        match (&config.join_token, expired) {
            (Some(token), expired) => {
                Self::attest(config, token, expired.map(|stored| stored.bundle)).await
            }
            (None, Some(stored)) => Err(NodeError::SvidExpired {
                agent_id: redacted_agent_id(&stored.agent_id),
                data_dir: config.data_dir.clone(),
                expired_at: humantime::format_rfc3339_seconds(stored.svid.expires_at).to_string(),
            }),
            (None, None) => Err(NodeError::MissingJoinToken(config.data_dir.clone())),
        }
    }

    /// Attests again after the server rejected this agent, replacing the stored SVID, when the
    /// agent was not attested and a join token was given, or when it was banned and a join token
    /// other than the one it attested with was given.
    ///
    /// # Errors
    ///
    /// [`NodeError::Banned`] for a banned agent without a new join token, [`NodeError::Evicted`]
    /// without a join token, [`NodeError::ReattestFailed`] or
    /// [`NodeError::AttestAfterBanFailed`] when the attestation fails.
    pub async fn reattest(
        config: &AgentConfig,
        previous: &Node,
        rejection: Rejection,
    ) -> Result<Self, NodeError> {
        let agent_id = redacted_agent_id(&previous.agent_id);
        let token = match (rejection, &config.join_token) {
            // The ban is on the old agent ID. A token other than the one that ID was made from is
            // a new grant from an operator, as the message of the `Banned` error advises.
            (Rejection::Banned, Some(token)) if !previous.is_attested_with(token) => {
                tracing::warn!(
                    spiffe_id = %agent_id,
                    "The server banned this agent: attesting with the new join token"
                );
                return Self::attest(config, token, Some(previous.bundle()))
                    .await
                    .map_err(|source| NodeError::AttestAfterBanFailed {
                        agent_id,
                        source: Box::new(source),
                    });
            }
            (Rejection::Banned, _) => return Err(NodeError::Banned(agent_id)),
            (Rejection::NotAttested, None) => return Err(NodeError::Evicted(agent_id)),
            (Rejection::NotAttested, Some(token)) => token,
        };
        tracing::warn!(
            spiffe_id = %agent_id,
            "The server has no record of this agent, which may have been evicted: attesting again \
             with the join token"
        );
        Self::attest(config, token, Some(previous.bundle()))
            .await
            .map_err(|source| NodeError::ReattestFailed {
                agent_id,
                source: Box::new(source),
            })
    }

    /// Waits until a call to the server reveals that the server no longer serves this agent.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn rejected(&self) -> Rejection {
        self.rejection_signal.rejected().await
    }

    /// Returns the agent's SPIFFE ID.
    pub fn agent_id(&self) -> &SpiffeId {
        &self.agent_id
    }

    /// Returns true when this agent's SPIFFE ID was made from `token`, so the token is used up.
    fn is_attested_with(&self, token: &JoinToken) -> bool {
        join_token_agent_id(&self.trust_domain, token.expose_secret())
            .is_ok_and(|id| id == self.agent_id)
    }

    /// Returns the trust domain of the agent and its server.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Returns a client for the server, authenticated with the current agent SVID.
    pub fn client(&self) -> ServerClient {
        self.lock().client.clone()
    }

    /// Returns a future that completes when the server is reachable again after an outage.
    pub(crate) fn recovery(&self) -> impl Future<Output = ()> + Send + 'static {
        self.outage_log.recovery()
    }

    /// Returns the current trust bundle.
    pub fn bundle(&self) -> Vec<CertificateDer<'static>> {
        self.lock().bundle.clone()
    }

    /// Returns when the agent SVID should be renewed: shortly before half its lifetime (see
    /// [`svid::refresh_at`]), or later when its renewal was cut at the CA's expiry (see
    /// [`svid::refresh_at_after_renewal`]).
    pub fn renew_at(&self) -> SystemTime {
        self.lock().renew_at
    }

    /// Returns the agent SVID's notAfter.
    pub fn expires_at(&self) -> SystemTime {
        self.lock().svid.expires_at
    }

    /// Stores a new trust bundle from the server and reconnects trusting it.
    ///
    /// Returns false, and does nothing, when the bundle is unchanged.
    ///
    /// # Errors
    ///
    /// [`NodeError::Verifier`] when the bundle cannot verify anything, [`NodeError::Store`] when
    /// it cannot be written.
    pub fn update_bundle(&self, bundle: Vec<CertificateDer<'static>>) -> Result<bool, NodeError> {
        let mut state = self.lock();
        if state.bundle == bundle {
            return Ok(false);
        }
        let client = self.mtls_client(&bundle, &state.svid)?;
        store::save_bundle(&self.data_dir, &bundle)?;
        tracing::info!(
            authorities = bundle.len(),
            "Trust bundle changed, reconnecting to the server"
        );
        state.bundle = bundle;
        state.client = client;
        Ok(true)
    }

    /// Renews the agent SVID now when a `tainted` authority signed it.
    ///
    /// # Errors
    ///
    /// As for [`Node::renew`].
    pub async fn renew_if_tainted(&self, tainted: &TaintedAuthorities) -> Result<(), NodeError> {
        let signed_by_tainted = tainted.signed(&self.lock().svid.chain);
        if signed_by_tainted {
            tracing::warn!("Agent SVID was signed by a tainted authority; renewing it now");
            self.renew().await?;
        }
        Ok(())
    }

    /// Renews the agent SVID with the server, stores it and reconnects with it.
    ///
    /// # Errors
    ///
    /// [`NodeError::Rpc`] when the server rejects the request or cannot be reached, [`NodeError::Svid`] for
    /// an unusable response, [`NodeError::Store`] when the files cannot be written.
    pub async fn renew(&self) -> Result<(), NodeError> {
        let pending = PendingSvid::generate(&self.agent_id)?;
        let signed = self
            .client()
            .renew_agent(pending.csr_der().to_vec())
            .await?;
        let svid = Arc::new(pending.complete(signed.cert_chain)?);

        let mut state = self.lock();
        let client = self.mtls_client(&state.bundle, &svid)?;
        store::save_svid(&self.data_dir, &svid)?;
        tracing::info!(
            spiffe_id = %redacted_agent_id(&self.agent_id),
            expiry = %humantime::format_rfc3339_seconds(svid.expires_at),
            "Renewed agent SVID"
        );
        state.renew_at =
            svid::refresh_at_after_renewal(&svid, Some(state.svid.expires_at), SystemTime::now());
        state.svid = svid;
        state.client = client;
        Ok(())
    }

    fn resume(config: &AgentConfig, stored: store::StoredState) -> Result<Self, NodeError> {
        if stored.agent_id.trust_domain() != &config.trust_domain {
            return Err(NodeError::InvalidStore {
                path: config.data_dir.clone(),
                reason: format!(
                    "the stored agent SVID {} is not in trust domain {}",
                    redacted_agent_id(&stored.agent_id),
                    config.trust_domain
                ),
            });
        }
        if config.join_token.is_some() {
            tracing::info!(
                "Resuming with the stored agent SVID: the join token is used only if the server \
                 rejects it"
            );
        }
        tracing::info!(
            spiffe_id = %redacted_agent_id(&stored.agent_id),
            expiry = %humantime::format_rfc3339_seconds(stored.svid.expires_at),
            "Resuming with the stored agent SVID"
        );
        Self::with_state(config, stored.agent_id, stored.svid, stored.bundle)
    }

    async fn attest(
        config: &AgentConfig,
        token: &JoinToken,
        stored_bundle: Option<Vec<CertificateDer<'static>>>,
    ) -> Result<Self, NodeError> {
        let server = server_id(&config.trust_domain);
        let verifier: Arc<dyn ServerCertVerifier> =
            match (&config.bootstrap, stored_bundle.as_ref()) {
                (Bootstrap::TrustBundle(bundle), _) | (Bootstrap::None, Some(bundle)) => {
                    Arc::new(SpiffeServerVerifier::new(bundle, server)?)
                }
                (Bootstrap::InsecureBootstrap, _) => {
                    tracing::warn!(
                        "Insecure bootstrap: the server's certificate is not verified for this \
                     attestation"
                    );
                    Arc::new(InsecureBootstrapVerifier::insecure_new(server))
                }
                (Bootstrap::None, None) => return Err(NodeError::MissingTrust),
            };
        let agent_id =
            join_token_agent_id(&config.trust_domain, token.expose_secret()).map_err(|_| {
                NodeError::InvalidStore {
                    path: config.data_dir.clone(),
                    reason: "the join token does not form a valid agent SPIFFE ID".to_owned(),
                }
            })?;

        // Attest without a client certificate, then fetch the bundle as the new agent.
        let pending = PendingSvid::generate(&agent_id)?;
        let anonymous = connect(config, Arc::clone(&verifier), None)?;
        let signed = anonymous
            .attest_with_join_token(token.expose_secret(), pending.csr_der().to_vec())
            .await?;
        let svid = pending.complete(signed.cert_chain)?;
        let bundle = connect(config, verifier, Some(&svid))?
            .bundle(&config.trust_domain)
            .await?;

        store::save_bundle(&config.data_dir, &bundle)?;
        store::save_svid(&config.data_dir, &svid)?;
        tracing::info!(
            spiffe_id = %redacted_agent_id(&agent_id),
            expiry = %humantime::format_rfc3339_seconds(svid.expires_at),
            "Node attestation succeeded"
        );
        Self::with_state(config, agent_id, svid, bundle)
    }

    /// Builds a node from an agent SVID and bundle that passed their checks. The connection to
    /// the server opens on first use.
    pub(crate) fn with_state(
        config: &AgentConfig,
        agent_id: SpiffeId,
        svid: X509SvidMaterial,
        bundle: Vec<CertificateDer<'static>>,
    ) -> Result<Self, NodeError> {
        let verifier = SpiffeServerVerifier::new(&bundle, server_id(&config.trust_domain))?;
        let rejection_signal = RejectionSignal::new();
        let outage_log = OutageLog::default();
        let client = connect(config, Arc::new(verifier), Some(&svid))?
            .with_rejection_signal(rejection_signal.clone())
            .with_outage_log(outage_log.clone());
        Ok(Self {
            agent_id,
            trust_domain: config.trust_domain.clone(),
            server_address: config.server_address.clone(),
            data_dir: config.data_dir.clone(),
            rejection_signal,
            outage_log,
            state: Mutex::new(State {
                renew_at: svid::refresh_at(&svid),
                svid: Arc::new(svid),
                bundle,
                client,
            }),
        })
    }

    fn mtls_client(
        &self,
        bundle: &[CertificateDer<'static>],
        svid: &X509SvidMaterial,
    ) -> Result<ServerClient, NodeError> {
        let verifier = SpiffeServerVerifier::new(bundle, server_id(&self.trust_domain))?;
        let tls = channel::client_config(Arc::new(verifier), Some(svid)).map_err(NodeError::Tls)?;
        Ok(
            ServerClient::new(channel::connect_lazy(&self.server_address, tls))
                .with_rejection_signal(self.rejection_signal.clone())
                .with_outage_log(self.outage_log.clone()),
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update replaces whole fields after the fallible work is done, so the state is
        // consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("agent_id", &redacted_agent_id(&self.agent_id))
            .field("server_address", &self.server_address)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

fn connect(
    config: &AgentConfig,
    verifier: Arc<dyn ServerCertVerifier>,
    svid: Option<&X509SvidMaterial>,
) -> Result<ServerClient, NodeError> {
    let tls = channel::client_config(verifier, svid).map_err(NodeError::Tls)?;
    Ok(ServerClient::new(channel::connect_lazy(
        &config.server_address,
        tls,
    )))
}

/// Returns the status message followed by those of its causes that add detail, such as
/// "connection refused", or only why the agent rejected the server's certificate.
pub(crate) fn describe_status(status: &Status) -> String {
    let mut source = StdError::source(status);
    while let Some(cause) = source {
        if let Some(problem) = server_certificate_problem(cause) {
            return problem;
        }
        source = cause.source();
    }

    let mut description = status.message().to_owned();
    let mut source = StdError::source(status);
    while let Some(cause) = source {
        let detail = cause.to_string();
        if !description.contains(&detail) {
            description.push_str(": ");
            description.push_str(&detail);
        }
        source = cause.source();
    }
    description
}

/// Explains why the agent rejected the server's certificate, or returns None when `cause` is
/// not such a rejection. rustls itself shows a custom certificate error through Debug.
fn server_certificate_problem(cause: &(dyn StdError + 'static)) -> Option<String> {
    let tls = cause.downcast_ref::<rustls::Error>().or_else(|| {
        cause
            .downcast_ref::<std::io::Error>()?
            .get_ref()?
            .downcast_ref::<rustls::Error>()
    })?;
    let rustls::Error::InvalidCertificate(problem) = tls else {
        return None;
    };
    match problem {
        CertificateError::Other(other) => match other.0.downcast_ref::<SpiffeIdCheckError>()? {
            SpiffeIdCheckError::Mismatch {
                expected,
                presented,
            } => Some(format!(
                "the server presented SPIFFE ID {presented}, but the agent expects {expected}: \
                 check --trust-domain"
            )),
            other => Some(format!(
                "the server's certificate is not a valid X509-SVID: {other}"
            )),
        },
        CertificateError::BadSignature | CertificateError::UnknownIssuer => Some(
            "the trust bundle does not match the server's CA: the server's certificate does not \
             verify with it (get the current bundle with `signet-server bundle show`)"
                .to_owned(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
