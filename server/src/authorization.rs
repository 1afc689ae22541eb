//! Entry authorization: which registration entries an agent may obtain SVIDs for.
//!
//! An agent is authorized for the entries parented to its own SPIFFE ID and for the node alias
//! entries (parent `spiffe://<trust domain>/spire/server`) whose selectors are all among its node
//! selectors. It is also authorized, transitively, for the entries parented to the SPIFFE ID of
//! any entry it is authorized for. Expired entries grant nothing, neither to themselves nor to
//! their children.

use std::collections::{HashMap, HashSet, VecDeque};

use signet_core::ids;
use signet_core::selector::{self, Selector};
use spiffe::SpiffeId;

use crate::model::{RegistrationEntry, unix_now};

pub mod explain;

/// Returns the entries the agent `agent_id`, attested with `node_selectors`, is authorized for, in
/// the order of `entries`.
///
/// Every entry appears at most once, and parent chains that loop back on themselves end, because
/// each SPIFFE ID is expanded only once.
pub fn authorized_entries(
    agent_id: &SpiffeId,
    node_selectors: &[Selector],
    entries: &[RegistrationEntry],
) -> Vec<RegistrationEntry> {
    authorized_entries_at(agent_id, node_selectors, entries, unix_now())
}

/// Does the work of [`authorized_entries`] with `now` (Unix seconds) as the current time.
fn authorized_entries_at(
    agent_id: &SpiffeId,
    node_selectors: &[Selector],
    entries: &[RegistrationEntry],
    now: i64,
) -> Vec<RegistrationEntry> {
    let live: Vec<&RegistrationEntry> = entries.iter().filter(|e| !e.is_expired_at(now)).collect();
    let mut children: HashMap<&SpiffeId, Vec<usize>> = HashMap::new();
    for (index, entry) in live.iter().enumerate() {
        children.entry(&entry.parent_id).or_default().push(index);
    }

    // The roots are the agent's own ID and the node alias entries that match the agent.
    let server_id = ids::server_id(agent_id.trust_domain());
    let mut authorized = vec![false; live.len()];
    let mut pending: VecDeque<&SpiffeId> = VecDeque::from([agent_id]);
    for &index in children.get(&server_id).into_iter().flatten() {
        if selector::is_subset(&live[index].selectors, node_selectors) {
            authorized[index] = true;
            pending.extend(live[index].spiffe_id.spiffe_id());
        }
    }

    // Breadth-first walk down the parent links. Each SPIFFE ID is expanded once, so parent chains
    // that loop back on themselves end. A template names no single ID, so no entry can have it as
    // parent.
    let mut expanded: HashSet<&SpiffeId> = HashSet::new();
    while let Some(parent) = pending.pop_front() {
        if !expanded.insert(parent) {
            continue;
        }
        for &index in children.get(parent).into_iter().flatten() {
            authorized[index] = true;
            pending.extend(live[index].spiffe_id.spiffe_id());
        }
    }

    live.iter()
        .zip(authorized)
        .filter(|(_, is_authorized)| *is_authorized)
        .map(|(entry, _)| (*entry).clone())
        .collect()
}

#[cfg(test)]
mod tests;
