//! The one rule that decides which identities a workload receives, and with which SPIFFE IDs.
//!
//! An identity applies to a workload when the workload has every selector of the entry. For a
//! template entry, the workload's selectors must also fill every placeholder. When they cannot,
//! the entry does not apply (fail closed), and the reason is reported.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use signet_core::selector::{Selector, is_subset};
use signet_core::template::ExpansionError;
use spiffe::SpiffeId;
use tracing::warn;

use crate::cache::{Identity, Snapshot, X509SvidMaterial};
use crate::demand::ExpandedId;

/// The identities of a snapshot that apply to one workload.
#[derive(Debug)]
pub(crate) struct Matches<'a> {
    /// The identities the workload receives, in snapshot order: the first is its default
    /// identity.
    pub(crate) entitled: Vec<EntitledIdentity<'a>>,
    /// Template entries whose selectors the workload has but whose placeholders its selectors
    /// cannot fill.
    pub(crate) unexpanded: Vec<UnexpandedTemplate<'a>>,
}

/// An identity a workload receives.
#[derive(Debug)]
pub(crate) struct EntitledIdentity<'a> {
    pub(crate) identity: &'a Identity,
    /// The entry's SPIFFE ID, or its template filled in from the workload's selectors.
    pub(crate) spiffe_id: SpiffeId,
}

/// A template entry that does not apply to a workload, and why.
#[derive(Debug)]
pub(crate) struct UnexpandedTemplate<'a> {
    pub(crate) identity: &'a Identity,
    pub(crate) error: ExpansionError,
}

/// Logs each template entry that a workload's selectors cannot fill, once per entry and process.
#[derive(Debug, Default)]
pub(crate) struct ExpansionWarnings {
    reported: Mutex<HashSet<(String, i32)>>,
}

/// Returns the identities of `snapshot` that apply to a workload with `selectors`.
///
/// Hints must be unique within a response, so of several identities with the same non-empty
/// hint only the first one stays. Identities are ordered by creation, so the oldest entry wins.
pub(crate) fn match_identities<'a>(snapshot: &'a Snapshot, selectors: &[Selector]) -> Matches<'a> {
    let mut matches = Matches {
        entitled: Vec::new(),
        unexpanded: Vec::new(),
    };
    let mut hints = HashSet::new();
    let applicable = snapshot
        .identities
        .iter()
        .filter(|identity| is_subset(&identity.selectors, selectors));
    for identity in applicable {
        match identity.spiffe_id.expand(selectors) {
            Ok(spiffe_id) => {
                if identity.hint.is_empty() || hints.insert(identity.hint.as_str()) {
                    matches.entitled.push(EntitledIdentity {
                        identity,
                        spiffe_id,
                    });
                }
            }
            Err(error) => matches
                .unexpanded
                .push(UnexpandedTemplate { identity, error }),
        }
    }
    matches
}

// === impl Matches ===

impl Matches<'_> {
    /// Returns the concrete IDs of the entitled template identities, which sync must sign.
    pub(crate) fn expanded_ids(&self) -> BTreeSet<ExpandedId> {
        self.entitled
            .iter()
            .filter(|entitled| entitled.identity.spiffe_id.is_template())
            .map(|entitled| ExpandedId {
                entry_id: entitled.identity.entry_id.clone(),
                spiffe_id: entitled.spiffe_id.clone(),
            })
            .collect()
    }
}

// === impl EntitledIdentity ===

impl<'a> EntitledIdentity<'a> {
    /// Returns the X509-SVID for this identity's SPIFFE ID, if one is signed.
    pub(crate) fn svid(&self) -> Option<&'a Arc<X509SvidMaterial>> {
        if self.identity.spiffe_id.is_template() {
            self.identity.expanded_svids.get(&self.spiffe_id)
        } else {
            self.identity.svid.as_ref()
        }
    }
}

// === impl ExpansionWarnings ===

impl ExpansionWarnings {
    /// Logs a warning for each of the `unexpanded` templates that was not reported for the
    /// process `pid` before.
    pub(crate) fn report(&self, pid: i32, unexpanded: &[UnexpandedTemplate<'_>]) {
        for template in unexpanded {
            if self.is_first(&template.identity.entry_id, pid) {
                warn!(
                    pid,
                    entry_id = %template.identity.entry_id,
                    template = %template.identity.spiffe_id,
                    reason = %template.error,
                    "SPIFFE ID template does not apply to the workload"
                );
            }
        }
    }

    fn is_first(&self, entry_id: &str, pid: i32) -> bool {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        // Forgetting every report bounds the memory that many short-lived processes take. The
        // price is one more warning per template and process after that.
        if reported.len() >= MAX_REPORTED {
            reported.clear();
        }
        reported.insert((entry_id.to_owned(), pid))
    }
}

/// Number of (entry, process) pairs remembered as reported.
const MAX_REPORTED: usize = 4096;

#[cfg(test)]
mod tests;
