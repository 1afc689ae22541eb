//! Checks that no other user can replace a daemon's Unix socket. Every directory above the
//! socket must be owned by the daemon's effective user or root. It must not be writable by group
//! or others unless it has the sticky bit.
//!
//! A user who can write to any of those directories could rename the socket, or a directory
//! that contains it, and bind a socket of their own in its place, so clients would talk to them.
//! The sticky bit (as on `/tmp`) stops others from renaming entries they do not own.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Error from checking the directories above a socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketDirError {
    /// A directory could not be inspected.
    #[error("failed to inspect the socket directory {path}")]
    Inspect {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A directory belongs to a user other than the daemon's and root.
    #[error(
        "unsafe socket directory {path}: owned by uid {owner} (mode {mode:o}), but the daemon runs \
         as uid {euid}, so that user could replace the socket; choose a socket path whose \
         directories belong to uid {euid} or root"
    )]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// The directory's owner.
        owner: u32,
        /// The directory's permission bits.
        mode: u32,
        /// The daemon's effective user ID.
        euid: u32,
    },
    /// Group or others may write to a directory without the sticky bit.
    #[error(
        "unsafe socket directory {path}: owned by uid {owner} with mode {mode:o}, which lets other \
         users replace the socket; run `chmod go-w {path}` (or `chmod +t` for a shared directory \
         such as /tmp) or choose another socket path"
    )]
    Writable {
        /// The directory.
        path: PathBuf,
        /// The directory's owner.
        owner: u32,
        /// The directory's permission bits.
        mode: u32,
    },
}

/// Checks every directory from the parent of `socket_path` up to `/` against the rule in the
/// module docs. Relative paths are resolved against the current directory first.
///
/// The walk covers the path as written and the path with symbolic links resolved. The kernel
/// follows a link when it resolves the socket path, so the directories above the link's target
/// must be safe too, and the link itself can only be replaced through the directory it is in.
///
/// # Errors
///
/// [`SocketDirError::ForeignOwner`] or [`SocketDirError::Writable`] for the first directory that
/// breaks the rule, and [`SocketDirError::Inspect`] when one cannot be read (for example because
/// it does not exist yet).
pub fn check_socket_dirs(socket_path: &Path) -> Result<(), SocketDirError> {
    let euid = nix::unistd::geteuid().as_raw();
    let inspect_error = |path: &Path| {
        let path = path.to_owned();
        move |source| SocketDirError::Inspect { path, source }
    };
    let absolute = std::path::absolute(socket_path).map_err(inspect_error(socket_path))?;
    let parent = absolute.parent().unwrap_or(&absolute);
    let resolved = fs::canonicalize(parent).map_err(inspect_error(parent))?;

    parent
        .ancestors()
        .chain(resolved.ancestors())
        .try_for_each(|dir| check_dir(dir, euid))
}

fn check_dir(dir: &Path, euid: u32) -> Result<(), SocketDirError> {
    let metadata = fs::metadata(dir).map_err(|source| SocketDirError::Inspect {
        path: dir.to_owned(),
        source,
    })?;
    let owner = metadata.uid();
    let mode = metadata.mode() & 0o7777;
    if owner != euid && owner != ROOT_UID {
        return Err(SocketDirError::ForeignOwner {
            path: dir.to_owned(),
            owner,
            mode,
            euid,
        });
    }
    if mode & GROUP_OTHER_WRITE != 0 && mode & STICKY == 0 {
        return Err(SocketDirError::Writable {
            path: dir.to_owned(),
            owner,
            mode,
        });
    }
    Ok(())
}

const ROOT_UID: u32 = 0;
const GROUP_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, chown};

    use super::*;

    const OTHER_UID: u32 = 65534;

    fn socket_in(dir: &Path, mode: u32, owner: Option<u32>) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
        chown(dir, owner, None).unwrap();
        dir.join("api.sock")
    }

    #[test]
    fn accepts_own_private_directory() {
        let temp = tempfile::tempdir().unwrap();
        let socket = socket_in(&temp.path().join("public"), 0o755, None);

        check_socket_dirs(&socket).unwrap();
    }

    #[test]
    fn accepts_sticky_world_writable_directory() {
        let temp = tempfile::tempdir().unwrap();
        let socket = socket_in(&temp.path().join("shared"), 0o1777, None);

        check_socket_dirs(&socket).unwrap();
    }

    #[test]
    fn rejects_world_writable_directory() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("public");
        let socket = socket_in(&dir, 0o777, None);

        let error = check_socket_dirs(&socket).unwrap_err();

        assert!(
            matches!(&error, SocketDirError::Writable { path, mode: 0o777, .. } if *path == dir),
            "{error:?}"
        );
    }

    #[test]
    fn rejects_group_writable_directory() {
        let temp = tempfile::tempdir().unwrap();
        let socket = socket_in(&temp.path().join("public"), 0o775, None);

        let error = check_socket_dirs(&socket).unwrap_err();

        assert!(
            matches!(error, SocketDirError::Writable { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn rejects_writable_ancestor() {
        let temp = tempfile::tempdir().unwrap();
        let ancestor = temp.path().join("open");
        socket_in(&ancestor, 0o777, None);
        let socket = socket_in(&ancestor.join("public"), 0o755, None);

        let error = check_socket_dirs(&socket).unwrap_err();

        assert!(
            matches!(&error, SocketDirError::Writable { path, .. } if *path == ancestor),
            "{error:?}"
        );
    }

    /// Needs root for `chown`, as the test suite runs.
    #[test]
    fn rejects_directory_of_another_user() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("D");
        socket_in(&dir, 0o755, Some(OTHER_UID));
        let socket = socket_in(&dir.join("public"), 0o755, None);

        let error = check_socket_dirs(&socket).unwrap_err();

        assert!(
            matches!(
                &error,
                SocketDirError::ForeignOwner { path, owner: OTHER_UID, .. } if *path == dir
            ),
            "{error:?}"
        );
    }

    /// Needs root for `chown`, as the test suite runs.
    #[test]
    fn rejects_link_into_directory_of_another_user() {
        let temp = tempfile::tempdir().unwrap();
        let foreign = temp.path().join("foreign");
        socket_in(&foreign, 0o755, Some(OTHER_UID));
        socket_in(&foreign.join("inner"), 0o755, None);
        let link = temp.path().join("link");
        std::os::unix::fs::symlink(foreign.join("inner"), &link).unwrap();

        let error = check_socket_dirs(&link.join("api.sock")).unwrap_err();

        assert!(
            matches!(&error, SocketDirError::ForeignOwner { path, .. } if *path == foreign),
            "{error:?}"
        );
    }

    #[test]
    fn rejects_missing_directory() {
        let temp = tempfile::tempdir().unwrap();
        let socket = temp.path().join("missing").join("api.sock");

        let error = check_socket_dirs(&socket).unwrap_err();

        assert!(matches!(error, SocketDirError::Inspect { .. }), "{error:?}");
    }

    #[test]
    fn error_names_directory_owner_and_mode() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("public");
        let socket = socket_in(&dir, 0o777, None);

        let message = check_socket_dirs(&socket).unwrap_err().to_string();

        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(message.contains("mode 777"), "{message}");
        assert!(message.contains("chmod go-w"), "{message}");
    }
}
