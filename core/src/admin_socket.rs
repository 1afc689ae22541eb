//! Admin sockets: gRPC on a Unix socket that only the daemon's user can open, used by the
//! server's admin API and the agent's debug API, and the client side the CLIs connect with.

use std::fs::{self, Permissions};
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint, Server};

use crate::socket_dir::{SocketDirError, check_socket_dirs};

/// Error from binding an admin socket or connecting to one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminSocketError {
    /// The socket or its directory could not be created, inspected or removed.
    #[error("failed to {action} admin socket {path}")]
    Io {
        /// The operation that failed.
        action: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Another process serves the socket already.
    #[error(
        "admin socket {0} is in use by another process: stop it or choose another --admin-socket"
    )]
    InUse(PathBuf),
    /// The path is taken by something that is not a socket.
    #[error("unsafe admin socket path {path}: {reason}")]
    Unsafe {
        /// The socket path.
        path: PathBuf,
        /// The problem found.
        reason: &'static str,
    },
    /// A directory above the socket lets another user replace it.
    #[error(transparent)]
    UnsafeDirectory(#[from] SocketDirError),
    /// Nothing accepts connections on the socket.
    #[error("failed to connect to the admin socket {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The innermost transport error, which names the OS failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AdminSocketError {
    /// Returns whether the OS denied access to the socket or its directory, which happens to
    /// every user other than the daemon's user and root.
    pub fn is_permission_denied(&self) -> bool {
        let source = match self {
            Self::Io { source, .. } => Some(source),
            Self::Connect { source, .. } => source.downcast_ref::<io::Error>(),
            _ => None,
        };
        source.is_some_and(|source| source.kind() == io::ErrorKind::PermissionDenied)
    }
}

/// Binds the admin socket at `path` with mode 0600.
///
/// A missing parent directory is created with mode 0700, and every directory above the socket
/// must pass [`check_socket_dirs`]. A stale socket left by a stopped daemon
/// is removed, but a socket another process still listens on, or a path that is not a socket, is
/// an error.
///
/// # Errors
///
/// [`AdminSocketError::Io`], [`AdminSocketError::InUse`], [`AdminSocketError::Unsafe`] or
/// [`AdminSocketError::UnsafeDirectory`], naming the path.
pub fn bind(path: &Path) -> Result<UnixListener, AdminSocketError> {
    if let Some(parent) = path.parent().filter(|parent| !parent.exists()) {
        crate::fs::create_private_dir(parent).map_err(io_error("create the directory of", path))?;
    }
    check_socket_dirs(path)?;
    remove_stale_socket(path)?;

    let listener = UnixListener::bind(path).map_err(io_error("bind", path))?;
    fs::set_permissions(path, Permissions::from_mode(SOCKET_MODE))
        .map_err(io_error("set the mode of", path))?;
    Ok(listener)
}

/// Serves `routes` on `listener` until `shutdown` completes.
///
/// # Errors
///
/// The transport error that stopped the server.
///
/// # Cancel safety
///
/// Dropping the future closes the listener at once; complete `shutdown` to let open calls end.
pub async fn serve(
    listener: UnixListener,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}

/// Connects a gRPC channel to the admin socket at `path`.
///
/// Connecting times out after 5 seconds and each call after 30 seconds.
///
/// # Errors
///
/// [`AdminSocketError::Connect`] when the socket does not exist or nothing listens on it.
pub async fn connect(path: &Path) -> Result<Channel, AdminSocketError> {
    let socket = path.to_owned();
    // The URI is required by the builder but unused: every connection goes to the socket.
    let endpoint = Endpoint::from_static("http://localhost")
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    endpoint
        .connect_with_connector(tower::service_fn(move |_| connect_stream(socket.clone())))
        .await
        .map_err(|error| {
            // Keep the OS error's kind, so callers can tell a denied socket from a missing one.
            let cause = root_cause(&error);
            let kind = cause
                .downcast_ref::<io::Error>()
                .map_or(io::ErrorKind::Other, io::Error::kind);
            AdminSocketError::Connect {
                path: path.to_owned(),
                source: Box::new(io::Error::new(kind, cause.to_string())),
            }
        })
}

async fn connect_stream(path: PathBuf) -> io::Result<TokioIo<UnixStream>> {
    Ok(TokioIo::new(UnixStream::connect(path).await?))
}

/// Returns the innermost error, because the transport's own layers only repeat it.
fn root_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AdminSocketError {
    move |source| AdminSocketError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn remove_stale_socket(path: &Path) -> Result<(), AdminSocketError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(io_error("inspect", path)(source)),
    };
    if !metadata.file_type().is_socket() {
        return Err(AdminSocketError::Unsafe {
            path: path.to_owned(),
            reason: "the path exists and is not a socket",
        });
    }
    if StdUnixStream::connect(path).is_ok() {
        return Err(AdminSocketError::InUse(path.to_owned()));
    }
    fs::remove_file(path).map_err(io_error("remove stale", path))
}

/// Mode of an admin socket: connecting needs write access, so only the owner may connect.
const SOCKET_MODE: u32 = 0o600;
/// Time allowed for connecting to an admin socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one call on an admin socket.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test(flavor = "current_thread")]
    async fn socket_and_new_directory_are_private() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("private").join("api.sock");

        let _listener = bind(&path).unwrap();

        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connect_error_keeps_the_os_error_kind() {
        let temp = tempfile::tempdir().unwrap();

        let error = connect(&temp.path().join("missing.sock"))
            .await
            .unwrap_err();

        let source = std::error::Error::source(&error).unwrap();
        let kind = source.downcast_ref::<io::Error>().map(io::Error::kind);
        assert_eq!(kind, Some(io::ErrorKind::NotFound), "{error:?}");
        assert!(!error.is_permission_denied());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stale_socket_is_replaced() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("api.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());

        assert!(bind(&path).is_ok());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn live_socket_is_not_taken_over() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("api.sock");
        let _first = bind(&path).unwrap();

        let error = bind(&path).unwrap_err();

        assert!(matches!(error, AdminSocketError::InUse(_)), "{error:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn regular_file_is_not_removed() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("api.sock");
        fs::write(&path, b"data").unwrap();

        let error = bind(&path).unwrap_err();

        assert!(
            matches!(error, AdminSocketError::Unsafe { .. }),
            "{error:?}"
        );
        assert!(path.exists());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn world_writable_directory_is_rejected_before_binding() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("open");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
        let path = dir.join("admin.sock");

        let error = bind(&path).unwrap_err();

        assert!(
            matches!(error, AdminSocketError::UnsafeDirectory(_)),
            "{error:?}"
        );
        assert!(!path.exists());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connect_to_missing_socket_names_the_path() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("missing.sock");

        let error = connect(&path).await.unwrap_err();

        assert!(
            matches!(&error, AdminSocketError::Connect { path: named, .. } if *named == path),
            "{error:?}"
        );
    }
}
