//! Runs the Python scripts in `tests/python/` with py-spiffe (the `spiffe` package from PyPI)
//! from the virtual environment that `scripts/test` creates.

use std::env;
use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::Command;

/// Environment variable naming the virtual environment; `scripts/test` sets and creates it.
pub const PYENV_ENV: &str = "SIGNET_PYENV";

/// Virtual environment used when `SIGNET_PYENV` is unset. It lives outside the checkout so an
/// unprivileged uid can run its interpreter whatever the permissions of the checkout's parents.
pub const DEFAULT_PYENV: &str = "/tmp/signet-pyenv";

/// Bound for one script run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A script copied into a directory every user can read, so it can run under another uid.
#[derive(Debug)]
pub struct Script {
    path: PathBuf,
    _dir: TempDir,
}

impl Script {
    /// Copies `tests/python/<name>` into a fresh world-readable directory.
    ///
    /// # Errors
    ///
    /// Fails when the script cannot be read or copied.
    pub fn load(name: &str) -> anyhow::Result<Self> {
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("python")
            .join(name);
        let dir = tempfile::Builder::new()
            .prefix("signet-python-")
            .tempdir()
            .context("creating the script directory")?;
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755))?;
        let path = dir.path().join(name);
        fs::copy(&source, &path).with_context(|| format!("copying {}", source.display()))?;
        fs::set_permissions(&path, Permissions::from_mode(0o644))?;
        Ok(Self { path, _dir: dir })
    }

    /// Runs the script with `args` as the current user.
    ///
    /// # Errors
    ///
    /// Fails when the interpreter is missing or the script runs longer than 60 s.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.run_as(None, args).await
    }

    /// Runs the script with `args`, as `uid` (same gid, no supplementary groups) when given.
    ///
    /// # Errors
    ///
    /// Fails when the interpreter is missing or the script runs longer than 60 s.
    pub async fn run_as(&self, uid: Option<u32>, args: &[&str]) -> anyhow::Result<Output> {
        self.run_with_ids(uid.map(|uid| (uid, uid)), args).await
    }

    /// Runs the script with `args`, as the `(uid, gid)` pair (no supplementary groups) when
    /// given.
    ///
    /// # Errors
    ///
    /// Fails when the interpreter is missing or the script runs longer than 60 s.
    pub async fn run_with_ids(
        &self,
        ids: Option<(u32, u32)>,
        args: &[&str],
    ) -> anyhow::Result<Output> {
        let mut command = Command::new(interpreter()?);
        command.arg(&self.path).args(args).kill_on_drop(true);
        if let Some((uid, gid)) = ids {
            // std drops the supplementary groups when a root parent switches uid.
            command.uid(uid).gid(gid);
        }
        tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
            .await
            .with_context(|| {
                format!(
                    "{} still running after {SCRIPT_TIMEOUT:?}",
                    self.path.display()
                )
            })?
            .with_context(|| format!("running {}", self.path.display()))
    }
}

/// Parses the single JSON object a script printed on stdout.
///
/// # Errors
///
/// Fails with the script's stderr when stdout is not JSON.
pub fn json_output(output: &Output) -> anyhow::Result<serde_json::Value> {
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "script printed no JSON ({}): stdout: {} stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn interpreter() -> anyhow::Result<PathBuf> {
    let pyenv = env::var_os(PYENV_ENV).map_or_else(|| PathBuf::from(DEFAULT_PYENV), PathBuf::from);
    let python = pyenv.join("bin").join("python");
    if !python.is_file() {
        bail!(
            "{} not found: run scripts/test, which creates the Python environment with \
             py-spiffe, or set {PYENV_ENV} to one",
            python.display()
        );
    }
    Ok(python)
}
