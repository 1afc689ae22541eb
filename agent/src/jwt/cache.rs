//! The JWT-SVIDs the agent has had signed, per registration entry, SPIFFE ID and audience set.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use signet_core::audience::normalize_audience;
use tokio::sync::Mutex as AsyncMutex;

use super::{FetchError, JwtSigner, JwtSubject, JwtSvidToken};
use crate::cache::Snapshot;

/// Cached JWT-SVIDs, keyed by entry ID, concrete SPIFFE ID and the sorted, de-duplicated
/// audience. One template entry has a token per workload identity it expands to.
///
/// Each key has its own slot behind an async mutex: concurrent requests for the same key wait
/// for the first one's server call and then share its token, so a burst costs one signature.
/// The number of slots is bounded, and slots of entries that left the snapshot are dropped.
#[derive(Debug)]
pub struct JwtSvidCache {
    slots: Mutex<HashMap<CacheKey, Arc<Slot>>>,
    capacity: usize,
    /// Snapshot revision the slots were last pruned for.
    pruned_revision: AtomicU64,
}

type Slot = AsyncMutex<Option<Arc<JwtSvidToken>>>;

#[derive(Clone, Debug, Eq, Hash, PartialEq)]
struct CacheKey {
    entry_id: String,
    spiffe_id: String,
    audience: Vec<String>,
}

// === impl JwtSvidCache ===

impl JwtSvidCache {
    /// Creates an empty cache holding at most 10,000 tokens.
    pub fn new() -> Self {
        Self::with_capacity(MAX_CACHED_TOKENS)
    }

    /// Creates an empty cache holding at most `capacity` tokens (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            pruned_revision: AtomicU64::new(0),
        }
    }

    /// Returns a JWT-SVID for `subject` and `audience`: the cached one while it is younger than
    /// half its lifetime at `now`, else a new one from `signer`, or the cached one while it is
    /// unexpired when `signer` fails.
    ///
    /// The order and duplicates of `audience` do not matter, because the token's `aud`
    /// contains each value once, sorted.
    ///
    /// # Errors
    ///
    /// The [`FetchError`] of the signer when no unexpired token is cached. Nothing is cached
    /// then, so the next call retries.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled call leaves the slot as it was, and a waiting call then signs.
    pub async fn fetch(
        &self,
        signer: &dyn JwtSigner,
        subject: JwtSubject<'_>,
        audience: &[String],
        now: SystemTime,
    ) -> Result<Arc<JwtSvidToken>, FetchError> {
        let key = CacheKey::new(subject, audience);
        let slot = self.slot(&key, now);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|token| !token.is_due(now)) {
            return Ok(Arc::clone(token));
        }

        let token = match signer.new_jwt_svid(subject, &key.audience).await {
            Ok(token) => Arc::new(token),
            // Past half its life but unexpired, the cached token still serves while the server
            // cannot sign, for example during an outage.
            Err(error) => match cached.as_ref().filter(|token| now < token.expires_at) {
                Some(token) => {
                    tracing::debug!(error = %error, entry_id = subject.entry_id, "Serving a cached JWT-SVID because signing failed");
                    return Ok(Arc::clone(token));
                }
                None => return Err(error),
            },
        };
        *cached = Some(Arc::clone(&token));
        Ok(token)
    }

    /// Drops the tokens of entries that are not in `snapshot`, and tokens signed by a key the
    /// snapshot marks as tainted, once per snapshot revision.
    pub fn prune(&self, snapshot: &Snapshot) {
        if self
            .pruned_revision
            .swap(snapshot.revision, Ordering::Relaxed)
            == snapshot.revision
        {
            return;
        }
        let served: HashSet<&str> = snapshot
            .identities
            .iter()
            .map(|identity| identity.entry_id.as_str())
            .collect();
        let tainted: HashSet<&str> = snapshot
            .jwt_authorities
            .iter()
            .filter(|authority| authority.tainted)
            .map(|authority| authority.key_id.as_str())
            .collect();
        self.lock().retain(|key, slot| {
            served.contains(key.entry_id.as_str()) && !holds_token_of(slot, &tainted)
        });
    }

    /// Returns the number of cached keys, including those whose first token is being signed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Returns true when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Returns the slot of `key`, making room for a new one when the cache is full.
    fn slot(&self, key: &CacheKey, now: SystemTime) -> Arc<Slot> {
        let mut slots = self.lock();
        if let Some(slot) = slots.get(key) {
            return Arc::clone(slot);
        }
        if slots.len() >= self.capacity {
            evict(&mut slots, self.capacity, now);
        }
        let slot = Arc::new(AsyncMutex::new(None));
        slots.insert(key.clone(), Arc::clone(&slot));
        slot
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<CacheKey, Arc<Slot>>> {
        // The map stays consistent even if a holder panicked, because every change is one call.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for JwtSvidCache {
    fn default() -> Self {
        Self::new()
    }
}

// === impl CacheKey ===

impl CacheKey {
    fn new(subject: JwtSubject<'_>, audience: &[String]) -> Self {
        Self {
            entry_id: subject.entry_id.to_owned(),
            spiffe_id: subject.spiffe_id.to_string(),
            audience: normalize_audience(audience),
        }
    }
}

/// Frees at least one place below `capacity`: first slots whose token is due for renewal, then
/// the idle slots whose tokens expire first. Slots in use by a request are kept.
/// Returns true when `slot` contains a token signed by one of the `key_ids`. A slot whose token is
/// being signed right now is kept: the new token comes from the active key.
fn holds_token_of(slot: &Slot, key_ids: &HashSet<&str>) -> bool {
    if key_ids.is_empty() {
        return false;
    }
    let Ok(cached) = slot.try_lock() else {
        return false;
    };
    cached.as_ref().is_some_and(|token| {
        jsonwebtoken::decode_header(token.token.as_str())
            .ok()
            .and_then(|header| header.kid)
            .is_some_and(|kid| key_ids.contains(kid.as_str()))
    })
}

fn evict(slots: &mut HashMap<CacheKey, Arc<Slot>>, capacity: usize, now: SystemTime) {
    slots.retain(|_, slot| match slot.try_lock() {
        Ok(cached) => cached.as_ref().is_some_and(|token| !token.is_due(now)),
        Err(_in_use) => true,
    });
    if slots.len() < capacity {
        return;
    }

    let mut idle: Vec<(SystemTime, CacheKey)> = slots
        .iter()
        .filter_map(|(key, slot)| {
            let cached = slot.try_lock().ok()?;
            let expires_at = cached.as_ref().map(|token| token.expires_at)?;
            Some((expires_at, key.clone()))
        })
        .collect();
    idle.sort_by_key(|(expires_at, _)| *expires_at);
    let excess = slots.len() + 1 - capacity;
    for (_, key) in idle.into_iter().take(excess) {
        slots.remove(&key);
    }
}

/// Default bound on cached tokens. Each slot stores one token of about a kilobyte.
const MAX_CACHED_TOKENS: usize = 10_000;
