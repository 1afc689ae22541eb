//! The workload X509-SVIDs the agent holds, and their signing by the server in batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use signet_proto::spire::api::server::svid::v1::NewX509svidParams;
use spiffe::SpiffeId;
use tonic::Status;

use super::entries::ServedEntry;
use crate::cache::{Snapshot, X509SvidMaterial};
use crate::node::{ServerClient, SignResult};
use crate::svid::{self, PendingSvid};
use crate::taint::TaintedAuthorities;

/// Entries per `BatchNewX509SVID` call, which bounds request and response sizes.
const BATCH_SIZE: usize = 500;

/// The current X509-SVID of each served entry, keyed by entry ID.
#[derive(Debug, Default)]
pub(crate) struct SvidStore {
    svids: HashMap<String, Minted>,
}

#[derive(Debug)]
struct Minted {
    spiffe_id: SpiffeId,
    /// The entry revision the SVID was signed for. `None` marks an SVID stored by an earlier run,
    /// which the first sync adopts for the entry of the same ID and SPIFFE ID.
    revision_number: Option<i64>,
    svid: Arc<X509SvidMaterial>,
    /// When to renew `svid`.
    refresh_at: SystemTime,
}

impl SvidStore {
    /// Starts with the SVIDs of `snapshot`, such as those an earlier run stored, so that a
    /// restarted agent renews them on schedule instead of having every one signed again.
    pub(crate) fn seeded(snapshot: &Snapshot) -> Self {
        let svids = snapshot
            .identities
            .iter()
            .filter_map(|identity| {
                let svid = identity.svid.as_ref()?;
                let minted = Minted {
                    spiffe_id: identity.spiffe_id.clone(),
                    revision_number: None,
                    refresh_at: svid::refresh_at(svid),
                    svid: Arc::clone(svid),
                };
                Some((identity.entry_id.clone(), minted))
            })
            .collect();
        Self { svids }
    }

    /// Returns the SVID of an entry, if it has a valid one.
    pub(crate) fn get(&self, entry_id: &str) -> Option<Arc<X509SvidMaterial>> {
        self.svids
            .get(entry_id)
            .map(|minted| Arc::clone(&minted.svid))
    }

    /// Returns the earliest time an SVID needs renewal, or None without SVIDs.
    pub(crate) fn next_refresh(&self) -> Option<SystemTime> {
        self.svids.values().map(|minted| minted.refresh_at).min()
    }

    /// Drops the SVIDs of entries that are no longer served, changed or expired at `now`.
    pub(crate) fn retain_current(&mut self, entries: &[ServedEntry], now: SystemTime) {
        let current: HashMap<&str, &ServedEntry> = entries
            .iter()
            .map(|entry| (entry.entry_id.as_str(), entry))
            .collect();
        self.svids.retain(|entry_id, minted| {
            let Some(entry) = current.get(entry_id.as_str()) else {
                return false;
            };
            let revision = *minted.revision_number.get_or_insert(entry.revision_number);
            entry.spiffe_id == minted.spiffe_id
                && entry.revision_number == revision
                && now < minted.svid.expires_at
        });
    }

    /// Makes every SVID signed by a `tainted` authority due for renewal at `now`. Returns how
    /// many there were.
    pub(crate) fn renew_tainted(&mut self, tainted: &TaintedAuthorities, now: SystemTime) -> usize {
        let mut count = 0;
        for minted in self.svids.values_mut() {
            if minted.refresh_at > now && tainted.signed(&minted.svid.chain) {
                minted.refresh_at = now;
                count += 1;
            }
        }
        count
    }

    /// Returns the entries without an SVID or whose SVID is past half its lifetime.
    pub(crate) fn due<'a>(
        &self,
        entries: &'a [ServedEntry],
        now: SystemTime,
    ) -> Vec<&'a ServedEntry> {
        entries
            .iter()
            .filter(|entry| {
                self.svids
                    .get(&entry.entry_id)
                    .is_none_or(|minted| now >= minted.refresh_at || now >= minted.svid.expires_at)
            })
            .collect()
    }

    /// Generates a key per entry and has the server sign them, in batches.
    ///
    /// Returns how many entries got no SVID: each is logged at warn and retried on the next sync.
    ///
    /// # Errors
    ///
    /// The status of a failed call. SVIDs signed by earlier batches are kept.
    pub(crate) async fn mint(
        &mut self,
        client: &ServerClient,
        due: &[&ServedEntry],
    ) -> Result<usize, Status> {
        let mut failed = 0;
        for batch in due.chunks(BATCH_SIZE) {
            failed += self.mint_batch(client, batch).await?;
        }
        Ok(failed)
    }

    async fn mint_batch(
        &mut self,
        client: &ServerClient,
        batch: &[&ServedEntry],
    ) -> Result<usize, Status> {
        let mut failed = 0;
        let mut pending = Vec::with_capacity(batch.len());
        for entry in batch {
            match PendingSvid::generate(&entry.spiffe_id) {
                Ok(svid) => pending.push((*entry, svid)),
                Err(error) => {
                    failed += 1;
                    tracing::warn!(entry_id = %entry.entry_id, error = %error, "Failed to prepare an X509-SVID request");
                }
            }
        }
        let params = pending
            .iter()
            .map(|(entry, svid)| NewX509svidParams {
                entry_id: entry.entry_id.clone(),
                csr: svid.csr_der().to_vec(),
            })
            .collect();

        let results = client.new_x509_svids(params).await?;
        if results.len() != pending.len() {
            tracing::warn!(
                requested = pending.len(),
                returned = results.len(),
                "Server returned another number of X509-SVIDs than requested"
            );
        }
        failed += pending.len().saturating_sub(results.len());
        for ((entry, pending_svid), result) in pending.into_iter().zip(results) {
            if !self.accept(entry, pending_svid, result) {
                failed += 1;
            }
        }
        Ok(failed)
    }

    /// Stores the SVID in `result` for `entry`, returning false (after logging why) when the
    /// server refused or returned an unusable SVID.
    fn accept(&mut self, entry: &ServedEntry, pending: PendingSvid, result: SignResult) -> bool {
        let status = result.status.unwrap_or_default();
        let signed = match (status.code, result.svid) {
            (0, Some(signed)) => signed,
            (code, _) => {
                tracing::warn!(
                    entry_id = %entry.entry_id,
                    spiffe_id = %entry.spiffe_id,
                    grpc.code = code,
                    message = %status.message,
                    "Server did not sign an X509-SVID"
                );
                return false;
            }
        };
        match pending.complete(signed.cert_chain) {
            Ok(svid) => {
                tracing::debug!(
                    entry_id = %entry.entry_id,
                    spiffe_id = %entry.spiffe_id,
                    expiry = %humantime::format_rfc3339_seconds(svid.expires_at),
                    "Received X509-SVID"
                );
                let previous_expiry = self
                    .svids
                    .get(&entry.entry_id)
                    .map(|minted| minted.svid.expires_at);
                let minted = Minted {
                    spiffe_id: entry.spiffe_id.clone(),
                    revision_number: Some(entry.revision_number),
                    refresh_at: svid::refresh_at_after_renewal(
                        &svid,
                        previous_expiry,
                        SystemTime::now(),
                    ),
                    svid: Arc::new(svid),
                };
                self.svids.insert(entry.entry_id.clone(), minted);
                true
            }
            Err(error) => {
                tracing::warn!(entry_id = %entry.entry_id, error = %error, "Rejected X509-SVID from the server");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use signet_core::ids::to_proto_id;
    use signet_proto::spire::api::types::{Entry, Selector, X509svid};
    use spiffe::TrustDomain;

    use super::*;
    use crate::sync::entries::served_entries;
    use crate::test_util::TestCa;

    fn served_entry() -> ServedEntry {
        let id = |text: &str| Some(to_proto_id(&SpiffeId::new(text).unwrap()));
        let entry = Entry {
            id: "web".to_owned(),
            spiffe_id: id("spiffe://example.org/web"),
            parent_id: id("spiffe://example.org/spire/agent/join_token/abc"),
            selectors: vec![Selector {
                r#type: "unix".to_owned(),
                value: "uid:1000".to_owned(),
            }],
            ..Entry::default()
        };
        let trust_domain = TrustDomain::new("example.org").unwrap();
        served_entries(vec![entry], &trust_domain, SystemTime::now()).remove(0)
    }

    /// Signs an X509-SVID for `entry` that ends at `expiry`, as a server whose CA expires then.
    fn sign_until(
        ca: &TestCa,
        entry: &ServedEntry,
        expiry: SystemTime,
    ) -> (PendingSvid, SignResult) {
        let pending = PendingSvid::generate(&entry.spiffe_id).unwrap();
        let not_before = expiry - Duration::from_secs(600);
        let chain = ca.sign_csr(
            pending.csr_der(),
            &entry.spiffe_id,
            not_before,
            Duration::from_secs(600),
        );
        let result = SignResult {
            status: None,
            svid: Some(X509svid {
                cert_chain: chain,
                ..X509svid::default()
            }),
        };
        (pending, result)
    }

    /// Returns a snapshot whose only identity is `entry` with a fresh SVID for `spiffe_id`.
    fn stored_snapshot(ca: &TestCa, entry: &ServedEntry, spiffe_id: &str) -> Snapshot {
        let spiffe_id = SpiffeId::new(spiffe_id).unwrap();
        let pending = PendingSvid::generate(&spiffe_id).unwrap();
        let chain = ca.sign_csr(
            pending.csr_der(),
            &spiffe_id,
            SystemTime::now() - Duration::from_secs(1),
            Duration::from_secs(600),
        );
        let mut snapshot = Snapshot::empty(TrustDomain::new("example.org").unwrap());
        snapshot.identities.push(crate::cache::Identity {
            entry_id: entry.entry_id.clone(),
            spiffe_id,
            selectors: entry.selectors.clone(),
            hint: String::new(),
            svid: Some(Arc::new(pending.complete(chain).unwrap())),
        });
        snapshot
    }

    #[test]
    fn stored_svid_is_adopted_instead_of_signed_again() {
        let ca = TestCa::new();
        let entry = served_entry();
        let snapshot = stored_snapshot(&ca, &entry, "spiffe://example.org/web");
        let mut store = SvidStore::seeded(&snapshot);
        let now = SystemTime::now();

        store.retain_current(std::slice::from_ref(&entry), now);

        assert!(store.due(std::slice::from_ref(&entry), now).is_empty());
        assert!(store.get(&entry.entry_id).is_some());
    }

    #[test]
    fn stored_svid_of_another_spiffe_id_is_dropped() {
        let ca = TestCa::new();
        let entry = served_entry();
        let snapshot = stored_snapshot(&ca, &entry, "spiffe://example.org/old-name");
        let mut store = SvidStore::seeded(&snapshot);
        let now = SystemTime::now();

        store.retain_current(std::slice::from_ref(&entry), now);

        assert_eq!(store.due(std::slice::from_ref(&entry), now).len(), 1);
        assert!(store.get(&entry.entry_id).is_none());
    }

    #[test]
    fn renewal_cut_at_the_same_expiry_is_not_due_again_at_once() {
        let ca = TestCa::new();
        let entry = served_entry();
        let now = SystemTime::now();
        let seconds = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Past half its lifetime already: the plain rule would renew it again at once.
        let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds + 40);
        let mut store = SvidStore::default();

        let (pending, result) = sign_until(&ca, &entry, expiry);
        assert!(store.accept(&entry, pending, result));
        assert_eq!(store.due(std::slice::from_ref(&entry), now).len(), 1);

        let (pending, result) = sign_until(&ca, &entry, expiry);
        assert!(store.accept(&entry, pending, result));
        assert!(store.due(std::slice::from_ref(&entry), now).is_empty());
        let next = store.next_refresh().unwrap();
        assert!(
            next >= now + Duration::from_secs(29) && next < expiry,
            "next renewal in {:?}",
            next.duration_since(now)
        );
    }
}
