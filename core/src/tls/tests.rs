use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose, SanType,
    date_time_ymd,
};

use super::*;

const SERVER_ID: &str = "spiffe://example.org/spire/server";

struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn bundle(&self) -> Vec<CertificateDer<'static>> {
        vec![self.issuer.der().clone()]
    }

    fn leaf(&self, uris: &[&str]) -> CertificateDer<'static> {
        self.sign(leaf_params(uris))
    }

    fn sign(&self, params: CertificateParams) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &self.issuer).unwrap().der().clone()
    }
}

fn leaf_params(uris: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    for uri in uris {
        let uri = (*uri).try_into().unwrap();
        params.subject_alt_names.push(SanType::URI(uri));
    }
    params
}

fn server_id() -> SpiffeId {
    SpiffeId::new(SERVER_ID).unwrap()
}

fn verify(
    verifier: &dyn ServerCertVerifier,
    leaf: &CertificateDer<'static>,
) -> Result<ServerCertVerified, TlsError> {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    verifier.verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
}

fn spiffe_id_error(result: Result<ServerCertVerified, TlsError>) -> SpiffeIdCheckError {
    let Err(TlsError::InvalidCertificate(CertificateError::Other(other))) = result else {
        panic!("expected a SPIFFE ID error, got {result:?}");
    };
    other
        .0
        .downcast_ref::<SpiffeIdCheckError>()
        .unwrap()
        .clone()
}

#[test]
fn verifier_accepts_expected_id() {
    let ca = TestCa::new();
    let verifier = SpiffeServerVerifier::new(&ca.bundle(), server_id()).unwrap();
    assert!(verify(&verifier, &ca.leaf(&[SERVER_ID])).is_ok());
}

#[test]
fn verifier_rejects_other_id() {
    let ca = TestCa::new();
    let verifier = SpiffeServerVerifier::new(&ca.bundle(), server_id()).unwrap();
    let leaf = ca.leaf(&["spiffe://example.org/workload"]);
    assert_eq!(
        spiffe_id_error(verify(&verifier, &leaf)),
        SpiffeIdCheckError::Mismatch {
            expected: SERVER_ID.to_owned(),
            presented: "spiffe://example.org/workload".to_owned(),
        }
    );
}

#[test]
fn verifier_rejects_leaf_without_uri_san() {
    let ca = TestCa::new();
    let verifier = SpiffeServerVerifier::new(&ca.bundle(), server_id()).unwrap();
    let leaf = ca.leaf(&[]);
    assert_eq!(
        spiffe_id_error(verify(&verifier, &leaf)),
        SpiffeIdCheckError::UriSanCount(0)
    );
}

#[test]
fn verifier_rejects_two_uri_sans() {
    let ca = TestCa::new();
    let verifier = SpiffeServerVerifier::new(&ca.bundle(), server_id()).unwrap();
    let leaf = ca.leaf(&[SERVER_ID, "spiffe://example.org/other"]);
    assert_eq!(
        spiffe_id_error(verify(&verifier, &leaf)),
        SpiffeIdCheckError::UriSanCount(2)
    );
}

#[test]
fn verifier_rejects_other_ca() {
    // Both test CAs have rcgen's default subject, so webpki may find the trusted CA as issuer
    // and then fail on the signature.
    let trusted = TestCa::new();
    let untrusted = TestCa::new();
    let verifier = SpiffeServerVerifier::new(&trusted.bundle(), server_id()).unwrap();
    let result = verify(&verifier, &untrusted.leaf(&[SERVER_ID]));
    assert!(
        matches!(
            result,
            Err(TlsError::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature
            ))
        ),
        "{result:?}"
    );
}

#[test]
fn verifier_rejects_expired_leaf() {
    let ca = TestCa::new();
    let verifier = SpiffeServerVerifier::new(&ca.bundle(), server_id()).unwrap();
    let mut params = leaf_params(&[SERVER_ID]);
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2001, 1, 1);
    let result = verify(&verifier, &ca.sign(params));
    assert!(
        matches!(
            result,
            Err(TlsError::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ))
        ),
        "{result:?}"
    );
}

#[test]
fn verifier_rejects_empty_bundle() {
    let result = SpiffeServerVerifier::new(&[], server_id());
    assert!(matches!(result, Err(VerifierError::EmptyBundle)));
}

#[test]
fn insecure_verifier_skips_chain_but_checks_id() {
    let verifier = InsecureBootstrapVerifier::insecure_new(server_id());
    let ca = TestCa::new();
    assert!(verify(&verifier, &ca.leaf(&[SERVER_ID])).is_ok());
    let other = ca.leaf(&["spiffe://example.org/other"]);
    assert!(matches!(
        spiffe_id_error(verify(&verifier, &other)),
        SpiffeIdCheckError::Mismatch { .. }
    ));
}

#[test]
fn spiffe_id_of_reads_single_uri_san() {
    let ca = TestCa::new();
    assert_eq!(spiffe_id_of(&ca.leaf(&[SERVER_ID])).unwrap(), server_id());
}

#[test]
fn spiffe_id_of_rejects_non_spiffe_uri() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["https://example.org/"]);
    assert_eq!(
        spiffe_id_of(&leaf),
        Err(SpiffeIdCheckError::InvalidSpiffeId(
            "https://example.org/".to_owned()
        ))
    );
}

#[test]
fn spiffe_id_of_rejects_garbage() {
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x02, 0x03]);
    assert_eq!(spiffe_id_of(&garbage), Err(SpiffeIdCheckError::Malformed));
}
