use super::*;
use crate::test_util::TestCa;
use crate::workload_api::test_support::{identity, snapshot, svid_material};

const TEMPLATE: &str = "spiffe://example.org/uid/{unix:uid}";

fn selectors(texts: &[&str]) -> Vec<Selector> {
    texts
        .iter()
        .map(|text| Selector::parse(text).unwrap())
        .collect()
}

/// Returns an identity of the entry `entry_id` with the SPIFFE ID template `template`.
fn template_identity(entry_id: &str, template: &str, required: &[&str]) -> Identity {
    let mut identity = identity("spiffe://example.org/placeholder", selectors(required));
    identity.entry_id = entry_id.to_owned();
    identity.spiffe_id = signet_core::template::SpiffeIdTemplate::parse(template).unwrap();
    identity
}

fn entitled_ids(matches: &Matches<'_>) -> Vec<String> {
    let ids = matches.entitled.iter();
    ids.map(|entitled| entitled.spiffe_id.to_string()).collect()
}

#[test]
fn template_expands_per_workload() {
    let ca = TestCa::new();
    let snapshot = snapshot(
        &ca,
        vec![template_identity("uid", TEMPLATE, &["unix:gid:0"])],
    );

    let root = match_identities(&snapshot, &selectors(&["unix:uid:0", "unix:gid:0"]));
    let nobody = match_identities(&snapshot, &selectors(&["unix:uid:65534", "unix:gid:0"]));

    assert_eq!(entitled_ids(&root), ["spiffe://example.org/uid/0"]);
    assert_eq!(entitled_ids(&nobody), ["spiffe://example.org/uid/65534"]);
    assert!(root.unexpanded.is_empty());
}

#[test]
fn unfillable_template_does_not_apply() {
    let ca = TestCa::new();
    let snapshot = snapshot(
        &ca,
        vec![template_identity(
            "user",
            "spiffe://example.org/user/{unix:user}",
            &["unix:gid:0"],
        )],
    );

    let matches = match_identities(&snapshot, &selectors(&["unix:gid:0", "unix:uid:0"]));

    assert!(matches.entitled.is_empty());
    let [unexpanded] = matches.unexpanded.as_slice() else {
        panic!(
            "expected one unexpanded template, got {:?}",
            matches.unexpanded
        );
    };
    assert_eq!(unexpanded.identity.entry_id, "user");
    assert_eq!(
        unexpanded.error,
        ExpansionError::MissingSelector {
            placeholder: "{unix:user}".to_owned()
        }
    );
}

#[test]
fn template_needs_the_entry_selectors_first() {
    let ca = TestCa::new();
    let snapshot = snapshot(
        &ca,
        vec![template_identity("uid", TEMPLATE, &["unix:gid:0"])],
    );

    let matches = match_identities(&snapshot, &selectors(&["unix:uid:0", "unix:gid:1"]));

    assert!(matches.entitled.is_empty());
    assert!(matches.unexpanded.is_empty());
}

#[test]
fn template_svid_matches_concrete_id() {
    let ca = TestCa::new();
    let mut template = template_identity("uid", TEMPLATE, &["unix:gid:0"]);
    let root_id = SpiffeId::new("spiffe://example.org/uid/0").unwrap();
    let root_svid = svid_material(&ca, &root_id.to_string());
    template
        .expanded_svids
        .insert(root_id, Arc::clone(&root_svid));
    let snapshot = snapshot(&ca, vec![template]);

    let root = match_identities(&snapshot, &selectors(&["unix:uid:0", "unix:gid:0"]));
    let nobody = match_identities(&snapshot, &selectors(&["unix:uid:65534", "unix:gid:0"]));

    assert!(Arc::ptr_eq(root.entitled[0].svid().unwrap(), &root_svid));
    assert!(nobody.entitled[0].svid().is_none());
}

#[test]
fn expanded_ids_list_only_templates() {
    let ca = TestCa::new();
    let plain = identity("spiffe://example.org/web", selectors(&["unix:gid:0"]));
    let snapshot = snapshot(
        &ca,
        vec![plain, template_identity("uid", TEMPLATE, &["unix:gid:0"])],
    );

    let matches = match_identities(&snapshot, &selectors(&["unix:uid:7", "unix:gid:0"]));

    let expected = ExpandedId {
        entry_id: "uid".to_owned(),
        spiffe_id: SpiffeId::new("spiffe://example.org/uid/7").unwrap(),
    };
    assert_eq!(matches.expanded_ids(), BTreeSet::from([expected]));
    assert_eq!(matches.entitled.len(), 2);
}

#[test]
fn warnings_are_reported_once_per_entry_and_process() {
    let warnings = ExpansionWarnings::default();
    assert!(warnings.is_first("user", 10));
    assert!(!warnings.is_first("user", 10));
    assert!(warnings.is_first("user", 11));
    assert!(warnings.is_first("other", 10));
}
