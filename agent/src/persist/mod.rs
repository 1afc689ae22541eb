//! The Workload API's cache on disk, so an agent restarted while the server is unreachable
//! still serves its workloads their last valid X509-SVIDs.
//!
//! What is stored: the agent's SPIFFE ID (join token redacted) and trust domain, the X.509 and
//! JWT bundle, every served registration entry, and each entry's X509-SVID chain with its
//! private key. JWT-SVIDs are not stored: the server signs them on request.
//!
//! The whole cache is one file, `workload_cache.json`, with mode 0600 because it contains the
//! workloads' private keys, replaced atomically on every write. One file rather than one per
//! entry keeps the bundle, the entries and their SVIDs from the same snapshot, so a crash never
//! leaves a mix of two revisions, and loading needs no directory scan. The price is that every
//! write rewrites every SVID (an estimated 2 KiB per entry: base64 of a P-256 leaf, its chain
//! and key), so the writer coalesces changes and writes at most once per [`MIN_WRITE_INTERVAL`]. A crash loses at most that much: the file then still
//! contains the previous SVIDs, which stay valid, because SVIDs are renewed before half their
//! lifetime.
//!
//! On start the agent loads the file, drops what has expired and serves the rest at once,
//! before it reaches the server. The server stays the source of truth: the first successful
//! sync replaces the loaded snapshot.

mod format;

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_core::fs::write_secret;
use signet_core::ids::redacted_agent_id;
use spiffe::{SpiffeId, TrustDomain};
use zeroize::Zeroizing;

use crate::cache::{Cache, Snapshot};

/// Minimum time between two writes of the file.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(10);

/// Name of the file in the data directory.
const CACHE_FILE: &str = "workload_cache.json";
const PERMISSION_BITS: u32 = 0o7777;
const GROUP_AND_OTHER_BITS: u32 = 0o077;

/// Error from reading or writing the stored workload cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The file could not be read, written or removed.
    #[error("failed to access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is open to other users, who may have read the workloads' private keys.
    #[error(
        "{path} has mode {mode:04o}, so other users may read the workloads' private keys: run \
         `chmod 600 {path}`, or delete it if other users may have read it"
    )]
    InsecureFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file's content cannot be used.
    #[error("invalid stored workload cache {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problem.
        reason: String,
    },
}

/// The stored workload cache of one agent in its data directory.
#[derive(Clone, Debug)]
pub struct WorkloadStore {
    path: PathBuf,
    /// The agent's SPIFFE ID with the join token redacted: a file another agent identity wrote
    /// is ignored, because its entries may not be this agent's to serve.
    agent_id: String,
    trust_domain: TrustDomain,
}

// === impl PersistError ===

impl PersistError {
    /// Returns true when the file is open to other users. The agent stops then, instead of
    /// serving keys others may know.
    pub fn is_insecure(&self) -> bool {
        matches!(self, Self::InsecureFile { .. })
    }
}

// === impl WorkloadStore ===

impl WorkloadStore {
    /// Creates the store of the agent `agent_id` in `data_dir`.
    pub fn new(data_dir: &Path, agent_id: &SpiffeId) -> Self {
        Self {
            path: data_dir.join(CACHE_FILE),
            agent_id: redacted_agent_id(agent_id),
            trust_domain: agent_id.trust_domain().clone(),
        }
    }

    /// Reads the stored snapshot, leaving out the SVIDs and JWT authorities expired at `now`.
    ///
    /// Returns None when no file exists or another agent identity wrote it.
    ///
    /// # Errors
    ///
    /// [`PersistError::InsecureFile`] when group or others may access the file,
    /// [`PersistError::Io`] when it cannot be read, [`PersistError::Invalid`] when its content
    /// is unusable.
    pub fn load(&self, now: SystemTime) -> Result<Option<Snapshot>, PersistError> {
        let Some(contents) = self.read()? else {
            return Ok(None);
        };
        let stored = format::decode(&contents).map_err(|reason| self.invalid(reason))?;
        if stored.agent_id != self.agent_id || stored.trust_domain != self.trust_domain.as_str() {
            tracing::info!(
                path = %self.path.display(),
                stored_agent_id = %stored.agent_id,
                "Ignoring the stored workload SVIDs of another agent identity"
            );
            return Ok(None);
        }
        stored
            .into_snapshot(&self.trust_domain, now)
            .map(Some)
            .map_err(|reason| self.invalid(reason))
    }

    /// Writes `snapshot` atomically with mode 0600.
    ///
    /// # Errors
    ///
    /// [`PersistError::Invalid`] when the snapshot cannot be encoded, [`PersistError::Io`] when
    /// the file cannot be written.
    pub fn save(&self, snapshot: &Snapshot) -> Result<(), PersistError> {
        let contents =
            format::encode(&self.agent_id, snapshot).map_err(|error| self.invalid(error))?;
        write_secret(&self.path, &contents).map_err(|source| self.io_error(source))
    }

    /// Deletes the file, and returns true when there was one.
    ///
    /// # Errors
    ///
    /// [`PersistError::Io`] when the file exists but cannot be deleted.
    pub fn remove(data_dir: &Path) -> Result<bool, PersistError> {
        let path = data_dir.join(CACHE_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(PersistError::Io { path, source }),
        }
    }

    /// Writes every change of `cache`, at most once per [`MIN_WRITE_INTERVAL`]. The latest
    /// snapshot wins: changes that arrive during the interval are written together after it.
    ///
    /// Runs until `cache` is dropped. A failed write is logged at warn once until a write
    /// succeeds, and retried with the next change.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a write cut short leaves the previous file, because writes are atomic. Call
    /// [`WorkloadStore::save`] on shutdown to keep the last changes.
    pub async fn keep_saved(&self, cache: &Cache) {
        let mut snapshots = cache.subscribe();
        let mut has_failed = false;
        while snapshots.changed().await.is_ok() {
            let snapshot = Arc::clone(&snapshots.borrow_and_update());
            match self.save_in_background(snapshot).await {
                Ok(()) => has_failed = false,
                Err(error) if has_failed => {
                    tracing::debug!(error = %error, "Failed to store the workload SVIDs");
                }
                Err(error) => {
                    tracing::warn!(error = %error, "Failed to store the workload SVIDs, retrying on the next change");
                    has_failed = true;
                }
            }
            tokio::time::sleep(MIN_WRITE_INTERVAL).await;
        }
    }

    /// Runs [`WorkloadStore::save`] on a blocking thread, because it encodes and syncs megabytes
    /// for large caches.
    ///
    /// # Errors
    ///
    /// As for [`WorkloadStore::save`].
    pub async fn save_in_background(&self, snapshot: Arc<Snapshot>) -> Result<(), PersistError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.save(&snapshot))
            .await
            .map_err(|error| self.io_error(io::Error::other(error)))?
    }

    /// Returns the file's content, or None when it does not exist.
    fn read(&self) -> Result<Option<Zeroizing<Vec<u8>>>, PersistError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io_error(source)),
        };
        // The mode of the open file, so a file swapped in after the check cannot slip through.
        let metadata = file.metadata().map_err(|source| self.io_error(source))?;
        let mode = metadata.permissions().mode() & PERMISSION_BITS;
        if mode & GROUP_AND_OTHER_BITS != 0 {
            return Err(PersistError::InsecureFile {
                path: self.path.clone(),
                mode,
            });
        }
        // Sized up front, so growing the buffer leaves no copies of the keys in freed memory.
        let capacity = usize::try_from(metadata.len())
            .unwrap_or(0)
            .saturating_add(1);
        let mut contents = Zeroizing::new(Vec::with_capacity(capacity));
        file.read_to_end(&mut contents)
            .map_err(|source| self.io_error(source))?;
        Ok(Some(contents))
    }

    fn io_error(&self, source: io::Error) -> PersistError {
        PersistError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn invalid(&self, reason: impl ToString) -> PersistError {
        PersistError::Invalid {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
