//! The workload X509-SVIDs the agent holds, and their signing by the server in batches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use signet_proto::spire::api::server::svid::v1::NewX509svidParams;
use spiffe::SpiffeId;
use tonic::Status;

use super::entries::ServedEntry;
use crate::cache::{Snapshot, X509SvidMaterial};
use crate::demand::ExpandedId;
use crate::node::{ServerClient, SignResult};
use crate::svid::{self, PendingSvid};
use crate::taint::TaintedAuthorities;

/// Entries per `BatchNewX509SVID` call, which bounds request and response sizes.
const BATCH_SIZE: usize = 500;

/// The current X509-SVIDs of the served entries, keyed by entry ID and the SPIFFE ID each one
/// carries: the entry's own ID, or for a template entry one of its expansions.
///
/// A template entry's SVID is signed and renewed while a Workload API stream holds its ID in the
/// demand. Once none does, it is no longer renewed: it stays available to a returning workload
/// until it is due for renewal, at half its lifetime, and is dropped then.
#[derive(Debug, Default)]
pub(crate) struct SvidStore {
    svids: HashMap<ExpandedId, Minted>,
}

/// An X509-SVID to sign: for `entry`, with `spiffe_id` in its URI SAN.
#[derive(Debug)]
pub(crate) struct SvidRequest<'a> {
    pub(crate) entry: &'a ServedEntry,
    pub(crate) spiffe_id: SpiffeId,
}

#[derive(Debug)]
struct Minted {
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
        let mut svids = HashMap::new();
        for identity in &snapshot.identities {
            let own = identity.spiffe_id.spiffe_id().zip(identity.svid.as_ref());
            for (spiffe_id, svid) in own.into_iter().chain(&identity.expanded_svids) {
                let key = ExpandedId {
                    entry_id: identity.entry_id.clone(),
                    spiffe_id: spiffe_id.clone(),
                };
                let minted = Minted {
                    revision_number: None,
                    refresh_at: svid::refresh_at(svid),
                    svid: Arc::clone(svid),
                };
                svids.insert(key, minted);
            }
        }
        Self { svids }
    }

    /// Returns the SVID of an entry for `spiffe_id`, if it has a valid one.
    pub(crate) fn get(
        &self,
        entry_id: &str,
        spiffe_id: &SpiffeId,
    ) -> Option<Arc<X509SvidMaterial>> {
        let key = ExpandedId {
            entry_id: entry_id.to_owned(),
            spiffe_id: spiffe_id.clone(),
        };
        self.svids.get(&key).map(|minted| Arc::clone(&minted.svid))
    }

    /// Returns every SVID of an entry, keyed by the SPIFFE ID it carries.
    pub(crate) fn of_entry(&self, entry_id: &str) -> BTreeMap<SpiffeId, Arc<X509SvidMaterial>> {
        self.svids
            .iter()
            .filter(|(key, _)| key.entry_id == entry_id)
            .map(|(key, minted)| (key.spiffe_id.clone(), Arc::clone(&minted.svid)))
            .collect()
    }

    /// Returns the earliest time an SVID needs renewal, or None without SVIDs.
    pub(crate) fn next_refresh(&self) -> Option<SystemTime> {
        self.svids.values().map(|minted| minted.refresh_at).min()
    }

    /// Drops the SVIDs of entries that are no longer served, changed or expired at `now`, and
    /// those of template expansions that no stream leases (`held`) and that are due for renewal.
    pub(crate) fn retain_current(
        &mut self,
        entries: &[ServedEntry],
        held: &HashSet<ExpandedId>,
        now: SystemTime,
    ) {
        let current: HashMap<&str, &ServedEntry> = entries
            .iter()
            .map(|entry| (entry.entry_id.as_str(), entry))
            .collect();
        self.svids.retain(|key, minted| {
            let Some(entry) = current.get(key.entry_id.as_str()) else {
                return false;
            };
            let revision = *minted.revision_number.get_or_insert(entry.revision_number);
            let is_wanted = match entry.spiffe_id.spiffe_id() {
                Some(own) => *own == key.spiffe_id,
                None => {
                    entry.spiffe_id.check_expansion(&key.spiffe_id).is_ok()
                        && (held.contains(key) || now < minted.refresh_at)
                }
            };
            is_wanted && entry.revision_number == revision && now < minted.svid.expires_at
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

    /// Returns the SVIDs to sign: those of plain entries and of the `held` template expansions
    /// that have no SVID yet or whose SVID is past half its lifetime.
    pub(crate) fn due<'a>(
        &self,
        entries: &'a [ServedEntry],
        held: &HashSet<ExpandedId>,
        now: SystemTime,
    ) -> Vec<SvidRequest<'a>> {
        let plain = entries.iter().filter_map(|entry| {
            let spiffe_id = entry.spiffe_id.spiffe_id()?.clone();
            Some(SvidRequest { entry, spiffe_id })
        });
        let templates: HashMap<&str, &ServedEntry> = entries
            .iter()
            .filter(|entry| entry.spiffe_id.is_template())
            .map(|entry| (entry.entry_id.as_str(), entry))
            .collect();
        let expanded = held.iter().filter_map(|key| {
            let entry = *templates.get(key.entry_id.as_str())?;
            let is_expansion = entry.spiffe_id.check_expansion(&key.spiffe_id).is_ok();
            is_expansion.then(|| SvidRequest {
                entry,
                spiffe_id: key.spiffe_id.clone(),
            })
        });
        plain
            .chain(expanded)
            .filter(|request| {
                self.svids
                    .get(&request.key())
                    .is_none_or(|minted| now >= minted.refresh_at || now >= minted.svid.expires_at)
            })
            .collect()
    }

    /// Generates a key per request and has the server sign them, in batches.
    ///
    /// Returns how many requests got no SVID: each is logged at warn and retried on the next
    /// sync.
    ///
    /// # Errors
    ///
    /// The status of a failed call. SVIDs signed by earlier batches are kept.
    pub(crate) async fn mint(
        &mut self,
        client: &ServerClient,
        due: &[SvidRequest<'_>],
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
        batch: &[SvidRequest<'_>],
    ) -> Result<usize, Status> {
        let mut failed = 0;
        let mut pending = Vec::with_capacity(batch.len());
        for request in batch {
            match PendingSvid::generate(&request.spiffe_id) {
                Ok(svid) => pending.push((request, svid)),
                Err(error) => {
                    failed += 1;
                    tracing::warn!(entry_id = %request.entry.entry_id, error = %error, "Failed to prepare an X509-SVID request");
                }
            }
        }
        // The CSR's URI SAN carries the SPIFFE ID, which the server needs for template entries.
        let params = pending
            .iter()
            .map(|(request, svid)| NewX509svidParams {
                entry_id: request.entry.entry_id.clone(),
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
        for ((request, pending_svid), result) in pending.into_iter().zip(results) {
            if !self.accept(request, pending_svid, result) {
                failed += 1;
            }
        }
        Ok(failed)
    }

    /// Stores the SVID in `result` for `request`, returning false (after logging why) when the
    /// server refused or returned an unusable SVID.
    fn accept(
        &mut self,
        request: &SvidRequest<'_>,
        pending: PendingSvid,
        result: SignResult,
    ) -> bool {
        let entry = request.entry;
        let status = result.status.unwrap_or_default();
        let signed = match (status.code, result.svid) {
            (0, Some(signed)) => signed,
            (code, _) => {
                tracing::warn!(
                    entry_id = %entry.entry_id,
                    spiffe_id = %request.spiffe_id,
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
                    spiffe_id = %request.spiffe_id,
                    expiry = %humantime::format_rfc3339_seconds(svid.expires_at),
                    "Received X509-SVID"
                );
                let key = request.key();
                let previous_expiry = self.svids.get(&key).map(|minted| minted.svid.expires_at);
                let minted = Minted {
                    revision_number: Some(entry.revision_number),
                    refresh_at: svid::refresh_at_after_renewal(
                        &svid,
                        previous_expiry,
                        SystemTime::now(),
                    ),
                    svid: Arc::new(svid),
                };
                self.svids.insert(key, minted);
                true
            }
            Err(error) => {
                tracing::warn!(entry_id = %entry.entry_id, error = %error, "Rejected X509-SVID from the server");
                false
            }
        }
    }
}

// === impl SvidRequest ===

impl SvidRequest<'_> {
    fn key(&self) -> ExpandedId {
        ExpandedId {
            entry_id: self.entry.entry_id.clone(),
            spiffe_id: self.spiffe_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use signet_core::ids::to_proto_id;
    use signet_core::template::SpiffeIdTemplate;
    use signet_proto::spire::api::types::{Entry, Selector, X509svid};
    use spiffe::TrustDomain;

    use super::*;
    use crate::sync::entries::served_entries;
    use crate::test_util::TestCa;

    const TEMPLATE: &str = "spiffe://example.org/uid/{unix:uid}";

    fn served_entry(spiffe_id: &str) -> ServedEntry {
        let entry = Entry {
            id: "web".to_owned(),
            spiffe_id: Some(SpiffeIdTemplate::parse(spiffe_id).unwrap().to_proto()),
            parent_id: Some(to_proto_id(
                &SpiffeId::new("spiffe://example.org/spire/agent/join_token/abc").unwrap(),
            )),
            selectors: vec![Selector {
                r#type: "unix".to_owned(),
                value: "uid:1000".to_owned(),
            }],
            ..Entry::default()
        };
        let trust_domain = TrustDomain::new("example.org").unwrap();
        served_entries(vec![entry], &trust_domain, SystemTime::now()).remove(0)
    }

    fn request<'a>(entry: &'a ServedEntry, spiffe_id: &str) -> SvidRequest<'a> {
        SvidRequest {
            entry,
            spiffe_id: SpiffeId::new(spiffe_id).unwrap(),
        }
    }

    fn held(entry: &ServedEntry, spiffe_ids: &[&str]) -> HashSet<ExpandedId> {
        spiffe_ids
            .iter()
            .map(|spiffe_id| request(entry, spiffe_id).key())
            .collect()
    }

    /// Signs an X509-SVID for `request` that ends at `expiry` after a lifetime of `lifetime`.
    fn sign_until(
        ca: &TestCa,
        request: &SvidRequest<'_>,
        expiry: SystemTime,
        lifetime: Duration,
    ) -> (PendingSvid, SignResult) {
        let pending = PendingSvid::generate(&request.spiffe_id).unwrap();
        let chain = ca.sign_csr(
            pending.csr_der(),
            &request.spiffe_id,
            expiry - lifetime,
            lifetime,
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
            spiffe_id: spiffe_id.into(),
            selectors: entry.selectors.clone(),
            hint: String::new(),
            svid: Some(Arc::new(pending.complete(chain).unwrap())),
            expanded_svids: BTreeMap::new(),
        });
        snapshot
    }

    #[test]
    fn stored_svid_is_adopted_instead_of_signed_again() {
        let ca = TestCa::new();
        let entry = served_entry("spiffe://example.org/web");
        let snapshot = stored_snapshot(&ca, &entry, "spiffe://example.org/web");
        let mut store = SvidStore::seeded(&snapshot);
        let now = SystemTime::now();
        let entries = std::slice::from_ref(&entry);

        store.retain_current(entries, &HashSet::new(), now);

        assert!(store.due(entries, &HashSet::new(), now).is_empty());
        let own = entry.spiffe_id.spiffe_id().unwrap();
        assert!(store.get(&entry.entry_id, own).is_some());
    }

    #[test]
    fn stored_svid_of_another_spiffe_id_is_dropped() {
        let ca = TestCa::new();
        let entry = served_entry("spiffe://example.org/web");
        let snapshot = stored_snapshot(&ca, &entry, "spiffe://example.org/old-name");
        let mut store = SvidStore::seeded(&snapshot);
        let now = SystemTime::now();
        let entries = std::slice::from_ref(&entry);

        store.retain_current(entries, &HashSet::new(), now);

        assert_eq!(store.due(entries, &HashSet::new(), now).len(), 1);
        assert!(store.of_entry(&entry.entry_id).is_empty());
    }

    #[test]
    fn renewal_cut_at_the_same_expiry_is_not_due_again_at_once() {
        let ca = TestCa::new();
        let entry = served_entry("spiffe://example.org/web");
        let entries = std::slice::from_ref(&entry);
        let web = request(&entry, "spiffe://example.org/web");
        let now = SystemTime::now();
        let seconds = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Past half its lifetime already: the plain rule would renew it again at once.
        let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds + 40);
        let lifetime = Duration::from_secs(600);
        let mut store = SvidStore::default();

        let (pending, result) = sign_until(&ca, &web, expiry, lifetime);
        assert!(store.accept(&web, pending, result));
        assert_eq!(store.due(entries, &HashSet::new(), now).len(), 1);

        let (pending, result) = sign_until(&ca, &web, expiry, lifetime);
        assert!(store.accept(&web, pending, result));
        assert!(store.due(entries, &HashSet::new(), now).is_empty());
        let next = store.next_refresh().unwrap();
        assert!(
            next >= now + Duration::from_secs(29) && next < expiry,
            "next renewal in {:?}",
            next.duration_since(now)
        );
    }

    #[test]
    fn template_is_signed_only_for_held_expansions() {
        let entry = served_entry(TEMPLATE);
        let entries = std::slice::from_ref(&entry);
        let store = SvidStore::default();
        let now = SystemTime::now();

        assert!(store.due(entries, &HashSet::new(), now).is_empty());

        let wanted = held(&entry, &["spiffe://example.org/uid/0"]);
        let due = store.due(entries, &wanted, now);
        let ids: Vec<String> = due.iter().map(|due| due.spiffe_id.to_string()).collect();
        assert_eq!(ids, ["spiffe://example.org/uid/0"]);
    }

    #[test]
    fn held_id_outside_the_template_is_not_signed() {
        let entry = served_entry(TEMPLATE);
        let entries = std::slice::from_ref(&entry);
        let wanted = held(
            &entry,
            &["spiffe://example.org/gid/0", "spiffe://example.org/uid/0/x"],
        );

        assert!(
            SvidStore::default()
                .due(entries, &wanted, SystemTime::now())
                .is_empty()
        );
    }

    #[test]
    fn released_expansion_is_kept_until_due_then_dropped() {
        let ca = TestCa::new();
        let entry = served_entry(TEMPLATE);
        let entries = std::slice::from_ref(&entry);
        let root = request(&entry, "spiffe://example.org/uid/0");
        let lifetime = Duration::from_secs(600);
        let now = SystemTime::now();
        let mut store = SvidStore::default();
        let (pending, result) = sign_until(&ca, &root, now + lifetime, lifetime);
        assert!(store.accept(&root, pending, result));
        let refresh_at = store.next_refresh().unwrap();

        // No stream leases it any more, but it is not due yet, so a returning workload gets it.
        store.retain_current(entries, &HashSet::new(), now);
        assert_eq!(store.of_entry(&entry.entry_id).len(), 1);
        assert!(store.due(entries, &HashSet::new(), now).is_empty());

        // Held again when due: renewed.
        let wanted = held(&entry, &["spiffe://example.org/uid/0"]);
        store.retain_current(entries, &wanted, refresh_at);
        assert_eq!(store.due(entries, &wanted, refresh_at).len(), 1);

        // Released when due: dropped, not renewed.
        store.retain_current(entries, &HashSet::new(), refresh_at);
        assert!(store.of_entry(&entry.entry_id).is_empty());
        assert!(store.due(entries, &HashSet::new(), refresh_at).is_empty());
    }
}
