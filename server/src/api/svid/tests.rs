//! Tests for the SPIFFE ID an agent may request for an entry: in a CSR or a JWT-SVID request.

use rcgen::{CertificateParams, KeyPair, SanType};
use signet_core::template::SpiffeIdTemplate;
use signet_proto::spire::api::types;
use spiffe::TrustDomain;
use tonic::Code;

use super::*;

const TEMPLATE: &str = "spiffe://example.org/unix/uid/{unix:uid}";

fn entry(spiffe_id: &str) -> RegistrationEntry {
    let template = SpiffeIdTemplate::parse(spiffe_id).unwrap();
    let proto = types::Entry {
        id: "uid".to_owned(),
        spiffe_id: Some(template.to_proto()),
        parent_id: Some(to_proto_id(
            &SpiffeId::new("spiffe://example.org/spire/agent/join_token/abc").unwrap(),
        )),
        selectors: vec![types::Selector {
            r#type: "unix".to_owned(),
            value: "gid:0".to_owned(),
        }],
        ..types::Entry::default()
    };
    let trust_domain = TrustDomain::new("example.org").unwrap();
    RegistrationEntry::from_proto(proto, &trust_domain).unwrap()
}

/// Returns a DER CSR whose one URI SAN is `uri`.
fn csr(uri: &str) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params
        .subject_alt_names
        .push(SanType::URI(uri.try_into().unwrap()));
    params.serialize_request(&key).unwrap().der().to_vec()
}

#[test]
fn template_entry_signs_csr_expansion() {
    let id = workload_spiffe_id(&entry(TEMPLATE), &csr("spiffe://example.org/unix/uid/0"));
    assert_eq!(id.unwrap().to_string(), "spiffe://example.org/unix/uid/0");
}

#[test]
fn template_entry_rejects_ids_outside_the_template() {
    let template = entry(TEMPLATE);
    let cases = [
        ("spiffe://other.org/unix/uid/0", Code::PermissionDenied),
        (
            "spiffe://example.org/unix/uid/0/admin",
            Code::PermissionDenied,
        ),
        ("spiffe://example.org/unix/gid/0", Code::PermissionDenied),
        ("spiffe://example.org/unix/uid", Code::PermissionDenied),
        ("spiffe://example.org/admin", Code::PermissionDenied),
        ("spiffe://example.org/unix/uid/..", Code::InvalidArgument),
        ("spiffe://example.org/unix/uid/a%2Fb", Code::InvalidArgument),
        (
            "spiffe://example.org/unix/uid/{unix:uid}",
            Code::InvalidArgument,
        ),
    ];
    for (uri, expected) in cases {
        let error = workload_spiffe_id(&template, &csr(uri)).unwrap_err();
        assert_eq!(error.code(), expected, "{uri}: {error}");
    }
}

#[test]
fn plain_entry_ignores_the_id_of_the_csr() {
    let plain = entry("spiffe://example.org/web");
    let id = workload_spiffe_id(&plain, &csr("spiffe://example.org/admin")).unwrap();
    assert_eq!(id.to_string(), "spiffe://example.org/web");
}

#[test]
fn template_check_accepts_expansion() {
    let id = SpiffeId::new("spiffe://example.org/unix/uid/65534").unwrap();
    check_expansion(&entry(TEMPLATE), &id).unwrap();
}

#[test]
fn template_check_rejects_other_ids() {
    let template = entry(TEMPLATE);
    let cases = [
        "spiffe://other.org/unix/uid/0",
        "spiffe://example.org/unix/gid/0",
        "spiffe://example.org/unix/uid/0/admin",
        "spiffe://example.org/web",
    ];
    for id in cases {
        let error = check_expansion(&template, &SpiffeId::new(id).unwrap()).unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied, "{id}: {error}");
        assert!(error.to_string().contains(id), "{id}: {error}");
    }
}

#[test]
fn plain_entry_check_accepts_own_id() {
    let plain = entry("spiffe://example.org/web");
    check_expansion(&plain, &SpiffeId::new("spiffe://example.org/web").unwrap()).unwrap();
    let admin = SpiffeId::new("spiffe://example.org/admin").unwrap();
    let error = check_expansion(&plain, &admin).unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
}
