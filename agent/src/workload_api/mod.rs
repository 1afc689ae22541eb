//! The SPIFFE Workload API server on a Unix socket.
//!
//! Every local user may connect: the socket is mode 0777, and the `unix` workload attestor, not
//! file permissions, decides what each caller receives. JWT-SVIDs are signed by the server
//! through a [`JwtSigner`] and cached by the agent.

mod authority;
mod connection;
mod delivery;
mod jwt;
mod matching;
mod service;
mod stream;

use std::fs::{self, DirBuilder, Permissions};
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use signet_core::socket_dir::{SocketDirError, check_socket_dirs};
use signet_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;
use tracing::{debug, info, warn};

use self::service::{WorkloadApiService, check_security_header};
use crate::cache::Cache;
use crate::jwt::JwtSigner;
use crate::metrics::{AgentMetrics, RecordCallsLayer};

pub(crate) use self::matching::{EntitledIdentity, match_identities};
pub(crate) use self::service::error_chain;

/// A bound Workload API socket, ready to serve.
#[derive(Debug)]
pub struct WorkloadApiListener {
    listener: UnixListener,
    socket_path: PathBuf,
    jwt_signer: Option<Arc<dyn JwtSigner>>,
    metrics: AgentMetrics,
    health: Option<HealthServer<HealthService>>,
}

/// Error from binding or serving the Workload API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadApiError {
    /// The socket's parent directory could not be created.
    #[error("creating the Workload API socket directory {path} failed")]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Something other than a socket exists at the socket path, so it is left alone.
    #[error("{path} exists and is not a socket; remove it or choose another --socket-path")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// Another process accepts connections on the socket.
    #[error("socket {path} is in use by another agent: stop it or choose another --socket-path")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// A directory above the socket lets another user replace it.
    #[error(transparent)]
    UnsafeDirectory(#[from] SocketDirError),
    /// A stale socket could not be removed.
    #[error("removing the stale Workload API socket {path} failed")]
    RemoveStaleSocket {
        /// The socket path.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Binding or opening up the socket failed.
    #[error("binding the Workload API socket {path} failed")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The gRPC server failed.
    #[error("the Workload API server failed")]
    Serve(#[source] tonic::transport::Error),
}

/// Serves the Workload API on `socket_path` from `cache`, with JWT-SVIDs from `jwt_signer`,
/// until `shutdown` completes.
///
/// # Errors
///
/// As for [`WorkloadApiListener::bind`] and [`WorkloadApiListener::serve`].
///
/// # Cancel safety
///
/// Dropping the future stops accepting connections at once but leaves the socket file behind;
/// complete `shutdown` instead to end open streams and remove the socket.
pub async fn serve(
    socket_path: &Path,
    cache: Cache,
    jwt_signer: Arc<dyn JwtSigner>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkloadApiError> {
    WorkloadApiListener::bind(socket_path)?
        .with_jwt_signer(jwt_signer)
        .serve(cache, shutdown)
        .await
}

// === impl WorkloadApiListener ===

impl WorkloadApiListener {
    /// Binds the Workload API socket at `socket_path`.
    ///
    /// Creates a missing parent directory with mode 0755, replaces a stale socket file (one
    /// that refuses connections) and makes the new socket mode 0777. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`WorkloadApiError::NotASocket`] when a file that is not a socket is in the way,
    /// [`WorkloadApiError::InUse`] when another process serves the socket,
    /// [`WorkloadApiError::CreateDirectory`], [`WorkloadApiError::RemoveStaleSocket`] and
    /// [`WorkloadApiError::Bind`] for the failing step.
    pub fn bind(socket_path: &Path) -> Result<Self, WorkloadApiError> {
        prepare_socket_path(socket_path)?;

        let bind_error = |source| WorkloadApiError::Bind {
            path: socket_path.to_path_buf(),
            source,
        };
        let listener = UnixListener::bind(socket_path).map_err(bind_error)?;
        fs::set_permissions(socket_path, Permissions::from_mode(SOCKET_MODE))
            .map_err(bind_error)?;

        Ok(Self {
            listener,
            socket_path: socket_path.to_path_buf(),
            jwt_signer: None,
            metrics: AgentMetrics::default(),
            health: None,
        })
    }

    /// Sets what signs the JWT-SVIDs that `FetchJWTSVID` returns. Without it, `FetchJWTSVID`
    /// returns `Unavailable`, which only tests of the X.509 half rely on.
    #[must_use]
    pub fn with_jwt_signer(mut self, jwt_signer: Arc<dyn JwtSigner>) -> Self {
        self.jwt_signer = Some(jwt_signer);
        self
    }

    /// Sets the metrics that record the calls and the workload attestations.
    #[must_use]
    pub fn with_metrics(mut self, metrics: AgentMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Serves `grpc.health.v1.Health` on the socket too. The security header is not required
    /// for it, because it returns nothing but the agent's readiness.
    #[must_use]
    pub fn with_health(mut self, health: HealthServer<HealthService>) -> Self {
        self.health = Some(health);
        self
    }

    /// Returns the path of the bound socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Serves the Workload API from `cache` until `shutdown` completes, then ends the open
    /// streams with `Unavailable`, waits for connections to close (at most
    /// [`SHUTDOWN_GRACE`]) and removes the socket file.
    ///
    /// # Errors
    ///
    /// [`WorkloadApiError::Serve`] when the gRPC server fails.
    ///
    /// # Cancel safety
    ///
    /// As for [`serve`].
    pub async fn serve(
        self,
        cache: Cache,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), WorkloadApiError> {
        let (stop, stopping) = watch::channel(false);
        let service = WorkloadApiService::new(
            cache,
            self.jwt_signer,
            stopping.clone(),
            self.metrics.clone(),
        );
        let mut server = pin!(
            Server::builder()
                .layer(RecordCallsLayer::new(self.metrics))
                .add_service(InterceptedService::new(
                    SpiffeWorkloadApiServer::new(service)
                        .max_decoding_message_size(MAX_REQUEST_BYTES),
                    check_security_header,
                ))
                .add_optional_service(self.health)
                .serve_with_incoming_shutdown(
                    connection::incoming(self.listener),
                    wait_until_stopping(stopping),
                )
        );
        info!(socket_path = %self.socket_path.display(), "Workload API listening");

        let result = tokio::select! {
            result = &mut server => result,
            () = shutdown => {
                stop.send_replace(true);
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        warn!("Workload API connections still open after the shutdown grace period");
                        Ok(())
                    }
                }
            }
        };

        remove_socket(&self.socket_path);
        result.map_err(WorkloadApiError::Serve)
    }
}

/// Makes `socket_path` ready for [`WorkloadApiListener::bind`]: creates a missing parent
/// directory with mode 0755, checks that no other user can replace the socket
/// ([`check_socket_dirs`]) and removes a stale socket file (one that refuses connections).
///
/// # Errors
///
/// [`WorkloadApiError::InUse`] when another process serves the socket,
/// [`WorkloadApiError::NotASocket`] when a file that is not a socket is in the way,
/// [`WorkloadApiError::UnsafeDirectory`] when a directory above the socket is open to other
/// users, [`WorkloadApiError::CreateDirectory`] and [`WorkloadApiError::RemoveStaleSocket`] for the
/// failing step.
pub fn prepare_socket_path(socket_path: &Path) -> Result<(), WorkloadApiError> {
    create_parent_directory(socket_path)?;
    check_socket_dirs(socket_path)?;
    remove_stale_socket(socket_path)
}

async fn wait_until_stopping(mut stopping: watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Creates the missing directories above the socket with mode 0755, whatever the umask, so that
/// every local user can reach the socket. Existing directories keep their mode.
fn create_parent_directory(socket_path: &Path) -> Result<(), WorkloadApiError> {
    let missing: Vec<&Path> = socket_path
        .ancestors()
        .skip(1)
        .filter(|directory| !directory.as_os_str().is_empty())
        .take_while(|directory| !directory.exists())
        .collect();

    for directory in missing.into_iter().rev() {
        let create_error = |source| WorkloadApiError::CreateDirectory {
            path: directory.to_path_buf(),
            source,
        };
        match DirBuilder::new().mode(DIRECTORY_MODE).create(directory) {
            Ok(()) => fs::set_permissions(directory, Permissions::from_mode(DIRECTORY_MODE))
                .map_err(create_error)?,
            // Another process created it in the meantime, so its mode is that process's choice.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(create_error(error)),
        }
    }
    Ok(())
}

fn remove_stale_socket(socket_path: &Path) -> Result<(), WorkloadApiError> {
    let stale_error = |source| WorkloadApiError::RemoveStaleSocket {
        path: socket_path.to_path_buf(),
        source,
    };
    let file_type = match fs::symlink_metadata(socket_path) {
        Ok(metadata) => metadata.file_type(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(stale_error(error)),
    };
    if !file_type.is_socket() {
        return Err(WorkloadApiError::NotASocket {
            path: socket_path.to_path_buf(),
        });
    }
    // Only a socket that refuses connections is stale; a live one belongs to another agent.
    match StdUnixStream::connect(socket_path) {
        Ok(_) => {
            return Err(WorkloadApiError::InUse {
                path: socket_path.to_path_buf(),
            });
        }
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(error) => return Err(stale_error(error)),
    }
    debug!(socket_path = %socket_path.display(), "Removing stale Workload API socket");
    fs::remove_file(socket_path).map_err(stale_error)
}

fn remove_socket(socket_path: &Path) {
    match fs::remove_file(socket_path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            warn!(socket_path = %socket_path.display(), %error, "Removing the Workload API socket failed");
        }
    }
}

/// How long shutdown waits for clients to close their connections after the streams ended.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Maximum size of a request message the Workload API decodes. It is far above what any request
/// needs (the agent reads JWT-SVIDs of at most [`MAX_TOKEN_BYTES`](crate::jwt::MAX_TOKEN_BYTES)),
/// so that an oversized
/// token up to this size is rejected with InvalidArgument naming the token limit rather than a
/// transport error. Above it, tonic rejects the request with OutOfRange.
const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
const DIRECTORY_MODE: u32 = 0o755;
const SOCKET_MODE: u32 = 0o777;

#[cfg(test)]
mod jwt_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
