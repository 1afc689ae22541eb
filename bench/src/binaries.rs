//! Locates the `signet-server` and `signet-agent` binaries under test.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Paths of the binaries a benchmark starts.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The `signet-server` binary.
    pub server: PathBuf,
    /// The `signet-agent` binary.
    pub agent: PathBuf,
}

impl Binaries {
    /// Returns the given paths, or else the binaries in the directory of the running
    /// `signet-bench`, which Cargo builds into the same target directory.
    ///
    /// # Errors
    ///
    /// Fails when a binary does not exist, naming the path and how to build it.
    pub fn locate(server: Option<&Path>, agent: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self {
            server: locate_one("signet-server", server, "--server-bin")?,
            agent: locate_one("signet-agent", agent, "--agent-bin")?,
        })
    }
}

fn locate_one(name: &str, explicit: Option<&Path>, flag: &str) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => own_dir()?.join(name),
    };
    if !path.is_file() {
        bail!(
            "{name} not found at {}: build it with `cargo build --workspace --bins` or pass {flag}",
            path.display()
        );
    }
    Ok(path)
}

fn own_dir() -> anyhow::Result<PathBuf> {
    let exe = env::current_exe().context("failed to locate the signet-bench executable")?;
    exe.parent()
        .map(Path::to_owned)
        .with_context(|| format!("{} has no parent directory", exe.display()))
}
