//! Entry sync: keeps the cache equal to what the server authorizes this agent to serve.
//!
//! A sync fetches the authorized entries and the bundle (X.509 authorities and JWT keys), has
//! the server sign an X509-SVID for every entry without a fresh one, and publishes a new
//! snapshot when anything changed. It runs at start, on every change notice from the server,
//! when the first SVID is due for renewal (see [`crate::svid::refresh_at`]), when a workload
//! needs an SVID of a template entry that is not signed yet (see [`crate::demand`]), and at
//! least every 30 seconds in case a notice was lost.
//!
//! While the server is unreachable the cache keeps what it has: the Workload API serves each
//! SVID until it expires, and sync retries with backoff.

mod entries;
mod mint;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe::SpiffeId;
use tokio::sync::Notify;

use self::entries::{ServedEntry, served_entries};
use self::mint::SvidStore;
use crate::cache::{Cache, Identity, Snapshot};
use crate::metrics::AgentMetrics;
use crate::node::{Backoff, Node, NodeError};

/// Maximum time between two syncs.
const SAFETY_POLL: Duration = Duration::from_secs(30);
/// Minimum time between two syncs that both succeeded.
const MIN_WAIT: Duration = Duration::from_secs(1);
/// Failed syncs logged at warn before further failures go to debug.
const WARN_ATTEMPTS: u32 = 3;

/// Runs entry sync for ever, publishing to `cache`.
///
/// # Cancel safety
///
/// Cancel safe: the cache always contains the last complete snapshot.
pub async fn run(node: Arc<Node>, cache: Cache, metrics: AgentMetrics) {
    let changed = Arc::new(Notify::new());
    let watcher = watch::watch_changes(Arc::clone(&node), Arc::clone(&changed));
    let syncer = Syncer {
        svids: SvidStore::seeded(&cache.current()),
        node,
        cache,
        metrics,
    };
    // Both futures loop for ever, so this returns only when the caller drops it.
    tokio::join!(watcher, sync_loop(syncer, &changed));
}

/// Syncs at start, then whenever `changed` fires or the next refresh or safety poll is due.
async fn sync_loop(mut syncer: Syncer, changed: &Notify) {
    let mut backoff = Backoff::new();
    // Failed syncs other than an unreachable server, which are logged at warn at first.
    let mut failures = 0u32;
    loop {
        let synced = syncer.sync_once().await;
        if synced.is_err() {
            syncer.metrics.sync_failed();
        }
        let wait = match synced {
            Ok(outcome) => {
                if failures > 0 {
                    tracing::info!(attempts = failures + 1, "Entry sync recovered");
                }
                failures = 0;
                if outcome.unsigned == 0 {
                    backoff.reset();
                    // An SVID due again at once (clock skew, tiny TTL) must not spin the loop.
                    outcome.next_refresh.max(MIN_WAIT)
                } else {
                    outcome.next_refresh.min(backoff.next_delay())
                }
            }
            Err(error) if error.is_server_unreachable() => {
                // The node's outage log reported the outage once.
                tracing::debug!(error = %error, "Entry sync failed, retrying");
                backoff.next_delay()
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if failures <= WARN_ATTEMPTS {
                    tracing::warn!(error = %error, attempt = failures, "Entry sync failed, retrying");
                } else {
                    tracing::debug!(error = %error, attempt = failures, "Entry sync failed, retrying");
                }
                backoff.next_delay()
            }
        };
        let wait = match withdraw_expired(&syncer.cache, SystemTime::now()) {
            Some(next_expiry) => wait.min(next_expiry),
            None => wait,
        };
        tokio::select! {
            () = changed.notified() => {}
            () = syncer.node.recovery() => {}
            () = syncer.cache.demand().added() => {}
            () = tokio::time::sleep(wait.min(SAFETY_POLL)) => {}
        }
    }
}

struct Syncer {
    node: Arc<Node>,
    cache: Cache,
    svids: SvidStore,
    metrics: AgentMetrics,
}

struct SyncOutcome {
    /// Time until the next SVID reaches half its lifetime.
    next_refresh: Duration,
    /// Entries still without an SVID after this sync.
    unsigned: usize,
}

impl Syncer {
    async fn sync_once(&mut self) -> Result<SyncOutcome, NodeError> {
        // Fetch.
        let client = self.node.client();
        let entries = client
            .authorized_entries()
            .await
            .map_err(|status| NodeError::rpc("GetAuthorizedEntries", &status))?;
        let bundle = client.trust_bundle(self.node.trust_domain()).await?;
        self.node.update_bundle(bundle.x509_authorities.clone())?;

        // Sign what is missing or due.
        let now = SystemTime::now();
        let entries = served_entries(entries, self.node.trust_domain(), now);
        let held = self.cache.demand().held();
        self.svids.retain_current(&entries, &held, now);
        let tainted = self.svids.renew_tainted(&bundle.tainted, now);
        if tainted > 0 {
            tracing::warn!(
                svids = tainted,
                "Replacing X509-SVIDs signed by a tainted authority"
            );
        }
        let due = self.svids.due(&entries, &held, now);
        let unsigned = if due.is_empty() {
            0
        } else {
            self.svids
                .mint(&self.node.client(), &due)
                .await
                .map_err(|status| NodeError::rpc("BatchNewX509SVID", &status))?
        };
        self.metrics
            .workload_svids_signed(due.len().saturating_sub(unsigned));

        // The agent SVID goes last, so that once the server records it replaced, every workload
        // SVID of the tainted authority is replaced too.
        if unsigned == 0 {
            self.node.renew_if_tainted(&bundle.tainted).await?;
        }

        // Publish.
        let snapshot = Snapshot {
            trust_domain: self.node.trust_domain().clone(),
            bundle: bundle.x509_authorities,
            jwt_authorities: bundle.jwt_authorities,
            identities: self.identities(entries),
            revision: 0,
        };
        if differs(&self.cache.current(), &snapshot) {
            tracing::debug!(
                identities = snapshot.identities.len(),
                unsigned,
                "Publishing new cache snapshot"
            );
            self.cache.publish(snapshot);
        }

        self.cache.record_sync(SystemTime::now());

        let next_refresh = self.svids.next_refresh().map_or(SAFETY_POLL, |at| {
            at.duration_since(SystemTime::now()).unwrap_or_default()
        });
        Ok(SyncOutcome {
            next_refresh,
            unsigned,
        })
    }

    fn identities(&self, entries: Vec<ServedEntry>) -> Vec<Identity> {
        entries
            .into_iter()
            .map(|entry| {
                let (svid, expanded_svids) = match entry.spiffe_id.spiffe_id() {
                    Some(own) => (self.svids.get(&entry.entry_id, own), BTreeMap::new()),
                    None => (None, self.svids.of_entry(&entry.entry_id)),
                };
                Identity {
                    entry_id: entry.entry_id,
                    spiffe_id: entry.spiffe_id,
                    selectors: entry.selectors,
                    hint: entry.hint,
                    svid,
                    expanded_svids,
                }
            })
            .collect()
    }
}

/// Removes expired SVIDs from the cache, so the Workload API never serves one while syncs
/// fail. Returns the time until the next SVID in the cache expires.
fn withdraw_expired(cache: &Cache, now: SystemTime) -> Option<Duration> {
    let current = cache.current();
    let svids = |snapshot: &Snapshot| -> Vec<SystemTime> {
        let identities = snapshot.identities.iter();
        identities
            .flat_map(Identity::svids)
            .map(|svid| svid.expires_at)
            .collect()
    };
    if svids(&current).iter().any(|expires_at| *expires_at <= now) {
        let mut snapshot = Snapshot::clone(&current);
        let withdrawn = snapshot
            .identities
            .iter_mut()
            .flat_map(|identity| withdraw_expired_svids(identity, now))
            .collect();
        cache.publish(snapshot);
        cache.record_expired(withdrawn, now);
    }

    svids(&cache.current())
        .into_iter()
        .map(|expires_at| expires_at.duration_since(now).unwrap_or_default())
        .min()
}

/// Removes the expired X509-SVIDs of `identity` and returns their SPIFFE IDs and expiries.
fn withdraw_expired_svids(identity: &mut Identity, now: SystemTime) -> Vec<(SpiffeId, SystemTime)> {
    let mut withdrawn: Vec<(SpiffeId, SystemTime)> = identity
        .expanded_svids
        .iter()
        .filter(|(_, svid)| svid.expires_at <= now)
        .map(|(spiffe_id, svid)| (spiffe_id.clone(), svid.expires_at))
        .collect();
    for (spiffe_id, _) in &withdrawn {
        identity.expanded_svids.remove(spiffe_id);
    }
    let own_expiry = identity
        .svid
        .as_ref()
        .map(|svid| svid.expires_at)
        .filter(|expires_at| *expires_at <= now);
    if let (Some(expires_at), Some(spiffe_id)) = (own_expiry, identity.spiffe_id.spiffe_id()) {
        withdrawn.push((spiffe_id.clone(), expires_at));
        identity.svid = None;
    }
    for (spiffe_id, _) in &withdrawn {
        tracing::warn!(
            entry_id = %identity.entry_id,
            spiffe_id = %spiffe_id,
            "X509-SVID expired before the server could renew it"
        );
    }
    withdrawn
}

/// Returns true when `new` would show a workload anything `old` does not.
fn differs(old: &Snapshot, new: &Snapshot) -> bool {
    old.bundle != new.bundle
        || old.jwt_authorities != new.jwt_authorities
        || old.identities.len() != new.identities.len()
        || old
            .identities
            .iter()
            .zip(&new.identities)
            .any(|(old, new)| !same_identity(old, new))
}

fn same_identity(old: &Identity, new: &Identity) -> bool {
    let same_svid = match (&old.svid, &new.svid) {
        (Some(old), Some(new)) => Arc::ptr_eq(old, new),
        (None, None) => true,
        _ => false,
    };
    let same_expanded = old.expanded_svids.len() == new.expanded_svids.len()
        && old
            .expanded_svids
            .iter()
            .zip(&new.expanded_svids)
            .all(|((old_id, old), (new_id, new))| old_id == new_id && Arc::ptr_eq(old, new));
    same_svid
        && same_expanded
        && old.entry_id == new.entry_id
        && old.spiffe_id == new.spiffe_id
        && old.selectors == new.selectors
        && old.hint == new.hint
}

#[cfg(test)]
mod tests;
