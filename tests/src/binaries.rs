//! Locates the `signet-server` and `signet-agent` binaries that `cargo build --bins` produced.

use std::env;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// Environment variable that overrides the directory holding the built binaries.
pub const BIN_DIR_ENV: &str = "SIGNET_BIN_DIR";

/// Name of the server binary.
pub const SERVER: &str = "signet-server";

/// Name of the agent binary.
pub const AGENT: &str = "signet-agent";

/// Returns the path of the binary `name`, from `$SIGNET_BIN_DIR` or else from the Cargo target
/// directory the running executable was built into.
///
/// # Errors
///
/// Fails when the binary does not exist, telling to build it first.
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = bin_dir()?;
    let binary = dir.join(name);
    if !binary.is_file() {
        bail!(
            "{} not found: build the binaries first: cargo build --bins (or set {BIN_DIR_ENV})",
            binary.display()
        );
    }
    Ok(binary)
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }

    // Test executables live in `<target>/<profile>/deps/`, the binaries one level up. Programs
    // that use the harness, such as the example scenarios, are binaries themselves.
    let exe = env::current_exe().context("locating the running executable")?;
    let exe_dir = exe
        .parent()
        .with_context(|| format!("executable {} has no directory", exe.display()))?;
    let profile_dir = if exe_dir.ends_with("deps") {
        exe_dir.parent().unwrap_or(exe_dir)
    } else {
        exe_dir
    };
    Ok(profile_dir.to_path_buf())
}
