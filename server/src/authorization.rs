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

use crate::model::RegistrationEntry;

pub mod cache;
pub mod explain;

/// Positions of registration entries in a slice, grouped by parent ID, so that the walk from an
/// agent visits only the entries it reaches.
#[derive(Debug, Default)]
pub struct ParentIndex {
    children: HashMap<SpiffeId, Vec<usize>>,
}

impl ParentIndex {
    /// Indexes `entries` by parent ID.
    pub fn new(entries: &[RegistrationEntry]) -> Self {
        let mut children: HashMap<SpiffeId, Vec<usize>> = HashMap::new();
        for (position, entry) in entries.iter().enumerate() {
            children
                .entry(entry.parent_id.clone())
                .or_default()
                .push(position);
        }
        Self { children }
    }

    fn children(&self, parent_id: &SpiffeId) -> &[usize] {
        self.children.get(parent_id).map_or(&[], Vec::as_slice)
    }
}

/// Returns the positions in `entries` of the entries that the agent `agent_id`, attested with
/// `node_selectors`, is authorized for at `now` (Unix seconds), in ascending order. `index` must
/// be the [`ParentIndex`] of `entries`.
///
/// Parent chains that loop back on themselves end, because each SPIFFE ID is expanded once.
pub fn authorized_positions(
    agent_id: &SpiffeId,
    node_selectors: &[Selector],
    entries: &[RegistrationEntry],
    index: &ParentIndex,
    now: i64,
) -> Vec<usize> {
    let is_live = |position: &usize| {
        entries
            .get(*position)
            .is_some_and(|e| !e.is_expired_at(now))
    };
    let mut authorized = vec![false; entries.len()];
    let mut pending: VecDeque<&SpiffeId> = VecDeque::from([agent_id]);

    // The roots are the agent's own ID and the node alias entries that match the agent.
    let server_id = ids::server_id(agent_id.trust_domain());
    for &position in index.children(&server_id).iter().filter(|p| is_live(p)) {
        let alias = &entries[position];
        if selector::is_subset(&alias.selectors, node_selectors) {
            authorized[position] = true;
            pending.extend(alias.spiffe_id.spiffe_id());
        }
    }

    // Breadth-first walk down the parent links. A template names no single ID, so no entry can
    // have it as parent.
    let mut expanded: HashSet<&SpiffeId> = HashSet::new();
    while let Some(parent) = pending.pop_front() {
        if !expanded.insert(parent) {
            continue;
        }
        for &position in index.children(parent).iter().filter(|p| is_live(p)) {
            authorized[position] = true;
            pending.extend(entries[position].spiffe_id.spiffe_id());
        }
    }

    (0..entries.len())
        .filter(|&position| authorized[position])
        .collect()
}

/// Returns the entries the agent `agent_id`, attested with `node_selectors`, is authorized for at
/// `now` (Unix seconds), in the order of `entries`.
fn authorized_entries_at(
    agent_id: &SpiffeId,
    node_selectors: &[Selector],
    entries: &[RegistrationEntry],
    now: i64,
) -> Vec<RegistrationEntry> {
    let index = ParentIndex::new(entries);
    authorized_positions(agent_id, node_selectors, entries, &index, now)
        .into_iter()
        .map(|position| entries[position].clone())
        .collect()
}

#[cfg(test)]
mod tests;
