use std::fs;

use rcgen::{CertificateParams, KeyPair};
use rustls::crypto::ring;
use tempfile::TempDir;

use super::*;

struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Writes a new self-signed certificate and its key, returning the certificate DER.
    fn write_pair(&self, name: &str) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        fs::write(self.cert(), cert.pem()).unwrap();
        fs::write(self.key(), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn load(&self) -> Result<ReloadingCertificate, TlsFilesError> {
        ReloadingCertificate::load(&self.cert(), &self.key(), provider())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn served_leaf(certificate: &ReloadingCertificate) -> Vec<u8> {
    certificate.current().cert[0].to_vec()
}

#[test]
fn loads_matching_pair() {
    let files = Files::new();
    let der = files.write_pair("oidc.example.org");
    let certificate = files.load().unwrap();
    assert_eq!(served_leaf(&certificate), der);
}

#[test]
fn changed_files_are_reloaded() {
    let files = Files::new();
    files.write_pair("old.example.org");
    let certificate = files.load().unwrap();

    let new_der = files.write_pair("new.example.org");
    assert_eq!(served_leaf(&certificate), new_der);
}

#[test]
fn mismatched_reload_keeps_previous_certificate() {
    let files = Files::new();
    let old_der = files.write_pair("old.example.org");
    let certificate = files.load().unwrap();
    let old_key = fs::read(files.key()).unwrap();

    // A new certificate whose key has not been written yet.
    files.write_pair("new.example.org");
    let new_key = fs::read(files.key()).unwrap();
    fs::write(files.key(), &old_key).unwrap();
    assert_eq!(served_leaf(&certificate), old_der);

    fs::write(files.key(), &new_key).unwrap();
    assert_ne!(served_leaf(&certificate), old_der);
}

#[test]
fn missing_or_empty_files_are_rejected() {
    let files = Files::new();
    assert!(matches!(files.load(), Err(TlsFilesError::Read { .. })));

    fs::write(files.cert(), "").unwrap();
    fs::write(files.key(), "").unwrap();
    assert!(matches!(files.load(), Err(TlsFilesError::NoCertificate(_))));

    files.write_pair("oidc.example.org");
    fs::write(files.key(), "").unwrap();
    assert!(matches!(files.load(), Err(TlsFilesError::NoKey(_))));
}

#[test]
fn key_of_another_certificate_is_rejected() {
    let files = Files::new();
    files.write_pair("oidc.example.org");
    let other_key = KeyPair::generate().unwrap();
    fs::write(files.key(), other_key.serialize_pem()).unwrap();
    assert!(matches!(files.load(), Err(TlsFilesError::Unusable { .. })));
}

#[test]
fn debug_shows_paths_only() {
    let files = Files::new();
    files.write_pair("oidc.example.org");
    let text = format!("{:?}", files.load().unwrap());
    assert!(text.contains("cert.pem"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}
