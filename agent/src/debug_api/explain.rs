//! Compares a workload's selectors with every entry the agent serves, through the matching rule
//! of the Workload API, so an explanation cannot disagree with what the Workload API serves.

use std::collections::HashMap;
use std::time::SystemTime;

use signet_core::selector::Selector;
use signet_core::template::ExpansionError;
use signet_proto::signet::agent::debug::v1::ExplainedEntry;
use spiffe::SpiffeId;

use crate::cache::{Identity, Snapshot};
use crate::workload_api::EntitledIdentity;
use crate::workload_api::match_identities;

/// The selectors known for a workload, and the keys that cannot be known.
#[derive(Debug)]
pub(super) struct WorkloadSelectors {
    /// Selectors the attestor produced.
    pub(super) attested: Vec<Selector>,
    /// `unix` keys whose selectors cannot be known, such as `path` for a process not yet started.
    pub(super) unknown_keys: Vec<&'static str>,
}

/// The decision of the matching rule for one identity that applies to the workload.
enum Outcome {
    /// The workload's selectors select the identity with this SPIFFE ID. It receives it while
    /// the agent has a valid X509-SVID for it.
    Match {
        spiffe_id: String,
        has_svid: bool,
        /// Expiry of an X509-SVID that was not renewed in time, and so is not served.
        expired_at: Option<SystemTime>,
    },
    /// The workload has the selectors, but they cannot fill the template.
    Unexpanded(ExpansionError),
}

/// Returns one explanation per identity of `snapshot`, in snapshot order, at `now`.
/// `withdrawn_at` returns the expiry of an X509-SVID that sync withdrew after it expired.
pub(super) fn explain_entries(
    snapshot: &Snapshot,
    workload: &WorkloadSelectors,
    now: SystemTime,
    withdrawn_at: &dyn Fn(&SpiffeId) -> Option<SystemTime>,
) -> Vec<ExplainedEntry> {
    let matches = match_identities(snapshot, &workload.attested);
    let mut outcomes: HashMap<&str, Outcome> = HashMap::new();
    for entitled in &matches.entitled {
        let expired_at = svid_expiry(entitled, now, withdrawn_at);
        let outcome = Outcome::Match {
            spiffe_id: entitled.spiffe_id.to_string(),
            has_svid: entitled.svid().is_some() && expired_at.is_none(),
            expired_at,
        };
        outcomes.insert(entitled.identity.entry_id.as_str(), outcome);
    }
    for template in &matches.unexpanded {
        outcomes.insert(
            template.identity.entry_id.as_str(),
            Outcome::Unexpanded(template.error.clone()),
        );
    }
    snapshot
        .identities
        .iter()
        .map(|identity| {
            let outcome = outcomes.remove(identity.entry_id.as_str());
            explain_entry(identity, workload, outcome)
        })
        .collect()
}

/// Returns when the X509-SVID of `entitled` expired: the cache keeps an expired one until sync
/// withdraws it, and afterwards only `withdrawn_at` returns the expiry.
fn svid_expiry(
    entitled: &EntitledIdentity<'_>,
    now: SystemTime,
    withdrawn_at: &dyn Fn(&SpiffeId) -> Option<SystemTime>,
) -> Option<SystemTime> {
    match entitled.svid() {
        Some(svid) if svid.expires_at > now => None,
        Some(svid) => Some(svid.expires_at),
        None => withdrawn_at(&entitled.spiffe_id),
    }
}

fn explain_entry(
    identity: &Identity,
    workload: &WorkloadSelectors,
    outcome: Option<Outcome>,
) -> ExplainedEntry {
    let (undetermined, missing): (Vec<&Selector>, Vec<&Selector>) = identity
        .selectors
        .iter()
        .filter(|selector| !workload.attested.contains(selector))
        .partition(|selector| is_undetermined(selector, &workload.unknown_keys));
    let mut explained = ExplainedEntry {
        entry_id: identity.entry_id.clone(),
        spiffe_id: identity.spiffe_id.to_string(),
        selectors: texts(identity.selectors.iter()),
        missing_selectors: texts(missing.iter().copied()),
        undetermined_selectors: texts(undetermined.iter().copied()),
        matches: false,
        has_svid: identity.svid.is_some(),
        note: String::new(),
        svid_expired_at: 0,
    };
    match outcome {
        Some(Outcome::Match {
            spiffe_id,
            has_svid,
            expired_at,
        }) => {
            explained.matches = true;
            explained.spiffe_id = spiffe_id;
            explained.has_svid = has_svid;
            explained.svid_expired_at = expired_at.map_or(0, unix_seconds);
        }
        Some(Outcome::Unexpanded(error)) => match undetermined_placeholder(&error, workload) {
            Some(selector) => explained.undetermined_selectors.push(selector),
            None => {
                explained.note = format!("the SPIFFE ID template cannot be filled: {error}");
            }
        },
        None if !missing.is_empty() || !undetermined.is_empty() => {}
        None if identity.selectors.is_empty() => explained.note = NO_SELECTORS.to_owned(),
        None => explained.note = SHADOWED_HINT.to_owned(),
    }
    explained
}

/// Returns whether `selector` has a key whose value the request could not determine.
fn is_undetermined(selector: &Selector, unknown_keys: &[&str]) -> bool {
    let key = selector.value().split_once(':').map(|(key, _)| key);
    selector.kind() == "unix" && key.is_some_and(|key| unknown_keys.contains(&key))
}

/// Returns the selector a placeholder needs, as `TYPE:KEY:<value>`, when the workload lacks it
/// only because the request could not determine that key, as for `{unix:sha256}` by uid.
fn undetermined_placeholder(
    error: &ExpansionError,
    workload: &WorkloadSelectors,
) -> Option<String> {
    let ExpansionError::MissingSelector { placeholder } = error else {
        return None;
    };
    let name = placeholder.strip_prefix('{')?.strip_suffix('}')?;
    let (kind, key) = name.split_once(':')?;
    let is_unknown = kind == "unix" && workload.unknown_keys.contains(&key);
    is_unknown.then(|| format!("{name}:<value> (fills {placeholder})"))
}

/// Returns `time` in Unix seconds, saturating, and 0 before 1970.
pub(super) fn unix_seconds(time: SystemTime) -> i64 {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

fn texts<'a>(selectors: impl Iterator<Item = &'a Selector>) -> Vec<String> {
    selectors.map(ToString::to_string).collect()
}

/// Note for an entry whose selectors all match but which the Workload API leaves out, because
/// hints must be unique within a response and an older matching entry has the same hint.
const SHADOWED_HINT: &str = "every selector matches, but an older matching entry has the same hint, so this one is not served";
/// Note for an entry without selectors, which matches no workload.
const NO_SELECTORS: &str = "the entry has no selectors, so it matches no workload";

#[cfg(test)]
mod tests {
    use signet_core::template::SpiffeIdTemplate;
    use spiffe::TrustDomain;

    use super::*;
    use crate::cache::X509SvidMaterial;

    fn identity(entry_id: &str, selectors: &[&str], hint: &str) -> Identity {
        Identity {
            entry_id: entry_id.to_owned(),
            spiffe_id: SpiffeId::new(format!("spiffe://example.org/{entry_id}"))
                .unwrap()
                .into(),
            selectors: selectors
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
            hint: hint.to_owned(),
            svid: None,
            expanded_svids: std::collections::BTreeMap::new(),
        }
    }

    fn snapshot(identities: Vec<Identity>) -> Snapshot {
        let mut snapshot = Snapshot::empty(TrustDomain::new("example.org").unwrap());
        snapshot.identities = identities;
        snapshot
    }

    fn workload(attested: &[&str], unknown_keys: &[&'static str]) -> WorkloadSelectors {
        WorkloadSelectors {
            attested: attested
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
            unknown_keys: unknown_keys.to_vec(),
        }
    }

    fn explain_entries_now(
        snapshot: &Snapshot,
        workload: &WorkloadSelectors,
    ) -> Vec<ExplainedEntry> {
        explain_entries(snapshot, workload, SystemTime::now(), &|_| None)
    }

    fn material(expires_at: SystemTime) -> std::sync::Arc<X509SvidMaterial> {
        std::sync::Arc::new(X509SvidMaterial {
            chain: Vec::new(),
            private_key_pkcs8: zeroize::Zeroizing::new(Vec::new()),
            expires_at,
        })
    }

    #[test]
    fn expired_svid_is_reported_and_not_served() {
        let expired_at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let mut entry = identity("web", &["unix:uid:1000"], "");
        entry.svid = Some(material(expired_at));
        let snapshot = snapshot(vec![entry]);
        let workload = workload(&["unix:uid:1000"], &[]);

        let explained = explain_entries(&snapshot, &workload, SystemTime::now(), &|_| None);

        assert!(explained[0].matches);
        assert!(!explained[0].has_svid);
        assert_eq!(explained[0].svid_expired_at, 1_000);
    }

    #[test]
    fn withdrawn_svid_is_reported_as_expired() {
        let snapshot = snapshot(vec![identity("web", &["unix:uid:1000"], "")]);
        let workload = workload(&["unix:uid:1000"], &[]);
        let withdrawn = |id: &SpiffeId| {
            (id.to_string() == "spiffe://example.org/web")
                .then(|| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000))
        };

        let explained = explain_entries(&snapshot, &workload, SystemTime::now(), &withdrawn);

        assert!(explained[0].matches);
        assert!(!explained[0].has_svid);
        assert_eq!(explained[0].svid_expired_at, 2_000);
    }

    #[test]
    fn matching_entry_has_nothing_missing() {
        let snapshot = snapshot(vec![identity("web", &["unix:uid:1000"], "")]);

        let explained = explain_entries_now(&snapshot, &workload(&["unix:uid:1000"], &[]));

        assert!(explained[0].matches);
        assert!(explained[0].missing_selectors.is_empty());
        assert!(explained[0].note.is_empty());
    }

    #[test]
    fn near_miss_names_missing_selector() {
        let snapshot = snapshot(vec![identity("web", &["unix:uid:1000", "unix:gid:5"], "")]);

        let explained =
            explain_entries_now(&snapshot, &workload(&["unix:uid:1000", "unix:gid:6"], &[]));

        assert!(!explained[0].matches);
        assert_eq!(explained[0].missing_selectors, ["unix:gid:5"]);
    }

    #[test]
    fn unknown_keys_are_undetermined_not_missing() {
        let entry = identity("web", &["unix:uid:1000", "unix:path:/bin/web"], "");
        let snapshot = snapshot(vec![entry]);

        let explained = explain_entries_now(&snapshot, &workload(&["unix:uid:1000"], &["path"]));

        assert!(!explained[0].matches);
        assert!(explained[0].missing_selectors.is_empty());
        assert_eq!(explained[0].undetermined_selectors, ["unix:path:/bin/web"]);
    }

    #[test]
    fn template_needing_unknown_key_is_undetermined() {
        let mut entry = identity("hash", &["unix:uid:1000"], "");
        entry.spiffe_id =
            SpiffeIdTemplate::parse("spiffe://example.org/bin/{unix:sha256}").unwrap();
        let snapshot = snapshot(vec![entry]);

        let explained = explain_entries_now(&snapshot, &workload(&["unix:uid:1000"], &["sha256"]));

        assert!(!explained[0].matches);
        assert!(explained[0].note.is_empty(), "{}", explained[0].note);
        assert_eq!(
            explained[0].undetermined_selectors,
            ["unix:sha256:<value> (fills {unix:sha256})"]
        );
    }

    #[test]
    fn template_missing_known_key_is_no_match() {
        let mut entry = identity("user", &["unix:uid:1000"], "");
        entry.spiffe_id = SpiffeIdTemplate::parse("spiffe://example.org/u/{unix:user}").unwrap();
        let snapshot = snapshot(vec![entry]);

        let explained = explain_entries_now(&snapshot, &workload(&["unix:uid:1000"], &["sha256"]));

        assert!(explained[0].undetermined_selectors.is_empty());
        assert!(
            explained[0].note.contains("{unix:user}"),
            "{}",
            explained[0].note
        );
    }

    #[test]
    fn entry_shadowed_by_hint_gets_a_note() {
        let snapshot = snapshot(vec![
            identity("first", &["unix:uid:1000"], "db"),
            identity("second", &["unix:uid:1000"], "db"),
        ]);

        let explained = explain_entries_now(&snapshot, &workload(&["unix:uid:1000"], &[]));

        assert!(explained[0].matches);
        assert!(!explained[1].matches);
        assert_eq!(explained[1].note, SHADOWED_HINT);
    }
}
