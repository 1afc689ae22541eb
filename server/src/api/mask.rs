//! Field masks: which entry fields an update changes and which entry or agent fields a response
//! carries. An absent mask means every field.

use signet_proto::spire::api::types::{Agent, AgentMask, Entry, EntryMask};

/// Clears the entry fields the mask leaves out; the ID is always kept.
pub(super) fn filter_entry(mut entry: Entry, mask: Option<&EntryMask>) -> Entry {
    if let Some(mask) = mask {
        let empty = Entry::default();
        merge_entry(&mut entry, empty, &invert(mask));
    }
    entry
}

/// Copies into `current` the fields of `update` the mask selects.
pub(super) fn merge_entry(current: &mut Entry, update: Entry, mask: &EntryMask) {
    if mask.spiffe_id {
        current.spiffe_id = update.spiffe_id;
    }
    if mask.parent_id {
        current.parent_id = update.parent_id;
    }
    if mask.selectors {
        current.selectors = update.selectors;
    }
    if mask.x509_svid_ttl {
        current.x509_svid_ttl = update.x509_svid_ttl;
    }
    if mask.federates_with {
        current.federates_with = update.federates_with;
    }
    if mask.admin {
        current.admin = update.admin;
    }
    if mask.downstream {
        current.downstream = update.downstream;
    }
    if mask.expires_at {
        current.expires_at = update.expires_at;
    }
    if mask.dns_names {
        current.dns_names = update.dns_names;
    }
    if mask.revision_number {
        current.revision_number = update.revision_number;
    }
    if mask.store_svid {
        current.store_svid = update.store_svid;
    }
    if mask.jwt_svid_ttl {
        current.jwt_svid_ttl = update.jwt_svid_ttl;
    }
    if mask.hint {
        current.hint = update.hint;
    }
    if mask.created_at {
        current.created_at = update.created_at;
    }
}

/// Returns a mask selecting every entry field.
pub(super) fn all_entry_fields() -> EntryMask {
    invert(&EntryMask::default())
}

/// Clears the agent fields the mask leaves out; the ID is always kept.
pub(super) fn filter_agent(mut agent: Agent, mask: Option<&AgentMask>) -> Agent {
    let Some(mask) = mask else {
        return agent;
    };
    if !mask.attestation_type {
        agent.attestation_type.clear();
    }
    if !mask.x509svid_serial_number {
        agent.x509svid_serial_number.clear();
    }
    if !mask.x509svid_expires_at {
        agent.x509svid_expires_at = 0;
    }
    if !mask.selectors {
        agent.selectors.clear();
    }
    if !mask.banned {
        agent.banned = false;
    }
    if !mask.can_reattest {
        agent.can_reattest = false;
    }
    agent
}

fn invert(mask: &EntryMask) -> EntryMask {
    EntryMask {
        spiffe_id: !mask.spiffe_id,
        parent_id: !mask.parent_id,
        selectors: !mask.selectors,
        x509_svid_ttl: !mask.x509_svid_ttl,
        federates_with: !mask.federates_with,
        admin: !mask.admin,
        downstream: !mask.downstream,
        expires_at: !mask.expires_at,
        dns_names: !mask.dns_names,
        revision_number: !mask.revision_number,
        store_svid: !mask.store_svid,
        jwt_svid_ttl: !mask.jwt_svid_ttl,
        hint: !mask.hint,
        created_at: !mask.created_at,
    }
}

#[cfg(test)]
mod tests {
    use signet_proto::spire::api::types::Spiffeid;

    use super::*;

    fn entry() -> Entry {
        Entry {
            id: "id-1".to_owned(),
            spiffe_id: Some(Spiffeid {
                trust_domain: "example.org".to_owned(),
                path: "/web".to_owned(),
            }),
            x509_svid_ttl: 600,
            hint: "web".to_owned(),
            ..Entry::default()
        }
    }

    #[test]
    fn output_mask_keeps_selected_fields_and_id() {
        let mask = EntryMask {
            hint: true,
            ..EntryMask::default()
        };

        let filtered = filter_entry(entry(), Some(&mask));

        assert_eq!(filtered.id, "id-1");
        assert_eq!(filtered.hint, "web");
        assert_eq!(filtered.spiffe_id, None);
        assert_eq!(filtered.x509_svid_ttl, 0);
    }

    #[test]
    fn absent_output_mask_keeps_everything() {
        assert_eq!(filter_entry(entry(), None), entry());
    }

    #[test]
    fn input_mask_changes_only_selected_fields() {
        let mut current = entry();
        let update = Entry {
            x509_svid_ttl: 60,
            hint: "other".to_owned(),
            ..Entry::default()
        };
        let mask = EntryMask {
            x509_svid_ttl: true,
            ..EntryMask::default()
        };

        merge_entry(&mut current, update, &mask);

        assert_eq!(current.x509_svid_ttl, 60);
        assert_eq!(current.hint, "web");
        assert!(current.spiffe_id.is_some());
    }
}
