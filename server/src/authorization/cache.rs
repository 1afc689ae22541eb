//! Cached entry authorization: one snapshot of the stored entries per entries generation, and each
//! agent's authorized entries computed once on that snapshot.
//!
//! The cache never decides whether it is current. Callers read the entries generation from the
//! datastore on every request and ask for the snapshot of exactly that generation, so a write
//! committed by any server sharing the datastore is seen by the next request. Time is the other
//! input of authorization: an agent's cached result is used only until the next expiry of a
//! stored entry, because an entry that expires takes its children with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use signet_core::selector::Selector;
use spiffe::SpiffeId;

use super::{ParentIndex, authorized_positions};
use crate::datastore::EntriesGeneration;
use crate::model::RegistrationEntry;

/// The latest snapshot of the stored entries.
#[derive(Debug, Default)]
pub struct EntryCache {
    latest: Mutex<Option<Arc<EntrySnapshot>>>,
}

/// The stored entries as read at one entries generation, indexed for authorization, with the
/// authorization results of the agents that requested entries since.
#[derive(Debug)]
pub struct EntrySnapshot {
    generation: EntriesGeneration,
    entries: Vec<RegistrationEntry>,
    by_parent: ParentIndex,
    by_id: HashMap<String, usize>,
    /// Expiry times (Unix seconds) of the entries that have one, ascending.
    expiries: Vec<i64>,
    agents: Mutex<AgentResults>,
}

/// The entries one agent is authorized for, as positions in a snapshot.
#[derive(Clone, Debug)]
pub struct AuthorizedEntries {
    snapshot: Arc<EntrySnapshot>,
    positions: Arc<[usize]>,
}

/// The cached authorization results of one snapshot, by agent SPIFFE ID.
#[derive(Debug, Default)]
struct AgentResults {
    by_agent: HashMap<SpiffeId, AgentAuthorization>,
    /// Number of entry positions that the results hold together.
    positions: usize,
}

/// One agent's authorization result, and the conditions under which it still holds.
#[derive(Debug)]
struct AgentAuthorization {
    node_selectors: Vec<Selector>,
    /// Unix time in seconds at which the result was computed.
    computed_at: i64,
    /// Unix time in seconds of the first entry expiry after `computed_at`, or `i64::MAX`.
    valid_until: i64,
    positions: Arc<[usize]>,
}

// === impl EntryCache ===

impl EntryCache {
    /// Returns the cached snapshot if it was read at `generation`.
    pub fn snapshot(&self, generation: EntriesGeneration) -> Option<Arc<EntrySnapshot>> {
        lock(&self.latest)
            .as_ref()
            .filter(|snapshot| snapshot.generation == generation)
            .cloned()
    }

    /// Builds the snapshot of `entries`, read at `generation`, caches it in place of a snapshot of
    /// any other generation, and returns it.
    ///
    /// The entries must have been read after the generation, so that they contain at least every
    /// write it counts. A later write read along with them is harmless: it bumped the generation,
    /// so no request looks up this snapshot again. A generation lower than the cached one (a
    /// restored database) replaces it too, so that the older snapshot cannot be served if the
    /// generation ever reaches its number again. Two requests racing with different generations
    /// cost at most one more read of the entries.
    pub fn insert(
        &self,
        generation: EntriesGeneration,
        entries: Vec<RegistrationEntry>,
    ) -> Arc<EntrySnapshot> {
        let snapshot = Arc::new(EntrySnapshot::new(generation, entries));
        *lock(&self.latest) = Some(snapshot.clone());
        snapshot
    }
}

// === impl EntrySnapshot ===

impl EntrySnapshot {
    fn new(generation: EntriesGeneration, entries: Vec<RegistrationEntry>) -> Self {
        let by_id = entries
            .iter()
            .enumerate()
            .map(|(position, entry)| (entry.id.clone(), position))
            .collect();
        let mut expiries: Vec<i64> = entries
            .iter()
            .map(|entry| entry.expires_at)
            .filter(|&expires_at| expires_at != 0)
            .collect();
        expiries.sort_unstable();
        Self {
            generation,
            by_parent: ParentIndex::new(&entries),
            by_id,
            expiries,
            entries,
            agents: Mutex::default(),
        }
    }

    /// Returns the entries that the agent `agent_id`, attested with `node_selectors`, is
    /// authorized for at `now` (Unix seconds).
    ///
    /// The result is computed once per agent and reused while the agent's node selectors stay the
    /// same and no entry has expired since. At most [`MAX_CACHED_AGENTS`] results, holding at
    /// most [`MAX_CACHED_POSITIONS`] entry positions together, are kept.
    pub fn authorized(
        self: &Arc<Self>,
        agent_id: &SpiffeId,
        node_selectors: &[Selector],
        now: i64,
    ) -> AuthorizedEntries {
        let cached = lock(&self.agents)
            .by_agent
            .get(agent_id)
            .filter(|cached| cached.holds_for(node_selectors, now))
            .map(|cached| cached.positions.clone());
        let positions = cached.unwrap_or_else(|| self.authorize(agent_id, node_selectors, now));
        AuthorizedEntries {
            snapshot: self.clone(),
            positions,
        }
    }

    /// Computes the agent's authorization and caches it.
    fn authorize(
        &self,
        agent_id: &SpiffeId,
        node_selectors: &[Selector],
        now: i64,
    ) -> Arc<[usize]> {
        let positions: Arc<[usize]> = authorized_positions(
            agent_id,
            node_selectors,
            &self.entries,
            &self.by_parent,
            now,
        )
        .into();
        let result = AgentAuthorization {
            node_selectors: node_selectors.to_vec(),
            computed_at: now,
            valid_until: self.next_expiry_after(now),
            positions: positions.clone(),
        };

        lock(&self.agents).insert(agent_id.clone(), result);
        positions
    }

    /// Returns the first entry expiry strictly after `now`, or `i64::MAX` when there is none.
    fn next_expiry_after(&self, now: i64) -> i64 {
        let later = self
            .expiries
            .partition_point(|&expires_at| expires_at <= now);
        self.expiries.get(later).copied().unwrap_or(i64::MAX)
    }
}

// === impl AuthorizedEntries ===

impl AuthorizedEntries {
    /// Returns the authorized entry with the ID `entry_id`, if there is one.
    pub fn find(&self, entry_id: &str) -> Option<&RegistrationEntry> {
        let position = *self.snapshot.by_id.get(entry_id)?;
        self.positions.binary_search(&position).ok()?;
        self.snapshot.entries.get(position)
    }

    /// Returns the authorized entries in the order the datastore lists them.
    pub fn iter(&self) -> impl Iterator<Item = &RegistrationEntry> {
        self.positions
            .iter()
            .filter_map(|&position| self.snapshot.entries.get(position))
    }

    /// Returns the number of authorized entries.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Returns whether the agent is authorized for no entry.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

// === impl AgentResults ===

impl AgentResults {
    /// Stores the result of `agent_id`, first dropping every result when it would pass a bound.
    /// A result larger than [`MAX_CACHED_POSITIONS`] alone is not stored.
    /// Dropping all keeps the bounds without tracking use, and results are recomputed on demand,
    /// so this costs time, never correctness.
    fn insert(&mut self, agent_id: SpiffeId, result: AgentAuthorization) {
        if result.positions.len() > MAX_CACHED_POSITIONS {
            return;
        }
        if let Some(replaced) = self.by_agent.remove(&agent_id) {
            self.positions -= replaced.positions.len();
        }
        if self.by_agent.len() >= MAX_CACHED_AGENTS
            || self.positions + result.positions.len() > MAX_CACHED_POSITIONS
        {
            self.by_agent.clear();
            self.positions = 0;
        }
        self.positions += result.positions.len();
        self.by_agent.insert(agent_id, result);
    }
}

// === impl AgentAuthorization ===

impl AgentAuthorization {
    /// Returns whether the result is still the agent's authorization: the node selectors are the
    /// same, and `now` lies between the computation and the next entry expiry. A clock that went
    /// back also forces a recomputation, because an entry expired then may be live again.
    fn holds_for(&self, node_selectors: &[Selector], now: i64) -> bool {
        self.node_selectors == node_selectors && self.computed_at <= now && now < self.valid_until
    }
}

/// Most agents whose authorization one snapshot keeps.
pub const MAX_CACHED_AGENTS: usize = 16_384;

/// Most entry positions that the cached results of one snapshot hold together, 32 MiB on a
/// 64-bit target. An agent authorized for more entries than this is never cached.
pub const MAX_CACHED_POSITIONS: usize = 4 * 1024 * 1024;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The updates under these locks cannot panic between their steps, so a poisoned lock still
    // guards a consistent value.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
