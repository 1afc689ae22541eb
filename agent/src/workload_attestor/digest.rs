//! SHA-256 digests of workload executables, remembered per file version.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Remembers executable digests so that each file version is hashed once.
///
/// A file version is keyed by device, inode, size, mtime and ctime. Every write sets the ctime to
/// the current clock tick, and no process can set it back. So a rewritten file gets a new key,
/// unless the rewrite keeps the size and lands in the same tick as the change before hashing.
/// Only the file's writer can cause that, and it gains no digest it could not get by running
/// its own earlier version.
#[derive(Debug, Default)]
pub(super) struct DigestCache {
    digests: Mutex<HashMap<FileVersion, String>>,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq)]
struct FileVersion {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl DigestCache {
    /// Returns the lowercase hex SHA-256 of the open file, hashing it only when unknown.
    pub(super) fn sha256_hex(&self, mut file: File) -> io::Result<String> {
        let version = FileVersion::of(&file)?;
        if let Some(digest) = self.lock().get(&version) {
            return Ok(digest.clone());
        }

        let digest = hash_file(&mut file)?;
        let mut digests = self.lock();
        if digests.len() >= MAX_ENTRIES {
            digests.clear();
        }
        digests.insert(version, digest.clone());
        Ok(digest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileVersion, String>> {
        // A panic while holding the lock cannot leave a half-written map entry, so a poisoned
        // map is still consistent.
        self.digests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl FileVersion {
    fn of(file: &File) -> io::Result<Self> {
        let metadata = file.metadata()?;
        Ok(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        })
    }
}

fn hash_file(file: &mut File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; READ_CHUNK];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Maximum number of remembered digests. The map is cleared when it is full.
const MAX_ENTRIES: usize = 1024;
const READ_CHUNK: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn digest_matches_sha256_of_contents() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"abc").unwrap();
        let digest = DigestCache::default()
            .sha256_hex(file.reopen().unwrap())
            .unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rewritten_file_is_hashed_again() {
        let cache = DigestCache::default();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"abc").unwrap();
        let first = cache.sha256_hex(file.reopen().unwrap()).unwrap();

        std::fs::write(file.path(), b"abcd").unwrap();
        let second = cache.sha256_hex(file.reopen().unwrap()).unwrap();

        assert_ne!(first, second);
        assert_eq!(second, hex::encode(Sha256::digest(b"abcd")));
    }
}
