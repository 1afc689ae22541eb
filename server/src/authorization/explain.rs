//! Explains, for one entry, which attested agents are authorized for it and why the others are
//! not.
//!
//! The verdict comes from [`super::authorized_entries_at`], the function that decides what agents
//! receive, so an explanation cannot disagree with issuance. The reasons only describe it.

use signet_core::ids;
use signet_core::selector::Selector;
use spiffe::SpiffeId;

use crate::model::{AttestedAgent, RegistrationEntry, unix_time_text};

/// Whether one agent may obtain SVIDs for an entry, and why.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AgentVerdict {
    /// The agent's SPIFFE ID.
    pub agent_id: SpiffeId,
    /// Whether the agent receives the entry when it next syncs.
    pub authorized: bool,
    /// One sentence per reason, in lower case without a trailing period.
    pub reasons: Vec<String>,
    /// Selectors of node aliases on the entry's parent ID that the agent's node selectors lack.
    pub missing_alias_selectors: Vec<Selector>,
    /// Unix time in seconds at which the agent's X509-SVID expires. A stopped agent stays
    /// authorized until then, so this and the last sync tell a stale agent from a live one.
    pub svid_expires_at: i64,
}

/// Returns one verdict per agent in `agents` for `entry`, where `entries` are all stored entries
/// and `now` is the current time in Unix seconds.
pub fn explain_entry(
    entry: &RegistrationEntry,
    agents: &[AttestedAgent],
    entries: &[RegistrationEntry],
    now: i64,
) -> Vec<AgentVerdict> {
    agents
        .iter()
        .map(|agent| explain_for_agent(entry, agent, entries, now))
        .collect()
}

fn explain_for_agent(
    entry: &RegistrationEntry,
    agent: &AttestedAgent,
    entries: &[RegistrationEntry],
    now: i64,
) -> AgentVerdict {
    let authorized_ids: Vec<String> =
        super::authorized_entries_at(&agent.spiffe_id, &agent.selectors, entries, now)
            .into_iter()
            .map(|authorized| authorized.id)
            .collect();
    let is_authorized = |candidate: &RegistrationEntry| authorized_ids.contains(&candidate.id);

    let mut verdict = AgentVerdict {
        agent_id: agent.spiffe_id.clone(),
        authorized: is_authorized(entry),
        reasons: Vec::new(),
        missing_alias_selectors: Vec::new(),
        svid_expires_at: agent.expires_at,
    };
    if verdict.authorized {
        verdict.reasons = granting_reasons(entry, agent, entries, is_authorized);
    } else {
        refusal_reasons(&mut verdict, entry, agent, entries, now);
    }
    agent_state_reasons(&mut verdict, agent, now);
    verdict
}

/// Describes how an authorized entry reaches the agent.
fn granting_reasons(
    entry: &RegistrationEntry,
    agent: &AttestedAgent,
    entries: &[RegistrationEntry],
    is_authorized: impl Fn(&RegistrationEntry) -> bool,
) -> Vec<String> {
    let server = ids::server_id(agent.spiffe_id.trust_domain());
    if entry.parent_id == agent.spiffe_id {
        return vec!["the entry's parent ID is the agent's SPIFFE ID".to_owned()];
    }
    if entry.parent_id == server {
        return vec!["the entry is a node alias whose selectors the agent has".to_owned()];
    }
    parent_entries(entry, entries)
        .filter(|parent| is_authorized(parent))
        .map(|parent| {
            if parent.parent_id == server {
                format!(
                    "the entry's parent ID is node alias {} (entry {}), and the agent has all of \
                     its selectors",
                    entry.parent_id, parent.id
                )
            } else {
                format!(
                    "the entry's parent ID is {} (entry {}), which the agent is authorized for",
                    entry.parent_id, parent.id
                )
            }
        })
        .collect()
}

/// Describes why an entry does not reach the agent, and names the missing alias selectors.
fn refusal_reasons(
    verdict: &mut AgentVerdict,
    entry: &RegistrationEntry,
    agent: &AttestedAgent,
    entries: &[RegistrationEntry],
    now: i64,
) {
    if entry.is_expired_at(now) {
        verdict.reasons.push(format!(
            "the entry expired at {}",
            unix_time_text(entry.expires_at)
        ));
        return;
    }
    let server = ids::server_id(agent.spiffe_id.trust_domain());
    if entry.parent_id == server {
        push_missing(verdict, "the entry is a node alias", entry, agent);
        return;
    }

    let parents: Vec<&RegistrationEntry> = parent_entries(entry, entries).collect();
    if parents.is_empty() {
        verdict.reasons.push(format!(
            "the entry's parent ID {} is not the agent's SPIFFE ID, and no entry (such as a node \
             alias) has that SPIFFE ID",
            entry.parent_id
        ));
    }
    for parent in parents {
        if parent.is_expired_at(now) {
            verdict.reasons.push(format!(
                "entry {} that has the parent ID {} as its SPIFFE ID expired at {}",
                parent.id,
                entry.parent_id,
                unix_time_text(parent.expires_at)
            ));
        } else if parent.parent_id == server {
            let context = format!("node alias {} (entry {})", entry.parent_id, parent.id);
            push_missing(verdict, &context, parent, agent);
        } else {
            verdict.reasons.push(format!(
                "the entry's parent ID is {} (entry {}), which the agent is not authorized for: \
                 run entry explain on that SPIFFE ID",
                entry.parent_id, parent.id
            ));
        }
    }
}

/// Adds the selectors of `alias` that the agent lacks, with a reason that starts with `context`.
fn push_missing(
    verdict: &mut AgentVerdict,
    context: &str,
    alias: &RegistrationEntry,
    agent: &AttestedAgent,
) {
    let missing: Vec<&Selector> = alias
        .selectors
        .iter()
        .filter(|selector| !agent.selectors.contains(selector))
        .collect();
    if missing.is_empty() {
        verdict.reasons.push(format!(
            "{context} has no selectors, so it matches no agent"
        ));
        return;
    }
    let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
    verdict.reasons.push(format!(
        "{context} requires node selectors the agent lacks: {}",
        names.join(", ")
    ));
    verdict
        .missing_alias_selectors
        .extend(missing.into_iter().cloned());
}

/// Marks agents that cannot sync at all, whatever the entries contain, because the server
/// rejects a banned agent and an agent whose X509-SVID expired.
fn agent_state_reasons(verdict: &mut AgentVerdict, agent: &AttestedAgent, now: i64) {
    if agent.banned {
        verdict.authorized = false;
        verdict
            .reasons
            .push("the agent is banned, so the server rejects its requests".to_owned());
    }
    if agent.expires_at <= now {
        verdict.authorized = false;
        verdict.reasons.push(format!(
            "the agent's X509-SVID expired at {}, so it must attest again",
            unix_time_text(agent.expires_at)
        ));
    }
}

/// Returns the entries whose SPIFFE ID is the parent ID of `entry`.
fn parent_entries<'a>(
    entry: &'a RegistrationEntry,
    entries: &'a [RegistrationEntry],
) -> impl Iterator<Item = &'a RegistrationEntry> {
    entries
        .iter()
        .filter(|candidate| candidate.spiffe_id.spiffe_id() == Some(&entry.parent_id))
}

#[cfg(test)]
mod tests;
