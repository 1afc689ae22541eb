//! The plan of `entry apply`: which stored entries of an owner to create, update and delete so
//! that they equal the requested list.
//!
//! Entries are matched by their identity (SPIFFE ID, parent ID and set of selectors, the key of
//! the unique constraint), never by entry ID, so a list kept in a file needs no IDs. A matched
//! entry is updated when any other field differs, and keeps its entry ID. Stored entries of other
//! owners, including entries without an owner, are never planned for a change: a requested entry
//! that matches one of them is an error.

use std::collections::HashMap;

use super::entries::identity_key;
use crate::model::{EntryOwner, RegistrationEntry};

/// A stored entry and the owner label stored beside it (empty for entries created one by one).
#[derive(Clone, Debug)]
pub struct StoredEntry {
    /// The entry as stored.
    pub entry: RegistrationEntry,
    /// The owner label, or an empty string.
    pub owner: String,
}

/// The changes that make an owner's stored entries equal to a requested list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntryPlan {
    /// Requested entries that no stored entry matches. Their IDs are empty until stored.
    pub created: Vec<RegistrationEntry>,
    /// Requested entries whose match differs in another field, with the stored entry's ID,
    /// revision number and creation time. The revision number is bumped once stored.
    pub updated: Vec<RegistrationEntry>,
    /// Stored entries of the owner that the request no longer lists (only when pruning).
    pub deleted: Vec<RegistrationEntry>,
    /// Stored entries that equal a requested entry.
    pub unchanged: Vec<RegistrationEntry>,
}

/// Error that rejects a whole request.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryPlanError {
    /// Two requested entries have the same SPIFFE ID, parent ID and set of selectors.
    #[error(
        "the entry with SPIFFE ID {spiffe_id}, parent ID {parent_id} and the same selectors is \
         listed twice: list each entry once"
    )]
    DuplicateEntry {
        /// SPIFFE ID of the repeated entry.
        spiffe_id: String,
        /// Parent ID of the repeated entry.
        parent_id: String,
    },
    /// A requested entry matches a stored entry of another owner, or one without an owner.
    #[error(
        "the entry with SPIFFE ID {spiffe_id} and parent ID {parent_id} for owner {owner:?} \
         matches stored entry {entry_id} of {}: remove it from the request, or delete the \
         stored entry first",
        owner_text(stored_owner)
    )]
    OwnerConflict {
        /// SPIFFE ID of the requested entry.
        spiffe_id: String,
        /// Parent ID of the requested entry.
        parent_id: String,
        /// The owner of the request.
        owner: String,
        /// ID of the stored entry.
        entry_id: String,
        /// Owner of the stored entry, empty for none.
        stored_owner: String,
    },
}

// === impl EntryPlan ===

impl EntryPlan {
    /// Returns whether applying the plan changes the datastore.
    pub fn has_changes(&self) -> bool {
        !(self.created.is_empty() && self.updated.is_empty() && self.deleted.is_empty())
    }
}

/// Plans the changes that make the entries of `owner` among `stored` equal to `requested`;
/// with `prune`, the owner's stored entries missing from `requested` are deleted.
///
/// # Errors
///
/// [`EntryPlanError::DuplicateEntry`] when `requested` lists an entry twice, and
/// [`EntryPlanError::OwnerConflict`] when a requested entry matches a stored entry that `owner`
/// does not own.
pub fn plan_entries(
    owner: &EntryOwner,
    requested: Vec<RegistrationEntry>,
    stored: Vec<StoredEntry>,
    prune: bool,
) -> Result<EntryPlan, EntryPlanError> {
    let mut stored_by_key: HashMap<String, StoredEntry> = stored
        .into_iter()
        .map(|stored| (identity_key(&stored.entry), stored))
        .collect();
    let mut plan = EntryPlan::default();
    let mut requested_keys = Vec::with_capacity(requested.len());

    for entry in requested {
        let key = identity_key(&entry);
        if requested_keys.contains(&key) {
            return Err(EntryPlanError::DuplicateEntry {
                spiffe_id: entry.spiffe_id.to_string(),
                parent_id: entry.parent_id.to_string(),
            });
        }
        match stored_by_key.remove(&key) {
            None => plan.created.push(RegistrationEntry {
                id: String::new(),
                ..entry
            }),
            Some(stored) if stored.owner != owner.as_str() => {
                return Err(conflict(owner, &entry, stored));
            }
            Some(stored) if has_same_content(&stored.entry, &entry) => {
                plan.unchanged.push(stored.entry);
            }
            Some(stored) => plan.updated.push(RegistrationEntry {
                id: stored.entry.id,
                revision_number: stored.entry.revision_number,
                created_at: stored.entry.created_at,
                ..entry
            }),
        }
        requested_keys.push(key);
    }

    if prune {
        plan.deleted = stored_by_key
            .into_values()
            .filter(|stored| stored.owner == owner.as_str())
            .map(|stored| stored.entry)
            .collect();
        plan.deleted
            .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    }
    Ok(plan)
}

fn conflict(owner: &EntryOwner, entry: &RegistrationEntry, stored: StoredEntry) -> EntryPlanError {
    EntryPlanError::OwnerConflict {
        spiffe_id: entry.spiffe_id.to_string(),
        parent_id: entry.parent_id.to_string(),
        owner: owner.to_string(),
        entry_id: stored.entry.id,
        stored_owner: stored.owner,
    }
}

/// Compares the fields outside the identity. Selectors are part of the identity as a set, so a
/// different order of the same selectors is no change.
fn has_same_content(stored: &RegistrationEntry, requested: &RegistrationEntry) -> bool {
    stored.x509_svid_ttl == requested.x509_svid_ttl
        && stored.jwt_svid_ttl == requested.jwt_svid_ttl
        && stored.federates_with == requested.federates_with
        && stored.admin == requested.admin
        && stored.downstream == requested.downstream
        && stored.expires_at == requested.expires_at
        && stored.dns_names == requested.dns_names
        && stored.store_svid == requested.store_svid
        && stored.hint == requested.hint
}

fn owner_text(owner: &str) -> String {
    if owner.is_empty() {
        "no owner (created with entry create)".to_owned()
    } else {
        format!("owner {owner:?}")
    }
}

#[cfg(test)]
mod tests {
    use signet_core::selector::Selector;
    use spiffe::SpiffeId;

    use super::*;

    const AGENT: &str = "spiffe://example.org/spire/agent/join_token/abc";

    /// Builds an entry for `spiffe://example.org/<name>` with the given selectors and X509-SVID
    /// TTL.
    fn entry(name: &str, selectors: &[&str], x509_svid_ttl: i32) -> RegistrationEntry {
        RegistrationEntry {
            id: String::new(),
            spiffe_id: SpiffeId::new(format!("spiffe://example.org/{name}"))
                .unwrap()
                .into(),
            parent_id: SpiffeId::new(AGENT).unwrap(),
            selectors: selectors
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
            x509_svid_ttl,
            jwt_svid_ttl: 0,
            federates_with: Vec::new(),
            admin: false,
            downstream: false,
            expires_at: 0,
            dns_names: Vec::new(),
            revision_number: 0,
            store_svid: false,
            hint: String::new(),
            created_at: 0,
        }
    }

    /// Stores `entry` under the ID `id`, revision 3, for `owner`.
    fn stored(id: &str, entry: RegistrationEntry, owner: &str) -> StoredEntry {
        StoredEntry {
            entry: RegistrationEntry {
                id: id.to_owned(),
                revision_number: 3,
                created_at: 100,
                ..entry
            },
            owner: owner.to_owned(),
        }
    }

    fn ids(entries: &[RegistrationEntry]) -> Vec<&str> {
        entries.iter().map(|entry| entry.id.as_str()).collect()
    }

    fn team() -> EntryOwner {
        EntryOwner::new("team").unwrap()
    }

    #[test]
    fn plan_creates_unmatched_entries() {
        let plan = plan_entries(
            &team(),
            vec![entry("web", &["unix:uid:1"], 0)],
            vec![],
            false,
        )
        .unwrap();

        assert_eq!(plan.created.len(), 1);
        assert_eq!(plan.created[0].spiffe_id.path(), "/web");
        assert!(plan.updated.is_empty());
        assert!(plan.deleted.is_empty());
        assert!(plan.unchanged.is_empty());
        assert!(plan.has_changes());
    }

    #[test]
    fn plan_keeps_equal_entries_unchanged() {
        let stored = vec![stored(
            "e1",
            entry("web", &["unix:uid:1", "unix:gid:2"], 60),
            "team",
        )];
        // The same selectors in another order are the same entry.
        let requested = vec![entry("web", &["unix:gid:2", "unix:uid:1"], 60)];

        let plan = plan_entries(&team(), requested, stored, true).unwrap();

        assert_eq!(ids(&plan.unchanged), ["e1"]);
        assert_eq!(plan.unchanged[0].revision_number, 3);
        assert!(!plan.has_changes());
    }

    #[test]
    fn plan_updates_entries_with_other_fields() {
        let stored = vec![stored("e1", entry("web", &["unix:uid:1"], 60), "team")];
        let requested = vec![entry("web", &["unix:uid:1"], 120)];

        let plan = plan_entries(&team(), requested, stored, false).unwrap();

        assert_eq!(ids(&plan.updated), ["e1"]);
        assert_eq!(plan.updated[0].x509_svid_ttl, 120);
        assert_eq!(plan.updated[0].revision_number, 3);
        assert_eq!(plan.updated[0].created_at, 100);
        assert!(plan.created.is_empty());
        assert!(plan.unchanged.is_empty());
    }

    #[test]
    fn plan_treats_other_selectors_as_another_entry() {
        let stored = vec![stored("e1", entry("web", &["unix:uid:1"], 0), "team")];
        let requested = vec![entry("web", &["unix:uid:2"], 0)];

        let plan = plan_entries(&team(), requested, stored, true).unwrap();

        assert_eq!(plan.created.len(), 1);
        assert_eq!(ids(&plan.deleted), ["e1"]);
    }

    #[test]
    fn plan_deletes_only_own_entries_when_pruning() {
        let stored = vec![
            stored("mine", entry("old", &["unix:uid:1"], 0), "team"),
            stored("theirs", entry("other", &["unix:uid:1"], 0), "other-team"),
            stored("manual", entry("manual", &["unix:uid:1"], 0), ""),
        ];

        let plan = plan_entries(&team(), vec![], stored, true).unwrap();

        assert_eq!(ids(&plan.deleted), ["mine"]);
    }

    #[test]
    fn plan_deletes_nothing_without_prune() {
        let stored = vec![stored("mine", entry("old", &["unix:uid:1"], 0), "team")];

        let plan = plan_entries(&team(), vec![], stored, false).unwrap();

        assert!(plan.deleted.is_empty());
        assert!(!plan.has_changes());
    }

    #[test]
    fn plan_rejects_entry_of_other_owner() {
        let stored = vec![stored(
            "theirs",
            entry("web", &["unix:uid:1"], 0),
            "other-team",
        )];

        let error = plan_entries(
            &team(),
            vec![entry("web", &["unix:uid:1"], 0)],
            stored,
            false,
        )
        .unwrap_err();

        assert_eq!(
            error,
            EntryPlanError::OwnerConflict {
                spiffe_id: "spiffe://example.org/web".to_owned(),
                parent_id: AGENT.to_owned(),
                owner: "team".to_owned(),
                entry_id: "theirs".to_owned(),
                stored_owner: "other-team".to_owned(),
            }
        );
        let message = error.to_string();
        assert!(message.contains("\"team\""), "{message}");
        assert!(message.contains("\"other-team\""), "{message}");
    }

    #[test]
    fn plan_rejects_entry_without_owner() {
        let stored = vec![stored("manual", entry("web", &["unix:uid:1"], 0), "")];

        let error = plan_entries(
            &team(),
            vec![entry("web", &["unix:uid:1"], 0)],
            stored,
            false,
        )
        .unwrap_err();

        assert!(error.to_string().contains("no owner"), "{error}");
    }

    #[test]
    fn plan_rejects_duplicate_requested_entries() {
        let requested = vec![
            entry("web", &["unix:uid:1", "unix:gid:2"], 0),
            entry("web", &["unix:gid:2", "unix:uid:1"], 60),
        ];

        let error = plan_entries(&team(), requested, vec![], false).unwrap_err();

        assert!(
            matches!(error, EntryPlanError::DuplicateEntry { .. }),
            "{error}"
        );
    }
}
