//! The service's own identity from the SPIFFE Workload API: its X509-SVID and bundles, kept
//! current by the agent's stream, and the TLS configurations built on them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use spiffe::x509_source::SvidPicker;
use spiffe::{
    JwtSource, JwtSourceError, JwtSvid, SpiffeId, WorkloadApiClient, X509Source, X509SourceError,
    X509Svid,
};
use tokio::sync::OnceCell;

use crate::tls::AllowedPeers;

/// The environment variable that names the Workload API endpoint, as the SPIFFE Workload
/// Endpoint specification defines it.
pub const ENDPOINT_SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// How long [`WorkloadIdentityBuilder::build`] waits for the first X509-SVID unless
/// [`WorkloadIdentityBuilder::initial_sync_timeout`] sets another bound.
pub const DEFAULT_INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a failed [`WorkloadIdentityBuilder::build`] spends listing the served SVIDs for its
/// error message.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(5);

/// The service's identity: a live [`X509Source`] on the Workload API.
///
/// New TLS handshakes use the latest X509-SVID and bundle, so rotation needs no restart;
/// established connections keep the certificates they started with.
#[derive(Clone, Debug)]
pub struct WorkloadIdentity {
    endpoint: String,
    x509: X509Source,
    /// The JWT source, connected on first use and shared by every clone.
    jwt: Arc<OnceCell<JwtSource>>,
}

/// Builds a [`WorkloadIdentity`].
#[derive(Clone, Debug, Default)]
pub struct WorkloadIdentityBuilder {
    endpoint: Option<String>,
    selection: Option<SvidSelection>,
    initial_sync_timeout: Option<Duration>,
}

/// The choice of X509-SVID when the Workload API serves several.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum SvidSelection {
    /// The SVID with this hint, as set on its registration entry.
    Hint(String),
    /// The SVID with this SPIFFE ID.
    SpiffeId(SpiffeId),
}

/// Error from the Workload API or from building a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadIdentityError {
    /// No endpoint was given and `SPIFFE_ENDPOINT_SOCKET` is not set.
    #[error(
        "SPIFFE_ENDPOINT_SOCKET is not set: set it to the agent's socket (unix:/path) or pass \
         the socket path"
    )]
    NoEndpoint,
    /// The X509-SVID could not be obtained: the agent is unreachable, serves this process no
    /// SVID, or serves none that the [`SvidSelection`] picks.
    #[error("cannot get an X509-SVID from the Workload API at {endpoint}")]
    X509Source {
        /// The Workload API endpoint.
        endpoint: String,
        /// The `spiffe` crate's error.
        #[source]
        source: X509SourceError,
    },
    /// The endpoint names a Unix socket that does not exist.
    #[error(
        "no socket at {path} (Workload API endpoint {endpoint}): start the agent, or pass the \
         path of its socket"
    )]
    NoSocket {
        /// The Workload API endpoint.
        endpoint: String,
        /// The missing socket.
        path: PathBuf,
    },
    /// The agent serves SVIDs, but none that the [`SvidSelection`] picks.
    #[error("the agent at {endpoint} serves no SVID with {selection}; it serves: {served}")]
    NotServed {
        /// The Workload API endpoint.
        endpoint: String,
        /// The selection, such as `SPIFFE ID spiffe://example.org/orders`.
        selection: String,
        /// The SPIFFE IDs (and hints) the agent serves this process.
        served: String,
    },
    /// The JWT bundles could not be obtained from the Workload API.
    #[error("cannot get JWT bundles from the Workload API at {endpoint}")]
    JwtSource {
        /// The Workload API endpoint.
        endpoint: String,
        /// The `spiffe` crate's error.
        #[source]
        source: JwtSourceError,
    },
    /// The Workload API did not issue a JWT-SVID for this identity.
    #[error("cannot get a JWT-SVID for {spiffe_id} from the Workload API at {endpoint}")]
    JwtSvid {
        /// The Workload API endpoint.
        endpoint: String,
        /// The SPIFFE ID the JWT-SVID was requested for.
        spiffe_id: String,
        /// The `spiffe` crate's error.
        #[source]
        source: JwtSourceError,
    },
    /// The TLS configuration could not be built from the source.
    #[error("cannot build the TLS configuration from the X509-SVID")]
    Tls(#[source] spiffe_rustls::Error),
}

/// Picks the SVID a [`SvidSelection`] names.
#[derive(Debug)]
struct SelectionPicker(SvidSelection);

// === impl WorkloadIdentity ===

impl WorkloadIdentity {
    /// Returns a builder that connects to `SPIFFE_ENDPOINT_SOCKET` and uses the first SVID.
    pub fn builder() -> WorkloadIdentityBuilder {
        WorkloadIdentityBuilder::default()
    }

    /// Returns the Workload API endpoint, such as `unix:/run/signet/api.sock`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Returns the underlying source, for uses this crate does not cover.
    pub fn x509_source(&self) -> &X509Source {
        &self.x509
    }

    /// Returns the SPIFFE ID of the current X509-SVID.
    ///
    /// # Errors
    ///
    /// [`WorkloadIdentityError::X509Source`] when the source has no usable SVID.
    pub fn spiffe_id(&self) -> Result<SpiffeId, WorkloadIdentityError> {
        self.x509
            .svid()
            .map(|svid| svid.spiffe_id().clone())
            .map_err(|source| self.x509_error(source))
    }

    /// Returns a server configuration that requires a client X509-SVID whose SPIFFE ID one of
    /// `peers` matches, and offers HTTP/2 and HTTP/1.1 through ALPN.
    ///
    /// A client without a certificate, or with one the bundle does not verify or `peers` does
    /// not allow, fails the handshake.
    ///
    /// # Errors
    ///
    /// [`WorkloadIdentityError::Tls`] when the configuration cannot be built.
    pub fn server_config(
        &self,
        peers: AllowedPeers,
    ) -> Result<ServerConfig, WorkloadIdentityError> {
        spiffe_rustls::mtls_server(self.x509.clone())
            .authorize(peers)
            .with_alpn_protocols([b"h2".as_slice(), b"http/1.1".as_slice()])
            .build()
            .map_err(WorkloadIdentityError::Tls)
    }

    /// Returns a client configuration that presents this identity's X509-SVID and requires a
    /// server X509-SVID whose SPIFFE ID one of `servers` matches. The server name the client
    /// dials plays no part. Set `alpn_protocols` on the result for HTTP/2.
    ///
    /// # Errors
    ///
    /// [`WorkloadIdentityError::Tls`] when the configuration cannot be built.
    pub fn client_config(
        &self,
        servers: AllowedPeers,
    ) -> Result<ClientConfig, WorkloadIdentityError> {
        spiffe_rustls::mtls_client(self.x509.clone())
            .authorize(servers)
            .build()
            .map_err(WorkloadIdentityError::Tls)
    }

    /// Returns a [`JwtSource`] on the same Workload API: it keeps the JWT bundles current, for
    /// [`CallerJwt`](crate::CallerJwt). The source is connected on the first call and shared by
    /// every later call and every clone of this identity.
    ///
    /// For outgoing calls use [`fetch_jwt_svid`](Self::fetch_jwt_svid): the source's own
    /// `fetch_jwt_svid` requests the agent's default identity, which is not this identity when
    /// the builder selected another SVID.
    ///
    /// # Errors
    ///
    /// [`WorkloadIdentityError::JwtSource`] when the first JWT bundles cannot be fetched.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled call leaves no source behind.
    pub async fn jwt_source(&self) -> Result<JwtSource, WorkloadIdentityError> {
        let connect = || async {
            JwtSource::builder()
                .endpoint(&self.endpoint)
                .build()
                .await
                .map_err(|source| WorkloadIdentityError::JwtSource {
                    endpoint: self.endpoint.clone(),
                    source,
                })
        };
        self.jwt.get_or_try_init(connect).await.cloned()
    }

    /// Fetches a JWT-SVID for `audiences` whose subject is this identity's SPIFFE ID, the one of
    /// the current X509-SVID, so that the token and the mutual TLS identity always agree.
    ///
    /// # Errors
    ///
    /// [`WorkloadIdentityError::X509Source`] when the source has no usable X509-SVID,
    /// [`WorkloadIdentityError::JwtSource`] when the JWT source cannot connect, and
    /// [`WorkloadIdentityError::JwtSvid`] when the agent issues no JWT-SVID for this identity.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn fetch_jwt_svid<I>(&self, audiences: I) -> Result<JwtSvid, WorkloadIdentityError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let spiffe_id = self.spiffe_id()?;
        self.jwt_source()
            .await?
            .fetch_jwt_svid_with_id(audiences, Some(&spiffe_id))
            .await
            .map_err(|source| WorkloadIdentityError::JwtSvid {
                endpoint: self.endpoint.clone(),
                spiffe_id: spiffe_id.to_string(),
                source,
            })
    }

    fn x509_error(&self, source: X509SourceError) -> WorkloadIdentityError {
        WorkloadIdentityError::X509Source {
            endpoint: self.endpoint.clone(),
            source,
        }
    }
}

// === impl WorkloadIdentityBuilder ===

impl WorkloadIdentityBuilder {
    /// Sets the path of the agent's Workload API socket, instead of `SPIFFE_ENDPOINT_SOCKET`.
    /// A relative path is taken from the current directory.
    #[must_use]
    pub fn socket_path(mut self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        // `absolute` fails only for an empty path, which the endpoint parser then reports.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        self.endpoint = Some(format!("unix:{}", path.display()));
        self
    }

    /// Sets the Workload API endpoint as a URI (`unix:///path` or `unix:/path`), instead of
    /// `SPIFFE_ENDPOINT_SOCKET`.
    #[must_use]
    pub fn endpoint(mut self, uri: impl Into<String>) -> Self {
        self.endpoint = Some(uri.into());
        self
    }

    /// Chooses the X509-SVID by hint or SPIFFE ID when the Workload API serves several. Without
    /// it the first, which the specification makes the default, is used.
    #[must_use]
    pub fn svid(mut self, selection: SvidSelection) -> Self {
        self.selection = Some(selection);
        self
    }

    /// Bounds the wait for the first X509-SVID; the default is
    /// [`DEFAULT_INITIAL_SYNC_TIMEOUT`] (30 seconds).
    #[must_use]
    pub fn initial_sync_timeout(mut self, timeout: Duration) -> Self {
        self.initial_sync_timeout = Some(timeout);
        self
    }

    /// Connects to the Workload API and waits for the first X509-SVID.
    ///
    /// # Errors
    ///
    /// [`WorkloadIdentityError::NoEndpoint`] when no endpoint is known,
    /// [`WorkloadIdentityError::NoSocket`] when the endpoint's socket does not exist,
    /// [`WorkloadIdentityError::NotServed`] when no served SVID fits the selection, and
    /// [`WorkloadIdentityError::X509Source`] when the endpoint is invalid or the wait times out
    /// for another reason.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled call leaves no source behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use signet_sdk::{SvidSelection, WorkloadIdentity};
    ///
    /// # async fn run() -> Result<(), signet_sdk::WorkloadIdentityError> {
    /// let identity = WorkloadIdentity::builder()
    ///     .socket_path("/tmp/signet-agent/public/api.sock")
    ///     .svid(SvidSelection::Hint("orders".to_owned()))
    ///     .build()
    ///     .await?;
    /// println!("running as {}", identity.spiffe_id()?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn build(self) -> Result<WorkloadIdentity, WorkloadIdentityError> {
        let endpoint = match self.endpoint {
            Some(endpoint) => endpoint,
            None => {
                std::env::var(ENDPOINT_SOCKET_ENV).map_err(|_| WorkloadIdentityError::NoEndpoint)?
            }
        };
        let mut builder = X509Source::builder()
            .endpoint(&endpoint)
            .initial_sync_timeout(
                self.initial_sync_timeout
                    .unwrap_or(DEFAULT_INITIAL_SYNC_TIMEOUT),
            );
        if let Some(selection) = self.selection.clone() {
            builder = builder.picker(SelectionPicker(selection));
        }
        match builder.build().await {
            Ok(x509) => Ok(WorkloadIdentity {
                endpoint,
                x509,
                jwt: Arc::default(),
            }),
            Err(source) => Err(diagnose(endpoint, self.selection.as_ref(), source).await),
        }
    }
}

/// Turns a failed first sync into the most precise error: a missing socket, an SVID the agent
/// does not serve, or the `spiffe` crate's error.
async fn diagnose(
    endpoint: String,
    selection: Option<&SvidSelection>,
    source: X509SourceError,
) -> WorkloadIdentityError {
    if let Some(path) = socket_path(&endpoint).filter(|path| !path.exists()) {
        return WorkloadIdentityError::NoSocket { endpoint, path };
    }
    let Some(selection) = selection else {
        return WorkloadIdentityError::X509Source { endpoint, source };
    };
    let fetch = async {
        let client = WorkloadApiClient::connect_to(&endpoint).await.ok()?;
        client.fetch_all_x509_svids().await.ok()
    };
    match tokio::time::timeout(DIAGNOSIS_TIMEOUT, fetch).await {
        Ok(Some(svids)) if !svids.is_empty() => WorkloadIdentityError::NotServed {
            selection: selection.to_string(),
            served: served(&svids),
            endpoint,
        },
        _ => WorkloadIdentityError::X509Source { endpoint, source },
    }
}

/// Returns the socket path of a `unix:` endpoint.
fn socket_path(endpoint: &str) -> Option<PathBuf> {
    let rest = endpoint.strip_prefix("unix:")?;
    let path = rest.strip_prefix("//").unwrap_or(rest);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Lists served SVIDs as `spiffe://… (hint h)`, separated by commas.
fn served(svids: &[X509Svid]) -> String {
    svids
        .iter()
        .map(|svid| match svid.hint() {
            Some(hint) => format!("{} (hint {hint})", svid.spiffe_id()),
            None => svid.spiffe_id().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// === impl SvidSelection ===

impl std::fmt::Display for SvidSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hint(hint) => write!(f, "hint {hint:?}"),
            Self::SpiffeId(id) => write!(f, "SPIFFE ID {id}"),
        }
    }
}

// === impl SelectionPicker ===

impl SvidPicker for SelectionPicker {
    fn pick_svid(&self, svids: &[Arc<X509Svid>]) -> Option<usize> {
        svids.iter().position(|svid| match &self.0 {
            SvidSelection::Hint(hint) => svid.hint() == Some(hint.as_str()),
            SvidSelection::SpiffeId(id) => svid.spiffe_id() == id,
        })
    }
}
