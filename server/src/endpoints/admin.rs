//! The admin endpoint: every API on a Unix socket that only the server's user can open.

use std::fs::{self, Permissions};
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::service::Routes;
use tonic::transport::Server;

use super::EndpointError;

/// Mode of the admin socket: connecting needs write access, so only the owner may connect.
const SOCKET_MODE: u32 = 0o600;

/// Binds the admin socket at `path`.
///
/// A missing parent directory is created with mode 0700. A stale socket left by a stopped server
/// is removed, but a socket another server still listens on, or a path that is not a socket, is
/// an error.
///
/// # Errors
///
/// [`EndpointError`] naming the path.
pub fn bind_admin_socket(path: &Path) -> Result<UnixListener, EndpointError> {
    let error = |action| {
        move |source| EndpointError::AdminSocket {
            action,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(parent) = path.parent().filter(|parent| !parent.exists()) {
        signet_core::fs::create_private_dir(parent).map_err(error("create the directory of"))?;
    }
    remove_stale_socket(path)?;

    let listener = UnixListener::bind(path).map_err(error("bind"))?;
    fs::set_permissions(path, Permissions::from_mode(SOCKET_MODE))
        .map_err(error("set the mode of"))?;
    check_parent_owner(path)?;
    Ok(listener)
}

/// Serves `routes` on the admin socket until `shutdown` completes.
///
/// # Errors
///
/// The transport error that stopped the server.
pub async fn serve_admin_api(
    listener: UnixListener,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}

fn remove_stale_socket(path: &Path) -> Result<(), EndpointError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(EndpointError::AdminSocket {
                action: "inspect",
                path: path.to_owned(),
                source,
            });
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(EndpointError::UnsafeAdminSocket {
            path: path.to_owned(),
            reason: "the path exists and is not a socket",
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(EndpointError::AdminSocketInUse(path.to_owned()));
    }
    fs::remove_file(path).map_err(|source| EndpointError::AdminSocket {
        action: "remove stale",
        path: path.to_owned(),
        source,
    })
}

/// Rejects a socket directory that another (non-root) user owns, because that user could
/// replace the socket with one of their own.
fn check_parent_owner(path: &Path) -> Result<(), EndpointError> {
    let owner = |path: &Path| fs::metadata(path).map(|metadata| metadata.uid());
    let (Some(parent), Ok(socket_owner)) = (path.parent(), owner(path)) else {
        return Ok(());
    };
    match owner(parent) {
        Ok(dir_owner) if dir_owner != socket_owner && dir_owner != 0 => {
            let _ = fs::remove_file(path);
            Err(EndpointError::UnsafeAdminSocket {
                path: path.to_owned(),
                reason: "its directory belongs to another user",
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test(flavor = "current_thread")]
    async fn socket_and_new_directory_are_private() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("private").join("api.sock");

        let _listener = bind_admin_socket(&path).unwrap();

        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stale_socket_is_replaced() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("api.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());

        assert!(bind_admin_socket(&path).is_ok());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn live_socket_is_not_taken_over() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("api.sock");
        let _first = bind_admin_socket(&path).unwrap();

        let error = bind_admin_socket(&path).unwrap_err();

        assert!(
            matches!(error, EndpointError::AdminSocketInUse(_)),
            "{error:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn regular_file_is_not_removed() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("api.sock");
        fs::write(&path, b"data").unwrap();

        let error = bind_admin_socket(&path).unwrap_err();

        assert!(
            matches!(error, EndpointError::UnsafeAdminSocket { .. }),
            "{error:?}"
        );
        assert!(path.exists());
    }
}
