//! The agent's view of what it may serve: bundle, JWT authorities, identities and their
//! X509-SVIDs.
//!
//! Sync is the only writer. It replaces the whole [`Snapshot`] on every change, so a reader never
//! sees a bundle from one revision beside identities from another. The Workload API subscribes
//! and pushes each new snapshot to its streams.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;
use signet_core::selector::Selector;
use signet_core::template::SpiffeIdTemplate;
use spiffe::{SpiffeId, TrustDomain};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::demand::SvidDemand;

/// Everything the Workload API serves, replaced whole on every change.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Trust domain of this agent and of every identity below.
    pub trust_domain: TrustDomain,
    /// X.509 authorities of the own trust domain (DER), never empty once synced.
    pub bundle: Vec<CertificateDer<'static>>,
    /// Public keys that sign the JWT-SVIDs of the own trust domain, in the server's order.
    pub jwt_authorities: Vec<JwtAuthority>,
    /// Entries this agent may serve, ordered by (created_at, entry_id). The first matching one is
    /// a workload's default identity.
    pub identities: Vec<Identity>,
    /// Incremented on every change the agent learnt from the server.
    pub revision: u64,
}

/// One registration entry this agent may serve, with its current X509-SVIDs.
#[derive(Clone, Debug)]
pub struct Identity {
    /// ID of the registration entry on the server.
    pub entry_id: String,
    /// SPIFFE ID of the SVIDs minted for this entry, or the template that each workload's
    /// selectors fill in.
    pub spiffe_id: SpiffeIdTemplate,
    /// Selectors a workload must all have to receive this identity.
    pub selectors: Vec<Selector>,
    /// Operator-chosen label that lets a workload tell its SVIDs apart (may be empty).
    pub hint: String,
    /// None until the first SVID for this entry has been signed, and always None for a template.
    pub svid: Option<Arc<X509SvidMaterial>>,
    /// X509-SVIDs of a template entry, keyed by the concrete SPIFFE ID each was signed for. Empty
    /// for a plain entry.
    pub expanded_svids: BTreeMap<SpiffeId, Arc<X509SvidMaterial>>,
}

/// A signed X509-SVID with its private key.
pub struct X509SvidMaterial {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER of the leaf's private key, wiped from memory on drop.
    pub private_key_pkcs8: Zeroizing<Vec<u8>>,
    /// The leaf's notAfter.
    pub expires_at: SystemTime,
}

/// A public key that signs JWT-SVIDs, as the server's bundle publishes it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct JwtAuthority {
    /// The `kid` of the tokens this key signs, never empty.
    pub key_id: String,
    /// PKIX SubjectPublicKeyInfo DER of the key.
    pub public_key_der: Vec<u8>,
    /// Time after which the server removes the key from the bundle, if it set one.
    pub expires_at: Option<SystemTime>,
    /// Whether the server tainted the key: tokens it signed still verify, but the agent gets
    /// new ones instead of handing out those it cached.
    pub tainted: bool,
}

/// Shared handle to the latest [`Snapshot`]. Clones refer to the same cache.
#[derive(Clone, Debug)]
pub struct Cache {
    sender: watch::Sender<Arc<Snapshot>>,
    /// Time of the last sync with the server that succeeded, None before the first one. A sync
    /// that changes nothing publishes no snapshot, so this is kept apart from the snapshot.
    last_sync: watch::Sender<Option<SystemTime>>,
    /// Concrete SPIFFE IDs of template entries that workloads currently need X509-SVIDs for.
    demand: Arc<SvidDemand>,
    /// Expiry of each X509-SVID that sync withdrew because the server did not renew it in time,
    /// by SPIFFE ID, so that `explain` can tell an expired SVID from one never signed.
    expired: Arc<Mutex<BTreeMap<SpiffeId, SystemTime>>>,
}

// === impl Snapshot ===

impl Snapshot {
    /// Returns an empty snapshot at revision 0: no bundle and no identities.
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            bundle: Vec::new(),
            jwt_authorities: Vec::new(),
            identities: Vec::new(),
            revision: 0,
        }
    }

    /// Returns true once the agent has received a bundle from the server.
    pub fn is_synced(&self) -> bool {
        !self.bundle.is_empty()
    }
}

// === impl Identity ===

impl Identity {
    /// Returns every X509-SVID of the entry: its own, or those of its template's expansions.
    pub fn svids(&self) -> impl Iterator<Item = &Arc<X509SvidMaterial>> {
        self.svid.iter().chain(self.expanded_svids.values())
    }
}

// === impl X509SvidMaterial ===

impl X509SvidMaterial {
    /// Returns the leaf certificate, or None for an empty chain.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

impl fmt::Debug for X509SvidMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509SvidMaterial")
            .field("chain_len", &self.chain.len())
            .field("private_key_pkcs8", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

// === impl Cache ===

impl Cache {
    /// Creates a cache holding [`Snapshot::empty`] for `trust_domain`.
    pub fn new(trust_domain: TrustDomain) -> Self {
        let (sender, _receiver) = watch::channel(Arc::new(Snapshot::empty(trust_domain)));
        let (last_sync, _receiver) = watch::channel(None);
        Self {
            sender,
            last_sync,
            demand: Arc::default(),
            expired: Arc::default(),
        }
    }

    /// Replaces the snapshot and wakes every subscriber.
    ///
    /// The published revision is one more than the current one, whatever `snapshot.revision`
    /// contains, so revisions only grow and every publish is visible as a change.
    pub fn publish(&self, mut snapshot: Snapshot) {
        snapshot.revision = self.sender.borrow().revision.wrapping_add(1);
        self.sender.send_replace(Arc::new(snapshot));
    }

    /// Records that a sync with the server succeeded at `at`, whether it changed anything or not.
    pub fn record_sync(&self, at: SystemTime) {
        self.last_sync.send_replace(Some(at));
    }

    /// Records that the X509-SVIDs `withdrawn` (SPIFFE ID and expiry) expired before renewal,
    /// and removes earlier records of SPIFFE IDs that have a valid X509-SVID again.
    pub fn record_expired(&self, withdrawn: Vec<(SpiffeId, SystemTime)>, now: SystemTime) {
        let current = self.current();
        let has_valid_svid = |spiffe_id: &SpiffeId| {
            current.identities.iter().any(|identity| {
                let own = identity.spiffe_id.spiffe_id() == Some(spiffe_id);
                let svid = if own {
                    identity.svid.as_ref()
                } else {
                    identity.expanded_svids.get(spiffe_id)
                };
                svid.is_some_and(|svid| svid.expires_at > now)
            })
        };
        let mut expired = self.expired.lock().unwrap_or_else(PoisonError::into_inner);
        expired.retain(|spiffe_id, _| !has_valid_svid(spiffe_id));
        expired.extend(withdrawn);
    }

    /// Returns when the X509-SVID for `spiffe_id` expired before the server renewed it, if sync
    /// withdrew it and no new one replaced it since.
    pub fn expired_at(&self, spiffe_id: &SpiffeId) -> Option<SystemTime> {
        let expired = self.expired.lock().unwrap_or_else(PoisonError::into_inner);
        expired.get(spiffe_id).copied()
    }

    /// Returns the requests of the Workload API for X509-SVIDs of template entries, which sync
    /// signs and renews.
    pub fn demand(&self) -> &Arc<SvidDemand> {
        &self.demand
    }

    /// Returns a receiver of the current snapshot and every later one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.sender.subscribe()
    }

    /// Returns the current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.sender.borrow())
    }

    /// Returns the time of the last successful sync with the server, or None when this cache has
    /// not synced yet (a snapshot restored from disk does not count).
    pub fn last_sync(&self) -> Option<SystemTime> {
        *self.last_sync.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust_domain() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    #[test]
    fn new_cache_is_empty_and_unsynced() {
        let cache = Cache::new(trust_domain());
        let current = cache.current();
        assert_eq!(current.revision, 0);
        assert!(current.identities.is_empty());
        assert!(!current.is_synced());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn publish_bumps_revision_and_wakes_subscribers() {
        let cache = Cache::new(trust_domain());
        let mut receiver = cache.subscribe();

        let mut snapshot = Snapshot::empty(trust_domain());
        snapshot.revision = 42;
        snapshot.bundle.push(CertificateDer::from(vec![1, 2, 3]));
        cache.publish(snapshot.clone());

        receiver.changed().await.unwrap();
        assert_eq!(receiver.borrow_and_update().revision, 1);
        assert!(cache.current().is_synced());

        cache.publish(snapshot);
        receiver.changed().await.unwrap();
        assert_eq!(receiver.borrow_and_update().revision, 2);
    }

    #[test]
    fn last_sync_is_shared_by_clones() {
        let cache = Cache::new(trust_domain());
        assert_eq!(cache.last_sync(), None);

        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        // Sync records through its own clone of the cache.
        let record_in = |syncing: Cache| syncing.record_sync(at);
        record_in(cache.clone());

        assert_eq!(cache.last_sync(), Some(at));
    }

    #[test]
    fn svid_material_debug_hides_private_key() {
        let material = X509SvidMaterial {
            chain: vec![CertificateDer::from(vec![0x30, 0x00])],
            private_key_pkcs8: Zeroizing::new(vec![0xAB; 32]),
            expires_at: SystemTime::UNIX_EPOCH,
        };
        let printed = format!("{material:?}");
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains("171"));
        assert!(!printed.to_lowercase().contains("ab, ab"));
    }
}
