//! The `uid`, `user`, `gid` and `group` selectors of an effective uid and gid, remembered for a
//! short time so that each Workload API call does not search the account databases.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Group, Uid, User};
use signet_core::selector::Selector;
use tracing::debug;

use super::{AttestationError, unix_selector};

/// Remembers the account selectors of each (uid, gid) pair for [`NAME_TTL`].
///
/// The selectors depend only on the two IDs and the account databases, not on the process, so
/// a remembered value can never give one process another's identity. A renamed user or group
/// gets its new `user` or `group` selector once the remembered value expires. Failed lookups
/// are not remembered.
#[derive(Debug, Default)]
pub(super) struct AccountSelectors {
    remembered: Mutex<HashMap<(u32, u32), Remembered>>,
}

#[derive(Debug)]
struct Remembered {
    selectors: Vec<Selector>,
    looked_up: Instant,
}

/// A user or group name from the account databases: absent, or the lookup failed.
pub(super) enum Lookup {
    Found(Option<String>),
    Failed,
}

// === impl AccountSelectors ===

impl AccountSelectors {
    /// Returns the `uid`, `user`, `gid` and `group` selectors of `uid` and `gid`, looking up the
    /// names unless they were looked up less than [`NAME_TTL`] ago.
    ///
    /// # Errors
    ///
    /// [`AttestationError::Selector`] never in practice, because a numeric ID always forms a
    /// valid selector.
    pub(super) fn selectors(&self, uid: u32, gid: u32) -> Result<Vec<Selector>, AttestationError> {
        if let Some(remembered) = self.lock().get(&(uid, gid))
            && remembered.looked_up.elapsed() < NAME_TTL
        {
            return Ok(remembered.selectors.clone());
        }

        let (selectors, complete) = look_up(uid, gid)?;
        if complete {
            let mut remembered = self.lock();
            if remembered.len() >= MAX_ENTRIES {
                remembered.clear();
            }
            let value = Remembered {
                selectors: selectors.clone(),
                looked_up: Instant::now(),
            };
            remembered.insert((uid, gid), value);
        }
        Ok(selectors)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(u32, u32), Remembered>> {
        // A panic while holding the lock cannot leave a half-written entry, so a poisoned map is
        // still consistent.
        self.remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Builds the selectors from the account databases, and returns whether both lookups
/// succeeded (an unknown ID counts as success).
fn look_up(uid: u32, gid: u32) -> Result<(Vec<Selector>, bool), AttestationError> {
    let user = user_name(uid);
    let group = group_name(gid);
    let complete = matches!(user, Lookup::Found(_)) && matches!(group, Lookup::Found(_));

    let mut selectors = vec![unix_selector("uid", &uid.to_string())?];
    // Names that no entry can name are left out, as unknown names are.
    if let Some(user) = user
        .name()
        .and_then(|name| unix_selector("user", &name).ok())
    {
        selectors.push(user);
    }
    selectors.push(unix_selector("gid", &gid.to_string())?);
    if let Some(group) = group
        .name()
        .and_then(|name| unix_selector("group", &name).ok())
    {
        selectors.push(group);
    }
    Ok((selectors, complete))
}

/// Looks up the name of user `uid`.
fn user_name(uid: u32) -> Lookup {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(user) => Lookup::Found(user.map(|user| user.name)),
        Err(error) => {
            debug!(uid, %error, "Looking up the user name failed");
            Lookup::Failed
        }
    }
}

/// Looks up the name of group `gid`.
pub(super) fn group_name(gid: u32) -> Lookup {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(group) => Lookup::Found(group.map(|group| group.name)),
        Err(error) => {
            debug!(gid, %error, "Looking up the group name failed");
            Lookup::Failed
        }
    }
}

// === impl Lookup ===

impl Lookup {
    /// Returns the name, or `None` when there is none or the lookup failed.
    pub(super) fn name(self) -> Option<String> {
        match self {
            Self::Found(name) => name,
            Self::Failed => None,
        }
    }
}

/// How long looked-up account selectors are used before the databases are searched again.
const NAME_TTL: Duration = Duration::from_secs(10);
/// Maximum number of remembered (uid, gid) pairs. The map is cleared when it is full.
const MAX_ENTRIES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn own_ids() -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    #[test]
    fn selectors_name_uid_and_gid() {
        let (uid, gid) = own_ids();
        let selectors = AccountSelectors::default().selectors(uid, gid).unwrap();

        assert!(selectors.contains(&unix_selector("uid", &uid.to_string()).unwrap()));
        assert!(selectors.contains(&unix_selector("gid", &gid.to_string()).unwrap()));
        if let Some(user) = user_name(uid).name() {
            assert!(selectors.contains(&unix_selector("user", &user).unwrap()));
        }
    }

    #[test]
    fn remembered_selectors_equal_fresh_ones() {
        let (uid, gid) = own_ids();
        let accounts = AccountSelectors::default();

        let first = accounts.selectors(uid, gid).unwrap();
        assert_eq!(accounts.lock().len(), 1);
        let second = accounts.selectors(uid, gid).unwrap();

        assert_eq!(first, second);
    }

    #[test]
    fn selectors_are_per_id_pair() {
        let (uid, gid) = own_ids();
        let accounts = AccountSelectors::default();
        accounts.selectors(uid, gid).unwrap();

        let other = accounts.selectors(u32::MAX, u32::MAX).unwrap();

        assert_eq!(
            other,
            vec![
                unix_selector("uid", &u32::MAX.to_string()).unwrap(),
                unix_selector("gid", &u32::MAX.to_string()).unwrap(),
            ]
        );
        assert_eq!(accounts.lock().len(), 2);
    }

    #[test]
    fn expired_selectors_are_looked_up_again() {
        let (uid, gid) = own_ids();
        let accounts = AccountSelectors::default();
        accounts.lock().insert(
            (uid, gid),
            Remembered {
                selectors: Vec::new(),
                looked_up: Instant::now() - NAME_TTL,
            },
        );

        let selectors = accounts.selectors(uid, gid).unwrap();

        assert!(selectors.contains(&unix_selector("uid", &uid.to_string()).unwrap()));
    }
}
