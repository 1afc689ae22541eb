//! Decides what a caller with given selectors receives from a cache snapshot.

use std::collections::{HashMap, HashSet};

use rustls::pki_types::CertificateDer;
use signet_core::selector::{Selector, is_subset};
use signet_proto::workload::{X509BundlesResponse, X509svid, X509svidResponse};

use crate::cache::{Identity, Snapshot, X509SvidMaterial};

/// Outcome of one snapshot for one caller: the message a stream can send, if any.
#[derive(Debug, PartialEq)]
pub(super) enum Delivery<T> {
    /// The caller is entitled to no identity.
    Denied,
    /// Nothing can be sent yet: the agent has not synced, or no SVID of the caller is signed.
    Waiting,
    /// A message can be sent, but some of the caller's SVIDs are not signed yet.
    Partial(T),
    /// Everything the caller is entitled to.
    Complete(T),
}

/// Returns the identities whose selectors are all among `selectors`, in snapshot order (the
/// first one is the default identity).
///
/// Hints must be unique within a response, so of several identities with the same non-empty
/// hint only the first one stays. Identities are ordered by creation, so the oldest entry wins.
pub(super) fn entitled_identities<'a>(
    snapshot: &'a Snapshot,
    selectors: &[Selector],
) -> Vec<&'a Identity> {
    let mut hints = HashSet::new();
    snapshot
        .identities
        .iter()
        .filter(|identity| is_subset(&identity.selectors, selectors))
        .filter(|identity| identity.hint.is_empty() || hints.insert(identity.hint.as_str()))
        .collect()
}

/// Returns the `FetchX509SVID` message for a caller with `selectors`.
pub(super) fn x509_svids(
    snapshot: &Snapshot,
    selectors: &[Selector],
) -> Delivery<X509svidResponse> {
    if !snapshot.is_synced() {
        return Delivery::Waiting;
    }
    let entitled = entitled_identities(snapshot, selectors);
    if entitled.is_empty() {
        return Delivery::Denied;
    }

    let bundle = concatenate_der(&snapshot.bundle);
    let svids: Vec<X509svid> = entitled
        .iter()
        .filter_map(|identity| {
            let material = identity.svid.as_deref()?;
            x509_svid(identity, material, &bundle)
        })
        .collect();

    let complete = svids.len() == entitled.len();
    let response = X509svidResponse {
        svids,
        crl: Vec::new(),
        federated_bundles: HashMap::new(),
    };
    if response.svids.is_empty() {
        Delivery::Waiting
    } else if complete {
        Delivery::Complete(response)
    } else {
        Delivery::Partial(response)
    }
}

/// Returns the `FetchX509Bundles` message for a caller with `selectors`.
pub(super) fn x509_bundles(
    snapshot: &Snapshot,
    selectors: &[Selector],
) -> Delivery<X509BundlesResponse> {
    if !snapshot.is_synced() {
        return Delivery::Waiting;
    }
    if entitled_identities(snapshot, selectors).is_empty() {
        return Delivery::Denied;
    }
    let bundles = HashMap::from([(
        snapshot.trust_domain.id_string(),
        concatenate_der(&snapshot.bundle),
    )]);
    Delivery::Complete(X509BundlesResponse {
        crl: Vec::new(),
        bundles,
    })
}

/// Builds one SVID message, or `None` for material without a certificate.
fn x509_svid(identity: &Identity, material: &X509SvidMaterial, bundle: &[u8]) -> Option<X509svid> {
    if material.chain.is_empty() {
        return None;
    }
    Some(X509svid {
        spiffe_id: identity.spiffe_id.to_string(),
        x509_svid: concatenate_der(&material.chain),
        x509_svid_key: material.private_key_pkcs8.to_vec(),
        bundle: bundle.to_vec(),
        hint: identity.hint.clone(),
    })
}

fn concatenate_der(certificates: &[CertificateDer<'static>]) -> Vec<u8> {
    let certificates: Vec<&[u8]> = certificates.iter().map(AsRef::as_ref).collect();
    certificates.concat()
}
