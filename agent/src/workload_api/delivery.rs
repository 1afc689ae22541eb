//! Decides what a caller with given selectors receives from a cache snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use signet_core::selector::Selector;
use signet_proto::workload::{X509BundlesResponse, X509svid, X509svidResponse};

use super::matching::{EntitledIdentity, ExpansionWarnings, match_identities};
use crate::cache::{Snapshot, X509SvidMaterial};
use crate::demand::DemandLease;

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

/// Returns the function that builds the `FetchX509SVID` messages of the process `pid` from each
/// snapshot.
///
/// The function records the caller's template expansions in `lease`, so that sync signs and renews
/// their X509-SVIDs while the stream lasts, and reports templates the caller's selectors cannot
/// fill through `warnings`.
pub(super) fn x509_svid_messages(
    lease: DemandLease,
    warnings: Arc<ExpansionWarnings>,
    pid: i32,
) -> impl Fn(&Snapshot, &[Selector]) -> Delivery<X509svidResponse> + Send + 'static {
    move |snapshot, selectors| {
        let matches = match_identities(snapshot, selectors);
        warnings.report(pid, &matches.unexpanded);
        lease.hold(matches.expanded_ids());
        x509_svids(snapshot, &matches.entitled)
    }
}

/// Returns the `FetchX509SVID` message for a caller entitled to `entitled`.
pub(super) fn x509_svids(
    snapshot: &Snapshot,
    entitled: &[EntitledIdentity<'_>],
) -> Delivery<X509svidResponse> {
    if !snapshot.is_synced() {
        return Delivery::Waiting;
    }
    if entitled.is_empty() {
        return Delivery::Denied;
    }

    let bundle = concatenate_der(&snapshot.bundle);
    let svids: Vec<X509svid> = entitled
        .iter()
        .filter_map(|entitled| {
            let material = entitled.svid()?;
            x509_svid(entitled, material, &bundle)
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
    if match_identities(snapshot, selectors).entitled.is_empty() {
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
fn x509_svid(
    entitled: &EntitledIdentity<'_>,
    material: &X509SvidMaterial,
    bundle: &[u8],
) -> Option<X509svid> {
    if material.chain.is_empty() {
        return None;
    }
    Some(X509svid {
        spiffe_id: entitled.spiffe_id.to_string(),
        x509_svid: concatenate_der(&material.chain),
        x509_svid_key: material.private_key_pkcs8.to_vec(),
        bundle: bundle.to_vec(),
        hint: entitled.identity.hint.clone(),
    })
}

fn concatenate_der(certificates: &[CertificateDer<'static>]) -> Vec<u8> {
    let certificates: Vec<&[u8]> = certificates.iter().map(AsRef::as_ref).collect();
    certificates.concat()
}
