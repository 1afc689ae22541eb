//! File writes for certificates, keys and sockets' directories.
//!
//! Every write goes to a temporary file in the target's directory, which is flushed to disk and
//! given its mode before a rename replaces the target. A crash therefore leaves either the old or
//! the new file, and a secret is never readable by others, not even for a moment.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of files that hold private keys.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// Mode of files anyone may read, such as certificates and bundles.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Writes `contents` to `path` atomically with the given mode.
///
/// # Errors
///
/// Any I/O error from creating, writing, syncing or renaming; the target is then unchanged.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    let mut temp = tempfile::Builder::new()
        .prefix(".signet-")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    // The builder's mode is filtered by the umask; set it again so the result is exact.
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;
    sync_dir(dir)
}

/// Writes a secret (a private key) atomically with mode 0600.
///
/// # Errors
///
/// As for [`write_atomic`].
pub fn write_secret(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic(path, contents, SECRET_FILE_MODE)
}

/// Creates `path` and its missing parents; `path` itself gets mode 0700 even if it existed.
///
/// # Errors
///
/// Any I/O error from creating the directories or setting the mode.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    create_dir_with_mode(path, 0o700)
}

/// Returns the permission bits of the file at `path` when group or others have any of them, as
/// for a private key that other users could read.
///
/// # Errors
///
/// Any I/O error from reading the file's metadata.
pub fn shared_mode(path: &Path) -> io::Result<Option<u32>> {
    let mode = fs::metadata(path)?.permissions().mode() & 0o777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

/// Creates `path` and its missing parents; `path` itself gets `mode` even if it existed. A new
/// directory's parent is synced, so the directory survives a power loss.
///
/// # Errors
///
/// Any I/O error from creating the directories, setting the mode or syncing the parent.
pub fn create_dir_with_mode(path: &Path, mode: u32) -> io::Result<()> {
    let existed = path.is_dir();
    DirBuilder::new().recursive(true).mode(mode).create(path)?;
    fs::set_permissions(path, Permissions::from_mode(mode))?;
    if existed {
        return Ok(());
    }
    sync_dir(parent_dir(path))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_secret_sets_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_secret(&path, b"secret").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn write_atomic_replaces_and_resets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.pem");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        write_atomic(&path, b"new", PUBLIC_FILE_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode_of(&path), 0o644);
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "temporary file left behind");
    }

    #[test]
    fn create_private_dir_tightens_existing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b");
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&path).unwrap();
        assert_eq!(mode_of(&path), 0o700);
    }
}
