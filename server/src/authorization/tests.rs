//! Table-driven tests for entry authorization.

use super::*;

pub(super) const NOW: i64 = 1_700_000_000;
pub(super) const AGENT: &str = "spiffe://example.org/spire/agent/join_token/abc";
pub(super) const SERVER: &str = "spiffe://example.org/spire/server";

/// Builds an entry whose ID is its name, with the given SPIFFE ID, parent, selectors and expiry.
pub(super) fn entry(
    name: &str,
    spiffe_id: &str,
    parent_id: &str,
    selectors: &[&str],
    expires_at: i64,
) -> RegistrationEntry {
    RegistrationEntry {
        id: name.to_owned(),
        spiffe_id: SpiffeId::new(spiffe_id).unwrap().into(),
        parent_id: SpiffeId::new(parent_id).unwrap(),
        selectors: selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect(),
        x509_svid_ttl: 0,
        jwt_svid_ttl: 0,
        federates_with: Vec::new(),
        admin: false,
        downstream: false,
        expires_at,
        dns_names: Vec::new(),
        revision_number: 0,
        store_svid: false,
        hint: String::new(),
        created_at: 0,
    }
}

/// One scenario: the agent's node selectors, the stored entries and the IDs of the entries the
/// agent must receive, in order.
struct Case {
    name: &'static str,
    node_selectors: &'static [&'static str],
    entries: Vec<RegistrationEntry>,
    expected: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "no entries",
            node_selectors: &[],
            entries: vec![],
            expected: &[],
        },
        Case {
            name: "entry parented to the agent",
            node_selectors: &[],
            entries: vec![
                entry(
                    "web",
                    "spiffe://example.org/web",
                    AGENT,
                    &["unix:uid:1000"],
                    0,
                ),
                entry(
                    "other",
                    "spiffe://example.org/db",
                    "spiffe://example.org/spire/agent/join_token/xyz",
                    &["unix:uid:1"],
                    0,
                ),
            ],
            expected: &["web"],
        },
        Case {
            name: "join token alias and its workloads",
            node_selectors: &[],
            entries: vec![
                entry(
                    "node",
                    "spiffe://example.org/host",
                    AGENT,
                    &["spiffe_id:spiffe://example.org/spire/agent/join_token/abc"],
                    0,
                ),
                entry(
                    "web",
                    "spiffe://example.org/web",
                    "spiffe://example.org/host",
                    &["unix:uid:1000"],
                    0,
                ),
                entry(
                    "deep",
                    "spiffe://example.org/deep",
                    "spiffe://example.org/web",
                    &["unix:uid:1001"],
                    0,
                ),
            ],
            expected: &["node", "web", "deep"],
        },
        Case {
            name: "node alias matching the node selectors",
            node_selectors: &["unix:uid:0", "unix:gid:0"],
            entries: vec![
                entry(
                    "alias",
                    "spiffe://example.org/nodes/root",
                    SERVER,
                    &["unix:uid:0"],
                    0,
                ),
                entry(
                    "web",
                    "spiffe://example.org/web",
                    "spiffe://example.org/nodes/root",
                    &["unix:uid:1000"],
                    0,
                ),
            ],
            expected: &["alias", "web"],
        },
        Case {
            name: "node alias needing a selector the agent lacks",
            node_selectors: &["unix:uid:0"],
            entries: vec![
                entry(
                    "alias",
                    "spiffe://example.org/nodes/root",
                    SERVER,
                    &["unix:uid:0", "unix:gid:7"],
                    0,
                ),
                entry(
                    "web",
                    "spiffe://example.org/web",
                    "spiffe://example.org/nodes/root",
                    &["unix:uid:1000"],
                    0,
                ),
            ],
            expected: &[],
        },
        Case {
            name: "node alias of another trust domain's server",
            node_selectors: &["unix:uid:0"],
            entries: vec![entry(
                "alias",
                "spiffe://example.org/nodes/root",
                "spiffe://other.test/spire/server",
                &["unix:uid:0"],
                0,
            )],
            expected: &[],
        },
        Case {
            name: "entry parented to the server without matching is not granted to every agent",
            node_selectors: &[],
            entries: vec![entry(
                "alias",
                "spiffe://example.org/nodes/any",
                SERVER,
                &["unix:uid:0"],
                0,
            )],
            expected: &[],
        },
        Case {
            name: "expired entries and their children are excluded",
            node_selectors: &[],
            entries: vec![
                entry(
                    "expired",
                    "spiffe://example.org/old",
                    AGENT,
                    &["unix:uid:1"],
                    NOW,
                ),
                entry(
                    "child",
                    "spiffe://example.org/child",
                    "spiffe://example.org/old",
                    &["unix:uid:2"],
                    0,
                ),
                entry(
                    "live",
                    "spiffe://example.org/live",
                    AGENT,
                    &["unix:uid:3"],
                    NOW + 1,
                ),
            ],
            expected: &["live"],
        },
        Case {
            name: "cycle of parents ends",
            node_selectors: &[],
            entries: vec![
                entry("a", "spiffe://example.org/a", AGENT, &["unix:uid:1"], 0),
                entry(
                    "b",
                    "spiffe://example.org/b",
                    "spiffe://example.org/a",
                    &["unix:uid:2"],
                    0,
                ),
                entry(
                    "a-again",
                    "spiffe://example.org/a",
                    "spiffe://example.org/b",
                    &["unix:uid:3"],
                    0,
                ),
                entry(
                    "agent-loop",
                    AGENT,
                    "spiffe://example.org/b",
                    &["unix:uid:4"],
                    0,
                ),
            ],
            expected: &["a", "b", "a-again", "agent-loop"],
        },
        Case {
            name: "unrelated cycle is not reached",
            node_selectors: &[],
            entries: vec![
                entry(
                    "x",
                    "spiffe://example.org/x",
                    "spiffe://example.org/y",
                    &["unix:uid:1"],
                    0,
                ),
                entry(
                    "y",
                    "spiffe://example.org/y",
                    "spiffe://example.org/x",
                    &["unix:uid:2"],
                    0,
                ),
            ],
            expected: &[],
        },
        Case {
            name: "several entries share a SPIFFE ID",
            node_selectors: &[],
            entries: vec![
                entry(
                    "web-1",
                    "spiffe://example.org/web",
                    AGENT,
                    &["unix:uid:1000"],
                    0,
                ),
                entry(
                    "web-2",
                    "spiffe://example.org/web",
                    AGENT,
                    &["unix:uid:1001"],
                    0,
                ),
                entry(
                    "child",
                    "spiffe://example.org/child",
                    "spiffe://example.org/web",
                    &["unix:uid:2"],
                    0,
                ),
            ],
            expected: &["web-1", "web-2", "child"],
        },
    ]
}

#[test]
fn authorization_cases() {
    let agent_id = SpiffeId::new(AGENT).unwrap();
    for case in cases() {
        let node_selectors: Vec<Selector> = case
            .node_selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect();

        let authorized = authorized_entries_at(&agent_id, &node_selectors, &case.entries, NOW);

        let ids: Vec<&str> = authorized.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, case.expected, "{}", case.name);
    }
}
