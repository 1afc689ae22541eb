//! The `unix` workload attestor: turns the process at the other end of a Workload API connection
//! into selectors (`unix:uid:…`, `unix:path:…`, `unix:sha256:…` and so on).
//!
//! The caller's PID comes from the socket's peer credentials and its details from `/proc`. A PID
//! can be reused once its process has exited, so the attestor checks after reading `/proc` that
//! the PID still belongs to the process that connected, and fails closed otherwise. On Linux 6.5
//! and later, the connection carries a pidfd (`SO_PEERPIDFD`) that pins the process. On older
//! kernels, the attestor compares the process start time before and after reading.

mod accounts;
mod digest;
mod procfs;

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{getsockopt, sockopt};
use nix::unistd::{Uid, User};
use signet_core::selector::{Selector, SelectorError};
use tokio::net::UnixStream;
use tracing::debug;

use self::accounts::{AccountSelectors, group_name};
use self::digest::DigestCache;
use self::procfs::ProcessStatus;

/// The process at the other end of a Workload API connection, as the kernel reported it when the
/// connection was accepted.
#[derive(Clone, Debug)]
pub struct PeerProcess {
    /// Process ID of the connecting process, in the agent's PID namespace.
    pub pid: i32,
    /// Effective user ID at connect time.
    pub uid: u32,
    /// Effective group ID at connect time.
    pub gid: u32,
    /// pidfd of the connecting process, when the kernel supports `SO_PEERPIDFD`.
    pub pidfd: Option<Arc<OwnedFd>>,
}

/// Attests workloads by their Unix process attributes.
#[derive(Debug, Default)]
pub struct UnixAttestor {
    digests: DigestCache,
    accounts: AccountSelectors,
}

/// Error from attesting a workload. Every variant fails the call closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The connection carried no peer credentials or no peer PID.
    #[error("peer credentials of the connection are unavailable")]
    MissingPeerCredentials,
    /// Reading the peer's credentials from the socket failed.
    #[error("reading peer credentials from the socket failed")]
    PeerCredentials(#[source] io::Error),
    /// The process exited before attestation finished.
    #[error("the workload process exited during attestation")]
    ProcessExited,
    /// Polling the connecting process's pidfd failed.
    #[error("checking whether the workload process is still running failed")]
    PeerLiveness(#[source] io::Error),
    /// The PID now belongs to a process started after the connecting one.
    #[error("the workload PID was reused by another process during attestation")]
    ProcessReplaced,
    /// The process's effective IDs differ from those it connected with.
    #[error(
        "the workload process changed identity after connecting \
         (uid {connected_uid}:{connected_gid} at connect time, {current_uid}:{current_gid} now)"
    )]
    CredentialsChanged {
        /// Effective user ID at connect time.
        connected_uid: u32,
        /// Effective group ID at connect time.
        connected_gid: u32,
        /// Effective user ID read from `/proc`.
        current_uid: u32,
        /// Effective group ID read from `/proc`.
        current_gid: u32,
    },
    /// A `/proc` file could not be read.
    #[error("reading {path} failed")]
    ReadProcFile {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A `/proc` file did not have the expected layout.
    #[error("unexpected contents in {path}")]
    MalformedProcFile {
        /// The file with unexpected contents.
        path: PathBuf,
    },
    /// An attested value did not form a valid selector.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// `/proc` belongs to another PID namespace than the agent's.
    #[error(
        "/proc/self names PID {proc_self} but the agent's PID is {pid}: /proc belongs to another \
         PID namespace, so /proc/<pid> would describe other processes than the callers; mount \
         the /proc of the agent's own PID namespace"
    )]
    ForeignProcNamespace {
        /// The target of the `/proc/self` link.
        proc_self: String,
        /// The agent's PID in its own namespace.
        pid: u32,
    },
}

/// Checks that `/proc` shows the agent's own PID namespace, as workload attestation requires:
/// it reads `/proc/<pid>` for the PID that the kernel reports in the agent's namespace.
///
/// # Errors
///
/// [`AttestationError::ForeignProcNamespace`] when `/proc/self` names another PID, and a read
/// error when `/proc/self` cannot be read.
pub fn check_proc_namespace() -> Result<(), AttestationError> {
    let link = Path::new("/proc/self");
    let target = fs::read_link(link).map_err(|source| AttestationError::ReadProcFile {
        path: link.to_path_buf(),
        source,
    })?;
    let proc_self = target.to_string_lossy().into_owned();
    let pid = std::process::id();
    if proc_self == pid.to_string() {
        Ok(())
    } else {
        Err(AttestationError::ForeignProcNamespace { proc_self, pid })
    }
}

/// Tells whether the PID still refers to the connecting process.
enum Liveness<'a> {
    /// The kernel's pidfd for the connecting process.
    Pidfd(&'a OwnedFd),
    /// Start time of the process that held the PID when attestation began.
    StartTime(u64),
}

// === impl PeerProcess ===

impl PeerProcess {
    /// Reads the peer credentials and, where the kernel offers it, a pidfd of the process that
    /// opened the other end of `stream`.
    ///
    /// # Errors
    ///
    /// [`AttestationError::PeerCredentials`] when the kernel does not return the credentials,
    /// [`AttestationError::MissingPeerCredentials`] when they hold no PID.
    pub fn from_stream(stream: &UnixStream) -> Result<Self, AttestationError> {
        let credentials = stream
            .peer_cred()
            .map_err(AttestationError::PeerCredentials)?;
        let pid = credentials
            .pid()
            .filter(|pid| *pid > 0)
            .ok_or(AttestationError::MissingPeerCredentials)?;
        Ok(Self {
            pid,
            uid: credentials.uid(),
            gid: credentials.gid(),
            pidfd: peer_pidfd(stream)?.map(Arc::new),
        })
    }

    /// Describes the running process `pid` by its current effective IDs, so `explain` can
    /// attest a process that has no connection. Attestation then checks liveness by start time.
    ///
    /// # Errors
    ///
    /// [`AttestationError::ProcessExited`] when no process has that PID, and read errors on
    /// `/proc`.
    pub fn from_pid(pid: i32) -> Result<Self, AttestationError> {
        let status = procfs::read_status(pid)?;
        Ok(Self {
            pid,
            uid: status.uid,
            gid: status.gid,
            pidfd: None,
        })
    }
}

// === impl UnixAttestor ===

impl UnixAttestor {
    /// Creates an attestor with an empty digest cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the `unix` selectors of `peer`, reading `/proc` and hashing its executable.
    ///
    /// This blocks on file I/O, so async callers run it on a blocking thread.
    ///
    /// # Errors
    ///
    /// [`AttestationError::ProcessExited`] or [`AttestationError::ProcessReplaced`] when the PID
    /// stopped referring to the connecting process, [`AttestationError::CredentialsChanged`]
    /// when its effective IDs differ from those it connected with, and read errors on `/proc`.
    pub fn attest(&self, peer: &PeerProcess) -> Result<Vec<Selector>, AttestationError> {
        let liveness = Liveness::begin(peer)?;

        let status = procfs::read_status(peer.pid)?;
        check_credentials(peer, &status)?;
        let executable = self.executable_selectors(peer.pid)?;

        // Only after this check is everything read above known to describe the connecting
        // process.
        liveness.confirm(peer.pid)?;

        let mut selectors = self.accounts.selectors(peer.uid, peer.gid)?;
        for gid in &status.supplementary_gids {
            selectors.push(unix_selector("supplementary_gid", &gid.to_string())?);
        }
        selectors.extend(executable);
        Ok(selectors)
    }

    /// Returns `path` and `sha256` selectors, or none when the agent may not inspect the
    /// executable (another user's process while the agent runs unprivileged). Leaving selectors
    /// out can only make fewer entries match.
    fn executable_selectors(&self, pid: i32) -> Result<Vec<Selector>, AttestationError> {
        let link = procfs::proc_path(pid, "exe");
        let (path, file) = match fs::read_link(&link)
            .and_then(|path| Ok((path, File::open(&link)?)))
        {
            Ok(opened) => opened,
            Err(error) if is_access_denied(&error) => {
                debug!(pid, %error, "Workload executable not readable, omitting path and sha256");
                return Ok(Vec::new());
            }
            Err(error) => return Err(procfs::proc_error(&link, error)),
        };

        let digest = self
            .digests
            .sha256_hex(file)
            .map_err(|source| procfs::proc_error(&link, source))?;
        let mut selectors = vec![unix_selector("sha256", &digest)?];
        // A path that is not UTF-8 gets no selector, because a lossy conversion could make two
        // different paths look the same.
        // A path that no entry can name (control characters, over the length limit) is left out
        // for the same reason.
        match path.to_str().map(|text| unix_selector("path", text)) {
            Some(Ok(selector)) => selectors.push(selector),
            Some(Err(error)) => debug!(pid, path = ?path, %error, "Omitting the executable path"),
            None => debug!(pid, path = ?path, "Workload executable path is not UTF-8, omitting it"),
        }
        Ok(selectors)
    }
}

// === impl Liveness ===

impl<'a> Liveness<'a> {
    fn begin(peer: &'a PeerProcess) -> Result<Self, AttestationError> {
        match &peer.pidfd {
            Some(pidfd) => {
                let liveness = Self::Pidfd(pidfd);
                liveness.confirm(peer.pid)?;
                Ok(liveness)
            }
            // NOTE: without a pidfd, a process that exits and whose PID is reused before the
            // first /proc read is not detected by the start time. The credentials check then
            // still rejects a new process that runs as another user.
            None => Ok(Self::StartTime(procfs::read_start_time(peer.pid)?)),
        }
    }

    fn confirm(&self, pid: i32) -> Result<(), AttestationError> {
        match self {
            Self::Pidfd(pidfd) => {
                if has_exited(pidfd)? {
                    Err(AttestationError::ProcessExited)
                } else {
                    Ok(())
                }
            }
            Self::StartTime(started) => {
                if procfs::read_start_time(pid)? == *started {
                    Ok(())
                } else {
                    Err(AttestationError::ProcessReplaced)
                }
            }
        }
    }
}

/// Returns the selectors that every process running as `uid` gets: `uid` and, from the account
/// databases, `user`, the primary `gid` and `group`. A uid with no account gets `uid` only.
///
/// The other selectors depend on the process: `supplementary_gid` on how it was started, `path`
/// and `sha256` on its executable. This blocks on the account databases.
///
/// # Errors
///
/// [`AttestationError::Selector`] never in practice, because a uid always forms a valid selector.
pub fn account_selectors(uid: u32) -> Result<Vec<Selector>, AttestationError> {
    let mut selectors = vec![unix_selector("uid", &uid.to_string())?];
    let account = match User::from_uid(Uid::from_raw(uid)) {
        Ok(account) => account,
        Err(error) => {
            debug!(uid, %error, "Looking up the user account failed");
            None
        }
    };
    let Some(account) = account else {
        return Ok(selectors);
    };
    if let Ok(user) = unix_selector("user", &account.name) {
        selectors.push(user);
    }
    let gid = account.gid.as_raw();
    selectors.push(unix_selector("gid", &gid.to_string())?);
    if let Some(group) = group_name(gid)
        .name()
        .and_then(|name| unix_selector("group", &name).ok())
    {
        selectors.push(group);
    }
    Ok(selectors)
}

/// Returns a pidfd for the peer, or `None` on kernels without `SO_PEERPIDFD`.
fn peer_pidfd(stream: &UnixStream) -> Result<Option<OwnedFd>, AttestationError> {
    match getsockopt(stream, sockopt::PeerPidfd) {
        Ok(pidfd) => Ok(Some(pidfd)),
        Err(Errno::ENOPROTOOPT) => Ok(None),
        Err(errno) => Err(AttestationError::PeerCredentials(errno.into())),
    }
}

/// Returns whether the process behind `pidfd` has exited. A pidfd becomes readable when its
/// process exits, before it is reaped, and a PID is handed to a new process only after the old one
/// was reaped. So while this returns false, `/proc/<pid>` still belongs to the process behind the
/// pidfd, which the kernel created for the PID that SO_PEERCRED reports.
fn has_exited(pidfd: &OwnedFd) -> Result<bool, AttestationError> {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::ZERO)
        .map_err(|errno| AttestationError::PeerLiveness(errno.into()))?;
    Ok(ready > 0)
}

/// Rejects a process whose effective IDs changed since it connected, because the selectors
/// describe the connecting process. A mismatch may also mean that its PID now belongs to another
/// process.
fn check_credentials(peer: &PeerProcess, status: &ProcessStatus) -> Result<(), AttestationError> {
    if status.uid == peer.uid && status.gid == peer.gid {
        return Ok(());
    }
    Err(AttestationError::CredentialsChanged {
        connected_uid: peer.uid,
        connected_gid: peer.gid,
        current_uid: status.uid,
        current_gid: status.gid,
    })
}

fn unix_selector(key: &str, value: &str) -> Result<Selector, SelectorError> {
    Selector::new("unix", &format!("{key}:{value}"))
}

fn is_access_denied(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::PermissionDenied
}

#[cfg(test)]
mod tests;
