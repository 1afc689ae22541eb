//! Tainted X.509 authorities: the server keeps them in the bundle, so what they signed still
//! verifies, but the agent replaces every X509-SVID they signed at once instead of at half life.
//!
//! An X509-SVID counts as signed by a tainted authority when any certificate of its chain names
//! the authority's subject key identifier as its authority key identifier.

use std::collections::HashSet;

use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

/// The subject key identifiers of the tainted authorities of a bundle.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TaintedAuthorities {
    key_ids: HashSet<Vec<u8>>,
}

impl TaintedAuthorities {
    /// Collects the subject key identifiers of `authorities`. An authority without one is
    /// skipped with a warning, because nothing it signed can be recognized.
    pub fn new(authorities: &[CertificateDer<'_>]) -> Self {
        let key_ids = authorities
            .iter()
            .filter_map(|authority| {
                let key_id = subject_key_id(authority);
                if key_id.is_none() {
                    tracing::warn!("Tainted authority has no subject key identifier; ignoring it");
                }
                key_id
            })
            .collect();
        Self { key_ids }
    }

    /// Returns true when no authority is tainted.
    pub fn is_empty(&self) -> bool {
        self.key_ids.is_empty()
    }

    /// Returns true when a tainted authority signed any certificate of `chain`.
    pub fn signed(&self, chain: &[CertificateDer<'_>]) -> bool {
        !self.is_empty()
            && chain
                .iter()
                .filter_map(|cert| authority_key_id(cert))
                .any(|key_id| self.key_ids.contains(&key_id))
    }
}

fn subject_key_id(cert: &[u8]) -> Option<Vec<u8>> {
    find_extension(cert, |extension| match extension {
        ParsedExtension::SubjectKeyIdentifier(key_id) => Some(key_id.0.to_vec()),
        _ => None,
    })
}

fn authority_key_id(cert: &[u8]) -> Option<Vec<u8>> {
    find_extension(cert, |extension| match extension {
        ParsedExtension::AuthorityKeyIdentifier(identifier) => identifier
            .key_identifier
            .as_ref()
            .map(|key_id| key_id.0.to_vec()),
        _ => None,
    })
}

fn find_extension(
    cert: &[u8],
    pick: impl Fn(&ParsedExtension<'_>) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(cert).ok()?;
    cert.extensions()
        .iter()
        .find_map(|extension| pick(extension.parsed_extension()))
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    use super::*;

    struct Ca {
        cert: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap().der().clone();
        Ca {
            issuer: Issuer::from_ca_cert_der(&cert, key).unwrap(),
            cert,
        }
    }

    fn leaf(ca: &Ca) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.use_authority_key_identifier_extension = true;
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    #[test]
    fn leaf_of_a_tainted_authority_is_recognized() {
        let tainted_ca = ca();
        let other_ca = ca();
        let tainted = TaintedAuthorities::new(std::slice::from_ref(&tainted_ca.cert));

        assert!(tainted.signed(&[leaf(&tainted_ca)]));
        assert!(!tainted.signed(&[leaf(&other_ca)]));
    }

    #[test]
    fn nothing_tainted_matches_nothing() {
        let tainted = TaintedAuthorities::new(&[]);

        assert!(tainted.is_empty());
        assert!(!tainted.signed(&[leaf(&ca())]));
    }
}
