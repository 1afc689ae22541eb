//! A policy shared by every request, and the task that reloads it when its file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{Policy, PolicyFileError};

/// The current policy, cheap to clone. A replacement applies to every clone.
#[derive(Clone, Debug)]
pub struct SharedPolicy {
    current: Arc<RwLock<Arc<Policy>>>,
}

/// Polls a policy file and replaces the [`SharedPolicy`] when the file's contents change.
///
/// A new file that does not parse, or that cannot be read, leaves the previous policy in
/// force and is logged once at error level with the file and line.
///
/// Reloading lasts as long as the policy: the task stops when every clone of the
/// [`SharedPolicy`] is dropped, or when [`stop`](Self::stop) is called. Dropping the watcher
/// itself stops nothing, so `let (policy, _) = PolicyWatcher::spawn(..)?` keeps reloading.
#[derive(Debug)]
pub struct PolicyWatcher {
    task: JoinHandle<()>,
}

/// The watcher's last read, kept to act only on changes and to log each failure once.
#[derive(Debug, PartialEq)]
pub(super) enum LastRead {
    Contents(Vec<u8>),
    Failed(String),
}

// === impl SharedPolicy ===

impl SharedPolicy {
    /// Wraps `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(policy))),
        }
    }

    /// Replaces the policy for every later request.
    pub fn replace(&self, policy: Policy) {
        // A poisoned lock only means that a writer panicked between two whole-value stores,
        // so the value inside is still a complete policy.
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(policy);
    }

    /// Returns the policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl From<Policy> for SharedPolicy {
    fn from(policy: Policy) -> Self {
        Self::new(policy)
    }
}

// === impl PolicyWatcher ===

impl PolicyWatcher {
    /// Loads the policy file at `path`, then starts a task that reads it every `interval` and
    /// reloads it when its contents change. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// The errors of [`Policy::from_file`] for the first load: a service does not start
    /// without a valid policy.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use signet_sdk::policy::PolicyWatcher;
    ///
    /// # async fn run() -> Result<(), signet_sdk::policy::PolicyFileError> {
    /// let (policy, _watcher) = PolicyWatcher::spawn("policy.toml", Duration::from_secs(2))?;
    /// assert!(!policy.current().rules().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn spawn(
        path: impl AsRef<Path>,
        interval: Duration,
    ) -> Result<(SharedPolicy, Self), PolicyFileError> {
        let path = path.as_ref().to_owned();
        let contents = std::fs::read(&path).map_err(|source| PolicyFileError::Read {
            path: path.clone(),
            source,
        })?;
        let policy = Policy::parse(&path, &String::from_utf8_lossy(&contents))?;
        let shared = SharedPolicy::new(policy);

        let task = tokio::spawn(poll(
            path,
            interval,
            Arc::downgrade(&shared.current),
            LastRead::Contents(contents),
        ));
        Ok((shared, Self { task }))
    }

    /// Stops reloading; the policy in force stays.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Reads the file every `interval` and applies each change, until the policy is dropped.
async fn poll(
    path: PathBuf,
    interval: Duration,
    policy: Weak<RwLock<Arc<Policy>>>,
    mut last: LastRead,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(current) = policy.upgrade() else {
            return;
        };
        let shared = SharedPolicy { current };
        let read = match tokio::fs::read(&path).await {
            Ok(contents) => LastRead::Contents(contents),
            Err(error) => LastRead::Failed(error.to_string()),
        };
        if read == last {
            continue;
        }
        apply(&path, &read, &shared);
        last = read;
    }
}

/// Replaces the policy with the file's new contents, or logs why it keeps the old one.
pub(super) fn apply(path: &Path, read: &LastRead, shared: &SharedPolicy) {
    match read {
        LastRead::Contents(contents) => {
            match Policy::parse(path, &String::from_utf8_lossy(contents)) {
                Ok(policy) => {
                    tracing::info!(file = %path.display(), "Policy file reloaded");
                    shared.replace(policy);
                }
                Err(error) => tracing::error!(
                    file = %path.display(),
                    %error,
                    "Policy file invalid, keeping the previous policy"
                ),
            }
        }
        LastRead::Failed(error) => tracing::error!(
            file = %path.display(),
            %error,
            "Cannot read policy file, keeping the previous policy"
        ),
    }
}
