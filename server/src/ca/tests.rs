#![expect(
    clippy::indexing_slicing,
    reason = "tests index chains whose length they assert"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType,
};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::der::pem::LineEnding;
use rsa::pkcs8::{DecodePrivateKey, PrivateKeyInfo};
use rustls::RootCertStore;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use spiffe::{SpiffeId, TrustDomain};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::*;

// === helpers ===

fn trust_domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn config(data_dir: &Path, key_type: KeyType) -> CaConfig {
    CaConfig {
        trust_domain: trust_domain(),
        dir: data_dir.join("ca"),
        ca_ttl: Duration::from_secs(24 * 3600),
        key_type,
        upstream: None,
    }
}

fn workload_id() -> SpiffeId {
    SpiffeId::new("spiffe://example.org/workload/web").unwrap()
}

/// Returns a DER CSR whose subject and SANs differ from what the CA must put in the SVID.
fn csr_for(key: &KeyPair) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["requested.example.net".to_owned()]).unwrap();
    params.subject_alt_names.push(SanType::URI(
        "spiffe://evil.example/admin".try_into().unwrap(),
    ));
    params
        .distinguished_name
        .push(DnType::CommonName, "requested by the workload");
    params.serialize_request(key).unwrap().der().to_vec()
}

fn generate(key_type: KeyType) -> KeyPair {
    key_type.generate().unwrap()
}

fn parse<'a>(cert: &'a CertificateDer<'_>) -> X509Certificate<'a> {
    X509Certificate::from_der(cert).unwrap().1
}

fn san_names<'a>(cert: &'a X509Certificate<'a>) -> Vec<&'a GeneralName<'a>> {
    cert.subject_alternative_name()
        .unwrap()
        .map(|san| san.value.general_names.iter().collect())
        .unwrap_or_default()
}

fn common_names(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap().to_owned())
        .collect()
}

fn validity_secs(cert: &X509Certificate<'_>) -> (i64, i64) {
    (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    )
}

fn unix(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// Verifies `chain` (leaf first) to `bundle` both as a TLS client certificate and as a TLS server
/// certificate, the two ways peers use an X509-SVID.
fn verify_chain(chain: &[CertificateDer<'static>], bundle: &[CertificateDer<'static>]) {
    let mut roots = RootCertStore::empty();
    for root in bundle {
        roots.add(root.clone()).unwrap();
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(default_provider());
    let now = UnixTime::now();

    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .unwrap();
    client_verifier
        .verify_client_cert(&chain[0], &chain[1..], now)
        .unwrap();

    let leaf = ParsedCertificate::try_from(&chain[0]).unwrap();
    verify_server_cert_signed_by_trust_anchor(
        &leaf,
        &roots,
        &chain[1..],
        now,
        provider.signature_verification_algorithms.all,
    )
    .unwrap();
}

/// Writes a private key file with mode 0600, as the CA requires of key files it loads.
fn write_key_file(path: &Path, pem: &str) {
    std::fs::write(path, pem).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Writes a CA key and certificate made outside the CA code, to test how stored files are read.
fn write_stored_ca(data_dir: &Path, key: &KeyPair, params: &CertificateParams) {
    let cert = params.self_signed(key).unwrap();
    let dir = data_dir.join("ca");
    std::fs::create_dir_all(&dir).unwrap();
    write_key_file(&dir.join("ca-key.pem"), &key.serialize_pem());
    std::fs::write(dir.join("ca-cert.pem"), cert.pem()).unwrap();
}

fn root_params(
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI("spiffe://example.org".try_into().unwrap())];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

// === self-signed CA ===

// covers: X509-05, X509-07, X509-10, X509-11, X509-12, X509-27
#[test]
fn new_root_has_spiffe_ca_fields() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();

    let authorities = ca.x509_authorities();
    assert_eq!(authorities.len(), 1);
    let root = parse(&authorities[0]);
    assert_eq!(common_names(&root), ["Signet CA"]);
    let organizations: Vec<_> = root
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(organizations, ["example.org"]);
    assert!(matches!(
        san_names(&root).as_slice(),
        [GeneralName::URI("spiffe://example.org")]
    ));
    assert!(root.basic_constraints().unwrap().unwrap().value.ca);
    assert!(root.key_usage().unwrap().unwrap().critical);
    let key_usage = root.key_usage().unwrap().unwrap().value;
    assert!(key_usage.key_cert_sign());
    assert!(key_usage.crl_sign());
    assert!(!key_usage.digital_signature());
    assert!(root.verify_signature(None).is_ok());
}

#[test]
fn new_root_validity_is_ca_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), KeyType::EcP256);
    config.ca_ttl = Duration::from_secs(7200);
    let ca = CertificateAuthority::load_or_create(&config).unwrap();

    let root_der = ca.x509_authorities().remove(0);
    let (not_before, not_after) = validity_secs(&parse(&root_der));
    assert_eq!(not_after - not_before, 7200 + 10);
    assert_eq!(unix(ca.expires_at()), not_after);
}

#[test]
fn ca_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();

    assert_eq!(mode_of(&dir.path().join("ca")), 0o700);
    assert_eq!(mode_of(&dir.path().join("ca/ca-key.pem")), 0o600);
    assert_eq!(mode_of(&dir.path().join("ca/ca-cert.pem")), 0o644);
}

#[test]
fn restart_loads_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), KeyType::EcP256);
    let first = CertificateAuthority::load_or_create(&config).unwrap();
    let second = CertificateAuthority::load_or_create(&config).unwrap();

    assert_eq!(first.x509_authorities(), second.x509_authorities());
    assert_eq!(first.expires_at(), second.expires_at());
    let svid = second
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &workload_id(),
            Duration::from_secs(60),
            &[],
        )
        .unwrap();
    verify_chain(&svid.chain, &first.x509_authorities());
}

#[test]
fn expired_stored_ca_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate(KeyType::EcP256);
    let now = time::OffsetDateTime::now_utc();
    let expired = root_params(
        now - time::Duration::hours(2),
        now - time::Duration::hours(1),
    );
    write_stored_ca(dir.path(), &key, &expired);

    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();

    assert!(ca.expires_at() > SystemTime::now());
    let root = ca.x509_authorities().remove(0);
    assert_ne!(
        parse(&root).public_key().raw,
        key.subject_public_key_info().as_slice()
    );
}

#[test]
fn stored_ca_written_elsewhere_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate(KeyType::EcP256);
    let now = time::OffsetDateTime::now_utc();
    write_stored_ca(
        dir.path(),
        &key,
        &root_params(now, now + time::Duration::hours(1)),
    );

    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();

    let root = ca.x509_authorities().remove(0);
    assert_eq!(
        parse(&root).public_key().raw,
        key.subject_public_key_info().as_slice()
    );
}

#[test]
fn other_trust_domain_ca_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let first = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let mut other = config(dir.path(), KeyType::EcP256);
    other.trust_domain = TrustDomain::new("other.example").unwrap();

    let second = CertificateAuthority::load_or_create(&other).unwrap();

    assert_ne!(first.x509_authorities(), second.x509_authorities());
    let root = second.x509_authorities().remove(0);
    assert!(matches!(
        san_names(&parse(&root)).as_slice(),
        [GeneralName::URI("spiffe://other.example")]
    ));
}

#[test]
fn changed_key_type_replaces_ca() {
    let dir = tempfile::tempdir().unwrap();
    let first = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let second =
        CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP384)).unwrap();
    assert_ne!(first.x509_authorities(), second.x509_authorities());
}

#[test]
fn corrupt_key_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), KeyType::EcP256);
    CertificateAuthority::load_or_create(&config).unwrap();
    std::fs::write(dir.path().join("ca/ca-key.pem"), "not a key").unwrap();

    let error = CertificateAuthority::load_or_create(&config).unwrap_err();
    assert!(matches!(&error, CaError::KeyFile { path, .. } if path.ends_with("ca/ca-key.pem")));
}

#[test]
fn debug_output_has_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let identity = ca.issue_server_identity(Duration::from_secs(60)).unwrap();

    let stored_key = std::fs::read_to_string(dir.path().join("ca/ca-key.pem")).unwrap();
    let key_base64: String = stored_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let debug = format!("{ca:?} {identity:?}");
    // Past the fixed PKCS#8 header, the base64 text encodes the private key itself.
    assert!(!debug.contains(&key_base64[48..80]));
    assert!(debug.contains("redacted"));
    assert!(!debug.contains(&format!("{:?}", identity.key.secret_der())));
}

// === X509-SVID signing ===

// covers: X509-01, X509-04, X509-08, X509-10, X509-11, X509-13, X509-14, X509-15
#[test]
fn svid_has_exactly_the_requested_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let key = generate(KeyType::EcP256);

    let svid = ca
        .sign_x509_svid(
            &csr_for(&key),
            &workload_id(),
            Duration::from_secs(3600),
            &[],
        )
        .unwrap();

    assert_eq!(svid.chain.len(), 1);
    let leaf = parse(&svid.chain[0]);
    assert!(matches!(
        san_names(&leaf).as_slice(),
        [GeneralName::URI("spiffe://example.org/workload/web")]
    ));
    assert!(common_names(&leaf).is_empty());
    assert!(leaf.subject().iter().next().is_none());
    assert!(leaf.subject_alternative_name().unwrap().unwrap().critical);
    assert!(leaf.key_usage().unwrap().unwrap().critical);
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
    let key_usage = leaf.key_usage().unwrap().unwrap().value;
    assert!(key_usage.digital_signature());
    assert!(!key_usage.key_cert_sign());
    assert!(!key_usage.key_encipherment());
    let extended = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(extended.server_auth);
    assert!(extended.client_auth);
    verify_chain(&svid.chain, &ca.x509_authorities());
}

#[test]
fn svid_ttl_is_as_requested() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let before = unix(SystemTime::now());

    let svid = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &workload_id(),
            Duration::from_secs(600),
            &[],
        )
        .unwrap();

    let (not_before, not_after) = validity_secs(&parse(&svid.chain[0]));
    assert_eq!(not_after - not_before, 600 + 10);
    assert!((before - 10..=before - 9).contains(&not_before));
    assert_eq!(unix(svid.expires_at), not_after);
}

#[test]
fn svid_ttl_is_cut_at_ca_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), KeyType::EcP256);
    config.ca_ttl = Duration::from_secs(3600);
    let ca = CertificateAuthority::load_or_create(&config).unwrap();

    let svid = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &workload_id(),
            Duration::from_secs(7200),
            &[],
        )
        .unwrap();

    let (_, not_after) = validity_secs(&parse(&svid.chain[0]));
    assert_eq!(not_after, unix(ca.expires_at()));
    assert_eq!(svid.expires_at, ca.expires_at());
}

#[test]
fn svid_serial_is_random_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let csr = csr_for(&generate(KeyType::EcP256));
    let sign = || {
        ca.sign_x509_svid(&csr, &workload_id(), Duration::from_secs(60), &[])
            .unwrap()
    };

    let (first, second) = (sign(), sign());

    assert_ne!(first.serial_number, second.serial_number);
    let leaf = parse(&first.chain[0]);
    assert_eq!(
        first.serial_number,
        leaf.tbs_certificate.serial.to_str_radix(16)
    );
    assert!(leaf.tbs_certificate.serial.bits() > 96);
    assert!(leaf.tbs_certificate.serial.bits() <= 128);
    assert_eq!(
        certificate_serial_number(&first.chain[0]).unwrap(),
        first.serial_number
    );
}

#[test]
fn serial_number_hex_cases() {
    let cases: [(&str, &[u8], &str); 5] = [
        ("zero", &[0], "0"),
        ("empty", &[], "0"),
        ("leading zero bytes", &[0, 0, 0x0a, 0xbc], "abc"),
        ("high bit set", &[0x80, 0x01], "8001"),
        ("leading zero nibble", &[0x01, 0xff], "1ff"),
    ];
    for (name, big_endian, expected) in cases {
        assert_eq!(signer::serial_number_hex(big_endian), expected, "{name}");
    }
}

// covers: X509-01
#[test]
fn svid_dns_names_become_sans_and_first_cn() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let dns_names = ["web.example.org".to_owned(), "www.example.org".to_owned()];

    let svid = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &workload_id(),
            Duration::from_secs(60),
            &dns_names,
        )
        .unwrap();

    let leaf = parse(&svid.chain[0]);
    assert!(matches!(
        san_names(&leaf).as_slice(),
        [
            GeneralName::URI("spiffe://example.org/workload/web"),
            GeneralName::DNSName("web.example.org"),
            GeneralName::DNSName("www.example.org"),
        ]
    ));
    assert_eq!(common_names(&leaf), ["web.example.org"]);
}

#[test]
fn svid_for_each_ca_and_csr_key_type() {
    for ca_key_type in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(&config(dir.path(), ca_key_type)).unwrap();
        for csr_key_type in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
            let svid = ca
                .sign_x509_svid(
                    &csr_for(&generate(csr_key_type)),
                    &workload_id(),
                    Duration::from_secs(60),
                    &[],
                )
                .unwrap();

            let leaf = parse(&svid.chain[0]);
            let key_usage = leaf.key_usage().unwrap().unwrap().value;
            assert!(
                key_usage.digital_signature(),
                "{ca_key_type} CA, {csr_key_type} CSR"
            );
            assert_eq!(
                key_usage.key_encipherment(),
                csr_key_type == KeyType::Rsa2048,
                "{ca_key_type} CA, {csr_key_type} CSR"
            );
            verify_chain(&svid.chain, &ca.x509_authorities());
        }
    }
}

// covers: X509-08, X509-14
#[test]
fn csr_request_for_ca_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let key = generate(KeyType::EcP256);
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let csr = params.serialize_request(&key).unwrap().der().to_vec();
    let (_, request) = X509CertificationRequest::from_der(&csr).unwrap();
    let asks_for_ca = request.requested_extensions().unwrap().any(|extension| {
        matches!(extension, ParsedExtension::BasicConstraints(constraints) if constraints.ca)
    });
    assert!(asks_for_ca, "the test CSR must request cA=true");

    let svid = ca
        .sign_x509_svid(&csr, &workload_id(), Duration::from_secs(60), &[])
        .unwrap();

    let leaf = parse(&svid.chain[0]);
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
    let key_usage = leaf.key_usage().unwrap().unwrap().value;
    assert!(!key_usage.key_cert_sign());
    assert!(!key_usage.crl_sign());
}

#[test]
fn ed25519_csr_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();

    let svid = ca
        .sign_x509_svid(&csr_for(&key), &workload_id(), Duration::from_secs(60), &[])
        .unwrap();

    let leaf = parse(&svid.chain[0]);
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    verify_chain(&svid.chain, &ca.x509_authorities());
}

#[test]
fn csr_with_bad_signature_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let mut csr = csr_for(&generate(KeyType::EcP256));
    // The CSR ends with the signature BIT STRING, so the last byte belongs to the signature.
    let last = csr.len() - 1;
    csr[last] ^= 0x01;

    let error = ca
        .sign_x509_svid(&csr, &workload_id(), Duration::from_secs(60), &[])
        .unwrap_err();
    assert!(matches!(error, CaError::CsrSignature), "{error}");
}

#[test]
fn csr_signed_by_another_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let csr = csr_for(&generate(KeyType::EcP256));
    let signature_len = |der: &[u8]| {
        let (_, parsed) = X509CertificationRequest::from_der(der).unwrap();
        parsed.signature_value.data.len()
    };
    // ECDSA signatures vary in length by a byte or two. Grafting one of the same length keeps the
    // DER well formed, so only the signature is wrong.
    let other = (0..50)
        .map(|_| csr_for(&generate(KeyType::EcP256)))
        .find(|other| signature_len(other) == signature_len(&csr))
        .expect("a CSR with a signature of the same length");
    let signature_start = csr.len() - signature_len(&csr);
    let mut forged = csr;
    forged[signature_start..].copy_from_slice(&other[other.len() - signature_len(&other)..]);

    let error = ca
        .sign_x509_svid(&forged, &workload_id(), Duration::from_secs(60), &[])
        .unwrap_err();
    assert!(matches!(error, CaError::CsrSignature), "{error}");
}

#[test]
fn garbage_csr_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    for csr in [&b""[..], b"not a csr", &[0x30, 0x03, 0x02, 0x01, 0x00]] {
        let error = ca
            .sign_x509_svid(csr, &workload_id(), Duration::from_secs(60), &[])
            .unwrap_err();
        assert!(matches!(error, CaError::InvalidCsr { .. }), "{error}");
    }
}

#[test]
fn csr_with_trailing_bytes_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let mut csr = csr_for(&generate(KeyType::EcP256));
    csr.push(0);

    let error = ca
        .sign_x509_svid(&csr, &workload_id(), Duration::from_secs(60), &[])
        .unwrap_err();
    assert!(matches!(error, CaError::InvalidCsr { .. }), "{error}");
}

#[test]
fn id_in_other_trust_domain_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let foreign = SpiffeId::new("spiffe://other.example/workload").unwrap();

    let error = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &foreign,
            Duration::from_secs(60),
            &[],
        )
        .unwrap_err();
    assert!(matches!(error, CaError::InvalidCsr { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("spiffe://other.example/workload")
    );
}

// covers: X509-03
#[test]
fn id_without_path_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let root_id = SpiffeId::new("spiffe://example.org").unwrap();

    let error = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &root_id,
            Duration::from_secs(60),
            &[],
        )
        .unwrap_err();
    assert!(matches!(error, CaError::InvalidCsr { .. }), "{error}");
}

#[test]
fn zero_ttl_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();

    let error = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &workload_id(),
            Duration::ZERO,
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(error, CaError::InvalidTtl { ttl_seconds: 0 }),
        "{error}"
    );
}

#[test]
fn invalid_dns_name_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let dns_names = ["bad name\u{e9}".to_owned()];

    let error = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &workload_id(),
            Duration::from_secs(60),
            &dns_names,
        )
        .unwrap_err();
    assert!(matches!(error, CaError::InvalidCsr { .. }), "{error}");
}

#[test]
fn dns_name_syntax_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let csr = csr_for(&generate(KeyType::EcP256));
    let sign = |name: &str| {
        ca.sign_x509_svid(
            &csr,
            &workload_id(),
            Duration::from_secs(60),
            &[name.to_owned()],
        )
    };

    for valid in ["web", "web.example.org", "*.example.org", "a-b.example.org"] {
        assert!(sign(valid).is_ok(), "{valid}");
    }
    for invalid in [
        "",
        "bad name",
        "web..example.org",
        "*",
        "web.*.example.org",
        "-web.example",
    ] {
        let error = sign(invalid).unwrap_err();
        assert!(
            matches!(error, CaError::InvalidCsr { .. }),
            "{invalid}: {error}"
        );
    }
}

#[test]
fn authority_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CertificateAuthority>();
}

// === server identity ===

#[test]
fn server_identity_names_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();

    let identity = ca.issue_server_identity(Duration::from_secs(300)).unwrap();

    let leaf = parse(&identity.chain[0]);
    let names = san_names(&leaf);
    assert!(matches!(
        names[0],
        GeneralName::URI("spiffe://example.org/spire/server")
    ));
    assert!(matches!(names[1], GeneralName::DNSName("localhost")));
    assert!(matches!(names[2], GeneralName::IPAddress([127, 0, 0, 1])));
    assert!(matches!(names[3], GeneralName::IPAddress(ip) if ip.len() == 16));
    assert_eq!(names.len(), 4);
    let (not_before, not_after) = validity_secs(&leaf);
    assert_eq!(not_after - not_before, 300 + 10);
    assert_eq!(unix(identity.expires_at), not_after);
    let key = KeyPair::try_from(identity.key.secret_der()).unwrap();
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    verify_chain(&identity.chain, &ca.x509_authorities());
}

// === upstream CA ===

struct Upstream {
    root_key: KeyPair,
    root_params: CertificateParams,
    root: CertificateDer<'static>,
    files: UpstreamCa,
}

fn upstream_ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Writes an upstream root CA (key as PKCS#8 PEM) into `dir`.
fn write_upstream_root(dir: &Path, key_type: KeyType) -> Upstream {
    let root_key = generate(key_type);
    let root_params = upstream_ca_params("Upstream Root");
    let root = root_params.self_signed(&root_key).unwrap();
    let files = UpstreamCa {
        cert_path: dir.join("upstream-cert.pem"),
        key_path: dir.join("upstream-key.pem"),
    };
    std::fs::write(&files.cert_path, root.pem()).unwrap();
    write_key_file(&files.key_path, &root_key.serialize_pem());
    Upstream {
        root: root.der().clone(),
        root_key,
        root_params,
        files,
    }
}

fn upstream_config(data_dir: &Path, upstream: &Upstream) -> CaConfig {
    CaConfig {
        upstream: Some(upstream.files.clone()),
        ..config(data_dir, KeyType::EcP256)
    }
}

#[test]
fn upstream_root_signs_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP384);
    let ca = CertificateAuthority::load_or_create(&upstream_config(dir.path(), &upstream)).unwrap();

    assert_eq!(ca.x509_authorities(), std::slice::from_ref(&upstream.root));
    let svid = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &workload_id(),
            Duration::from_secs(60),
            &[],
        )
        .unwrap();
    assert_eq!(svid.chain.len(), 2);
    let intermediate = parse(&svid.chain[1]);
    assert!(intermediate.basic_constraints().unwrap().unwrap().value.ca);
    assert!(matches!(
        san_names(&intermediate).as_slice(),
        [GeneralName::URI("spiffe://example.org")]
    ));
    assert!(
        intermediate
            .verify_signature(Some(parse(&upstream.root).public_key()))
            .is_ok()
    );
    verify_chain(&svid.chain, &ca.x509_authorities());
}

#[test]
fn upstream_intermediate_is_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    let config = upstream_config(dir.path(), &upstream);
    let csr = csr_for(&generate(KeyType::EcP256));
    let first = CertificateAuthority::load_or_create(&config).unwrap();
    let first_svid = first
        .sign_x509_svid(&csr, &workload_id(), Duration::from_secs(60), &[])
        .unwrap();

    let second = CertificateAuthority::load_or_create(&config).unwrap();
    let second_svid = second
        .sign_x509_svid(&csr, &workload_id(), Duration::from_secs(60), &[])
        .unwrap();

    assert_eq!(first_svid.chain[1], second_svid.chain[1]);
    assert_eq!(mode_of(&dir.path().join("ca/ca-key.pem")), 0o600);
}

#[test]
fn new_upstream_replaces_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let csr = csr_for(&generate(KeyType::EcP256));
    let first_upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    let first = CertificateAuthority::load_or_create(&upstream_config(dir.path(), &first_upstream))
        .unwrap();
    let first_svid = first
        .sign_x509_svid(&csr, &workload_id(), Duration::from_secs(60), &[])
        .unwrap();

    let second_upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    let second =
        CertificateAuthority::load_or_create(&upstream_config(dir.path(), &second_upstream))
            .unwrap();
    let second_svid = second
        .sign_x509_svid(&csr, &workload_id(), Duration::from_secs(60), &[])
        .unwrap();

    assert_ne!(first_svid.chain[1], second_svid.chain[1]);
    verify_chain(&second_svid.chain, &second.x509_authorities());
}

#[test]
fn adding_upstream_replaces_root() {
    let dir = tempfile::tempdir().unwrap();
    let first = CertificateAuthority::load_or_create(&config(dir.path(), KeyType::EcP256)).unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP256);

    let second =
        CertificateAuthority::load_or_create(&upstream_config(dir.path(), &upstream)).unwrap();

    assert_ne!(first.x509_authorities(), second.x509_authorities());
    assert_eq!(
        second.x509_authorities(),
        std::slice::from_ref(&upstream.root)
    );
}

#[test]
fn upstream_chain_with_intermediate_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_upstream_root(dir.path(), KeyType::EcP256);
    let issuer = rcgen::Issuer::from_params(&root.root_params, &root.root_key);
    let middle_key = generate(KeyType::EcP256);
    let middle = upstream_ca_params("Upstream Intermediate")
        .signed_by(&middle_key, &issuer)
        .unwrap();
    let root_pem = std::fs::read_to_string(&root.files.cert_path).unwrap();
    std::fs::write(&root.files.cert_path, format!("{}{root_pem}", middle.pem())).unwrap();
    std::fs::write(&root.files.key_path, middle_key.serialize_pem()).unwrap();

    let ca = CertificateAuthority::load_or_create(&upstream_config(dir.path(), &root)).unwrap();
    let svid = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &workload_id(),
            Duration::from_secs(60),
            &[],
        )
        .unwrap();

    assert_eq!(ca.x509_authorities(), std::slice::from_ref(&root.root));
    assert_eq!(svid.chain.len(), 3);
    assert_eq!(svid.chain[2], *middle.der());
    verify_chain(&svid.chain, &ca.x509_authorities());
}

#[test]
fn upstream_expiry_bounds_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    let mut params = upstream.root_params.clone();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let short_root = params.self_signed(&upstream.root_key).unwrap();
    std::fs::write(&upstream.files.cert_path, short_root.pem()).unwrap();

    let ca = CertificateAuthority::load_or_create(&upstream_config(dir.path(), &upstream)).unwrap();

    assert_eq!(unix(ca.expires_at()), params.not_after.unix_timestamp());
}

#[test]
fn upstream_key_in_sec1_and_pkcs1_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let ec = write_upstream_root(dir.path(), KeyType::EcP256);
    let pkcs8 = ec.root_key.serialize_der();
    let sec1 = PrivateKeyInfo::try_from(pkcs8.as_slice())
        .unwrap()
        .private_key
        .to_vec();
    let sec1_pem =
        rsa::pkcs8::der::pem::encode_string("EC PRIVATE KEY", LineEnding::LF, &sec1).unwrap();
    std::fs::write(&ec.files.key_path, sec1_pem).unwrap();
    let ca = CertificateAuthority::load_or_create(&upstream_config(dir.path(), &ec)).unwrap();
    assert_eq!(ca.x509_authorities(), std::slice::from_ref(&ec.root));

    let rsa_dir = tempfile::tempdir().unwrap();
    let rsa = write_upstream_root(rsa_dir.path(), KeyType::Rsa2048);
    let rsa_key = rsa::RsaPrivateKey::from_pkcs8_der(&rsa.root_key.serialize_der()).unwrap();
    let pkcs1_pem = rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap();
    std::fs::write(&rsa.files.key_path, pkcs1_pem.as_bytes()).unwrap();
    let ca = CertificateAuthority::load_or_create(&upstream_config(rsa_dir.path(), &rsa)).unwrap();
    let svid = ca
        .sign_x509_svid(
            &csr_for(&generate(KeyType::EcP256)),
            &workload_id(),
            Duration::from_secs(60),
            &[],
        )
        .unwrap();
    verify_chain(&svid.chain, &ca.x509_authorities());
}

#[test]
fn upstream_key_must_match_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    std::fs::write(
        &upstream.files.key_path,
        generate(KeyType::EcP256).serialize_pem(),
    )
    .unwrap();

    let error =
        CertificateAuthority::load_or_create(&upstream_config(dir.path(), &upstream)).unwrap_err();
    assert!(
        matches!(&error, CaError::Upstream { path, .. } if *path == upstream.files.key_path),
        "{error}"
    );
}

#[test]
fn upstream_certificate_must_be_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    let mut params = upstream.root_params.clone();
    params.is_ca = IsCa::ExplicitNoCa;
    let leaf = params.self_signed(&upstream.root_key).unwrap();
    std::fs::write(&upstream.files.cert_path, leaf.pem()).unwrap();

    let error =
        CertificateAuthority::load_or_create(&upstream_config(dir.path(), &upstream)).unwrap_err();
    assert!(matches!(error, CaError::Upstream { .. }), "{error}");
}

#[test]
fn upstream_certificate_must_allow_cert_signing() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    let mut params = upstream.root_params.clone();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&upstream.root_key).unwrap();
    std::fs::write(&upstream.files.cert_path, cert.pem()).unwrap();

    let error =
        CertificateAuthority::load_or_create(&upstream_config(dir.path(), &upstream)).unwrap_err();
    assert!(matches!(error, CaError::Upstream { .. }), "{error}");
}

#[test]
fn expired_upstream_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    let mut params = upstream.root_params.clone();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let cert = params.self_signed(&upstream.root_key).unwrap();
    std::fs::write(&upstream.files.cert_path, cert.pem()).unwrap();

    let error =
        CertificateAuthority::load_or_create(&upstream_config(dir.path(), &upstream)).unwrap_err();
    assert!(matches!(error, CaError::Upstream { .. }), "{error}");
}

#[test]
fn upstream_chain_out_of_order_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_upstream_root(dir.path(), KeyType::EcP256);
    let issuer = rcgen::Issuer::from_params(&root.root_params, &root.root_key);
    let middle_key = generate(KeyType::EcP256);
    let middle = upstream_ca_params("Upstream Intermediate")
        .signed_by(&middle_key, &issuer)
        .unwrap();
    let unrelated = upstream_ca_params("Unrelated Root")
        .self_signed(&generate(KeyType::EcP256))
        .unwrap();
    let chain = format!("{}{}", middle.pem(), unrelated.pem());
    std::fs::write(&root.files.cert_path, chain).unwrap();
    std::fs::write(&root.files.key_path, middle_key.serialize_pem()).unwrap();

    let error =
        CertificateAuthority::load_or_create(&upstream_config(dir.path(), &root)).unwrap_err();
    assert!(
        matches!(&error, CaError::Upstream { path, .. } if *path == root.files.cert_path),
        "{error}"
    );
}

#[test]
fn missing_upstream_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    std::fs::remove_file(&upstream.files.cert_path).unwrap();

    let error =
        CertificateAuthority::load_or_create(&upstream_config(dir.path(), &upstream)).unwrap_err();
    assert!(
        matches!(&error, CaError::Io { path, .. } if *path == upstream.files.cert_path),
        "{error}"
    );
}

#[test]
fn shared_stored_ca_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), KeyType::EcP256);
    CertificateAuthority::load_or_create(&config).unwrap();
    let key_path = dir.path().join("ca/ca-key.pem");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let error = CertificateAuthority::load_or_create(&config).unwrap_err();

    assert!(
        matches!(&error, CaError::KeyFileMode { path, mode: 0o644 } if *path == key_path),
        "{error}"
    );
    assert_eq!(mode_of(&key_path), 0o644, "the key file was changed");
}

#[test]
fn shared_upstream_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = write_upstream_root(dir.path(), KeyType::EcP256);
    let key_path = upstream.files.key_path.clone();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o640)).unwrap();

    let error =
        CertificateAuthority::load_or_create(&upstream_config(dir.path(), &upstream)).unwrap_err();

    assert!(
        matches!(&error, CaError::KeyFileMode { path, mode: 0o640 } if *path == key_path),
        "{error}"
    );
}
