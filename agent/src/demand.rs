//! Demand for the X509-SVIDs of template entries: which concrete SPIFFE IDs the Workload API's
//! callers use right now.
//!
//! A template entry's SVIDs cannot be signed ahead of time, because the concrete SPIFFE ID depends
//! on the workload. A Workload API stream holds a [`DemandLease`] on the concrete IDs its caller
//! receives. Sync signs an SVID for every held ID, renews it while it is held, and stops renewing
//! it once no lease holds it (see [`crate::sync`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use spiffe::SpiffeId;
use tokio::sync::Notify;

/// A concrete SPIFFE ID expanded from the template of one entry.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ExpandedId {
    /// ID of the template entry.
    pub entry_id: String,
    /// The SPIFFE ID filled in from a workload's selectors.
    pub spiffe_id: SpiffeId,
}

/// The expanded IDs that leases hold, with how many leases hold each one.
#[derive(Debug, Default)]
pub struct SvidDemand {
    holders: Mutex<HashMap<ExpandedId, usize>>,
    added: Notify,
}

/// The expanded IDs one Workload API stream uses. Dropping the lease releases them.
#[derive(Debug)]
pub struct DemandLease {
    demand: Arc<SvidDemand>,
    held: Mutex<BTreeSet<ExpandedId>>,
}

// === impl SvidDemand ===

impl SvidDemand {
    /// Returns a lease that holds nothing yet.
    pub fn lease(self: &Arc<Self>) -> DemandLease {
        DemandLease {
            demand: Arc::clone(self),
            held: Mutex::default(),
        }
    }

    /// Returns every expanded ID that at least one lease holds.
    pub fn held(&self) -> HashSet<ExpandedId> {
        self.lock().keys().cloned().collect()
    }

    /// Waits until a lease holds an ID that no lease held before.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an addition while no task waits is kept for the next call.
    pub async fn added(&self) {
        self.added.notified().await;
    }

    fn acquire(&self, ids: &BTreeSet<ExpandedId>) {
        let mut holders = self.lock();
        let mut is_new = false;
        for id in ids {
            let count = holders.entry(id.clone()).or_insert(0);
            is_new |= *count == 0;
            *count += 1;
        }
        drop(holders);
        if is_new {
            self.added.notify_one();
        }
    }

    fn release(&self, ids: &BTreeSet<ExpandedId>) {
        let mut holders = self.lock();
        for id in ids {
            if let Some(count) = holders.get_mut(id) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    holders.remove(id);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ExpandedId, usize>> {
        // The map is consistent after every statement, so a panic elsewhere cannot corrupt it.
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl DemandLease ===

impl DemandLease {
    /// Makes the lease hold exactly `ids`, releasing those it held before and no longer lists.
    /// Wakes sync when an ID is new to the demand.
    pub fn hold(&self, ids: BTreeSet<ExpandedId>) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if *held == ids {
            return;
        }
        let added: BTreeSet<ExpandedId> = ids.difference(&held).cloned().collect();
        let removed: BTreeSet<ExpandedId> = held.difference(&ids).cloned().collect();
        self.demand.acquire(&added);
        self.demand.release(&removed);
        *held = ids;
    }
}

impl Drop for DemandLease {
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.demand.release(held);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn expanded(entry_id: &str, spiffe_id: &str) -> ExpandedId {
        ExpandedId {
            entry_id: entry_id.to_owned(),
            spiffe_id: SpiffeId::new(spiffe_id).unwrap(),
        }
    }

    #[test]
    fn held_ids_are_released_with_the_last_lease() {
        let demand = Arc::new(SvidDemand::default());
        let root = expanded("uid", "spiffe://example.org/uid/0");
        let first = demand.lease();
        let second = demand.lease();

        first.hold(BTreeSet::from([root.clone()]));
        second.hold(BTreeSet::from([root.clone()]));
        drop(first);
        assert_eq!(demand.held(), HashSet::from([root]));

        drop(second);
        assert!(demand.held().is_empty());
    }

    #[test]
    fn hold_replaces_the_previous_ids() {
        let demand = Arc::new(SvidDemand::default());
        let old = expanded("uid", "spiffe://example.org/uid/0");
        let new = expanded("uid", "spiffe://example.org/uid/1");
        let lease = demand.lease();

        lease.hold(BTreeSet::from([old]));
        lease.hold(BTreeSet::from([new.clone()]));

        assert_eq!(demand.held(), HashSet::from([new]));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn new_id_wakes_the_waiter_once() {
        let demand = Arc::new(SvidDemand::default());
        let id = expanded("uid", "spiffe://example.org/uid/0");
        let first = demand.lease();
        first.hold(BTreeSet::from([id.clone()]));
        tokio::time::timeout(Duration::from_secs(1), demand.added())
            .await
            .expect("a new ID must wake the waiter");

        // A second holder of the same ID adds nothing to sign.
        let second = demand.lease();
        second.hold(BTreeSet::from([id]));
        let woken = tokio::time::timeout(Duration::from_millis(50), demand.added()).await;
        assert!(woken.is_err());
    }
}
