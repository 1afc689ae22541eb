//! File checks: which files hold private keys, and their permission bits.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Returns every file below `dir` whose name contains "key", the naming both binaries use for
/// private keys. A missing directory yields none.
pub fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(key_files(&path));
        } else if path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().contains("key"))
        {
            found.push(path);
        }
    }
    found
}

/// Returns the permission bits of `path` (for example `0o600`).
///
/// # Errors
///
/// Fails when `path` does not exist.
pub fn mode(path: &Path) -> anyhow::Result<u32> {
    let metadata = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(metadata.permissions().mode() & 0o777)
}
