//! Tests of entry explanations: direct parents, node aliases, refusals and agent state.

use spiffe::SpiffeId;

use super::*;

const NOW: i64 = 1_700_000_000;
const AGENT: &str = "spiffe://example.org/spire/agent/join_token/abc";
const OTHER_AGENT: &str = "spiffe://example.org/spire/agent/join_token/other";
const SERVER: &str = "spiffe://example.org/spire/server";
const ALIAS: &str = "spiffe://example.org/node/web";

fn entry(id: &str, spiffe_id: &str, parent_id: &str, selectors: &[&str]) -> RegistrationEntry {
    RegistrationEntry {
        id: id.to_owned(),
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
        expires_at: 0,
        dns_names: Vec::new(),
        revision_number: 0,
        store_svid: false,
        hint: String::new(),
        created_at: 0,
    }
}

fn agent(id: &str, selectors: &[&str]) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: SpiffeId::new(id).unwrap(),
        attestation_type: "join_token".to_owned(),
        serial_number: "01".to_owned(),
        expires_at: NOW + 3600,
        selectors: selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect(),
        banned: false,
        can_reattest: true,
        x509_authority_id: String::new(),
    }
}

fn explain_one(
    entry: &RegistrationEntry,
    agent: AttestedAgent,
    entries: &[RegistrationEntry],
) -> AgentVerdict {
    explain_entry(entry, &[agent], entries, NOW).remove(0)
}

/// Explains `entry` for `agent` when it is the only stored entry.
fn explain_alone(entry: &RegistrationEntry, agent: AttestedAgent) -> AgentVerdict {
    explain_one(entry, agent, std::slice::from_ref(entry))
}

#[test]
fn direct_parent_is_authorized() {
    let web = entry("web", "spiffe://example.org/web", AGENT, &["unix:uid:1000"]);

    let verdict = explain_alone(&web, agent(AGENT, &[]));

    assert!(verdict.authorized);
    assert_eq!(
        verdict.reasons,
        ["the entry's parent ID is the agent's SPIFFE ID"]
    );
}

#[test]
fn other_agent_is_refused_with_its_parent() {
    let web = entry("web", "spiffe://example.org/web", AGENT, &["unix:uid:1000"]);

    let verdict = explain_alone(&web, agent(OTHER_AGENT, &[]));

    assert!(!verdict.authorized);
    assert!(verdict.reasons[0].contains(AGENT), "{:?}", verdict.reasons);
}

#[test]
fn alias_member_is_authorized() {
    let alias = entry(
        "alias",
        ALIAS,
        SERVER,
        &["spiffe_id:spiffe://example.org/group/web"],
    );
    let web = entry("web", "spiffe://example.org/web", ALIAS, &["unix:uid:1000"]);
    let entries = [alias, web.clone()];

    let verdict = explain_one(
        &web,
        agent(AGENT, &["spiffe_id:spiffe://example.org/group/web"]),
        &entries,
    );

    assert!(verdict.authorized);
    assert!(
        verdict.reasons[0].contains("node alias"),
        "{:?}",
        verdict.reasons
    );
}

#[test]
fn alias_non_member_gets_missing_selectors() {
    let alias = entry(
        "alias",
        ALIAS,
        SERVER,
        &["spiffe_id:spiffe://example.org/group/web"],
    );
    let web = entry("web", "spiffe://example.org/web", ALIAS, &["unix:uid:1000"]);
    let entries = [alias, web.clone()];

    let verdict = explain_one(&web, agent(AGENT, &[]), &entries);

    assert!(!verdict.authorized);
    assert_eq!(
        verdict.missing_alias_selectors,
        [Selector::parse("spiffe_id:spiffe://example.org/group/web").unwrap()]
    );
}

#[test]
fn banned_agent_is_refused_despite_parent() {
    let web = entry("web", "spiffe://example.org/web", AGENT, &["unix:uid:1000"]);
    let mut banned = agent(AGENT, &[]);
    banned.banned = true;

    let verdict = explain_alone(&web, banned);

    assert!(!verdict.authorized);
    assert!(
        verdict
            .reasons
            .iter()
            .any(|reason| reason.contains("banned")),
        "{:?}",
        verdict.reasons
    );
}

#[test]
fn expired_agent_is_refused() {
    let web = entry("web", "spiffe://example.org/web", AGENT, &["unix:uid:1000"]);
    let mut expired = agent(AGENT, &[]);
    expired.expires_at = NOW - 1;

    let verdict = explain_alone(&web, expired);

    assert!(!verdict.authorized);
    assert!(
        verdict
            .reasons
            .iter()
            .any(|reason| reason.contains("expired")),
        "{:?}",
        verdict.reasons
    );
}

#[test]
fn expired_entry_is_refused() {
    let mut web = entry("web", "spiffe://example.org/web", AGENT, &["unix:uid:1000"]);
    web.expires_at = NOW - 1;

    let verdict = explain_alone(&web, agent(AGENT, &[]));

    assert!(!verdict.authorized);
    assert!(
        verdict.reasons[0].starts_with("the entry expired"),
        "{:?}",
        verdict.reasons
    );
}

#[test]
fn verdict_agrees_with_authorized_entries() {
    let alias = entry(
        "alias",
        ALIAS,
        SERVER,
        &["spiffe_id:spiffe://example.org/group/web"],
    );
    let chained = entry(
        "chained",
        "spiffe://example.org/chained",
        "spiffe://example.org/web",
        &["unix:uid:1"],
    );
    let web = entry("web", "spiffe://example.org/web", ALIAS, &["unix:uid:1000"]);
    let direct = entry(
        "direct",
        "spiffe://example.org/direct",
        AGENT,
        &["unix:uid:2"],
    );
    let entries = [alias, chained, web, direct];
    let agents = [
        agent(AGENT, &[]),
        agent(OTHER_AGENT, &["spiffe_id:spiffe://example.org/group/web"]),
    ];

    for entry in &entries {
        for (agent, verdict) in agents
            .iter()
            .zip(explain_entry(entry, &agents, &entries, NOW))
        {
            let expected = super::super::authorized_entries_at(
                &agent.spiffe_id,
                &agent.selectors,
                &entries,
                NOW,
            )
            .iter()
            .any(|authorized| authorized.id == entry.id);
            assert_eq!(
                verdict.authorized, expected,
                "{} for {}",
                entry.id, agent.spiffe_id
            );
        }
    }
}
