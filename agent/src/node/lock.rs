//! An exclusive lock on the agent's data directory, so two agents never share one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use signet_core::fs::create_private_dir;

use super::NodeError;

/// The lock on a data directory, held until dropped. The kernel also releases it when the
/// process exits, so a crashed agent leaves no stale lock behind.
#[derive(Debug)]
pub struct DataDirLock {
    _file: Flock<File>,
}

impl DataDirLock {
    /// Creates the data directory if needed (mode 0700) and takes an exclusive `flock` on its
    /// `lock` file without waiting.
    ///
    /// # Errors
    ///
    /// [`NodeError::DataDirInUse`] when another process holds the lock, [`NodeError::Store`]
    /// when the directory or the lock file cannot be created or locked.
    pub fn acquire(data_dir: &Path) -> Result<Self, NodeError> {
        let store_error = |path: &Path, source| NodeError::Store {
            path: path.to_owned(),
            source,
        };
        create_private_dir(data_dir).map_err(|source| store_error(data_dir, source))?;
        let path = data_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(LOCK_FILE_MODE)
            .open(&path)
            .map_err(|source| store_error(&path, source))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(Self { _file: file }),
            Err((_, Errno::EWOULDBLOCK)) => Err(NodeError::DataDirInUse(data_dir.to_owned())),
            Err((_, errno)) => Err(store_error(&path, io::Error::from(errno))),
        }
    }
}

const LOCK_FILE: &str = "lock";
const LOCK_FILE_MODE: u32 = 0o600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_one_directory_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");

        let first = DataDirLock::acquire(&data_dir).unwrap();
        let error = DataDirLock::acquire(&data_dir).unwrap_err();
        assert!(matches!(&error, NodeError::DataDirInUse(path) if path == &data_dir));
        assert!(error.to_string().contains("--data-dir"), "{error}");

        drop(first);
        DataDirLock::acquire(&data_dir).unwrap();
    }
}
