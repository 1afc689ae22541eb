//! The agent's view of what it may serve: bundle, JWT authorities, identities and their
//! X509-SVIDs.
//!
//! Sync is the only writer. It replaces the whole [`Snapshot`] on every change, so a reader never
//! sees a bundle from one revision beside identities from another. The Workload API subscribes
//! and pushes each new snapshot to its streams.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;
use signet_core::selector::Selector;
use spiffe::{SpiffeId, TrustDomain};
use tokio::sync::watch;
use zeroize::Zeroizing;

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

/// One registration entry this agent may serve, with its current X509-SVID.
#[derive(Clone, Debug)]
pub struct Identity {
    /// ID of the registration entry on the server.
    pub entry_id: String,
    /// SPIFFE ID of the SVIDs minted for this entry.
    pub spiffe_id: SpiffeId,
    /// Selectors a workload must all have to receive this identity.
    pub selectors: Vec<Selector>,
    /// Operator-chosen label that lets a workload tell its SVIDs apart (may be empty).
    pub hint: String,
    /// None until the first SVID for this entry has been signed.
    pub svid: Option<Arc<X509SvidMaterial>>,
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
        Self { sender }
    }

    /// Replaces the snapshot and wakes every subscriber.
    ///
    /// The published revision is one more than the current one, whatever `snapshot.revision`
    /// contains, so revisions only grow and every publish is visible as a change.
    pub fn publish(&self, mut snapshot: Snapshot) {
        snapshot.revision = self.sender.borrow().revision.wrapping_add(1);
        self.sender.send_replace(Arc::new(snapshot));
    }

    /// Returns a receiver of the current snapshot and every later one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.sender.subscribe()
    }

    /// Returns the current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.sender.borrow())
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
