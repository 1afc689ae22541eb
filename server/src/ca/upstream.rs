//! An upstream CA, read from PEM files, that signs the server's intermediate CA.

use std::path::Path;
use std::time::SystemTime;

use rcgen::{Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::authority::{rfc3339, validity};
use super::key::load_key_pem;
use super::{CaError, UpstreamCa};

/// A checked upstream CA: its key matches its certificate, the certificate may sign CAs, and the
/// chain in the certificate file links up to the root(s).
pub(super) struct UpstreamChain {
    /// Signs the server's intermediate CA with the upstream key.
    pub(super) issuer: Issuer<'static, KeyPair>,
    /// The first certificate of the upstream file, whose key is the upstream key.
    pub(super) signing_cert: CertificateDer<'static>,
    /// Upstream certificates between the server's intermediate and the roots, in chain order.
    pub(super) intermediates: Vec<CertificateDer<'static>>,
    /// The self-signed certificates of the upstream file, or its last certificate when none is
    /// self-signed; these go into the trust bundle.
    pub(super) roots: Vec<CertificateDer<'static>>,
    /// The earliest notAfter time in the upstream chain.
    pub(super) not_after: SystemTime,
}

impl UpstreamChain {
    /// Reads and checks the upstream certificate chain and key.
    ///
    /// # Errors
    ///
    /// [`CaError::Upstream`] naming the certificate or key file when the chain is empty, out of
    /// order, expired, not a CA with keyCertSign, or does not match the key;
    /// [`CaError::KeyFile`] or [`CaError::Io`] when the key file cannot be read.
    pub(super) fn load(files: &UpstreamCa) -> Result<Self, CaError> {
        let cert_error = |reason: String| CaError::Upstream {
            path: files.cert_path.clone(),
            reason,
        };
        let certs = read_chain(&files.cert_path)?;
        let key = load_key_pem(&files.key_path)?;

        let mut not_after = None;
        for (index, cert) in certs.iter().enumerate() {
            let (_, parsed) = X509Certificate::from_der(cert).map_err(|error| {
                cert_error(format!("certificate {index} is unparsable: {error}"))
            })?;
            check_current(&parsed)
                .map_err(|reason| cert_error(format!("certificate {index} {reason}")))?;
            check_signed_by_next(&parsed, certs.get(index + 1))
                .map_err(|reason| cert_error(format!("certificate {index} {reason}")))?;
            let (_, cert_not_after) = validity(cert).map_err(&cert_error)?;
            not_after =
                Some(not_after.map_or(cert_not_after, |t: SystemTime| t.min(cert_not_after)));
        }
        let signing_cert = certs
            .first()
            .cloned()
            .ok_or_else(|| cert_error("no certificate found".to_owned()))?;
        check_signing_cert(&signing_cert, &key).map_err(|reason| CaError::Upstream {
            path: files.key_path.clone(),
            reason,
        })?;
        let issuer = Issuer::from_ca_cert_der(&signing_cert, key)
            .map_err(|error| cert_error(format!("unusable as an issuer: {error}")))?;

        let (roots, intermediates) = split_roots(certs);
        Ok(Self {
            issuer,
            signing_cert,
            intermediates,
            roots,
            not_after: not_after.unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let pem = std::fs::read(path).map_err(|source| CaError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CaError::Upstream {
            path: path.to_owned(),
            reason: format!("invalid PEM: {error}"),
        })?;
    if certs.is_empty() {
        return Err(CaError::Upstream {
            path: path.to_owned(),
            reason: "no PEM certificate found".to_owned(),
        });
    }
    Ok(certs)
}

fn check_current(cert: &X509Certificate<'_>) -> Result<(), String> {
    let now = SystemTime::now();
    let (not_before, not_after): (SystemTime, SystemTime) = (
        cert.validity().not_before.to_datetime().into(),
        cert.validity().not_after.to_datetime().into(),
    );
    if now < not_before {
        return Err(format!("is not valid before {}", rfc3339(not_before)));
    }
    if now >= not_after {
        return Err(format!("expired at {}", rfc3339(not_after)));
    }
    Ok(())
}

/// Checks that a certificate in the upstream file is signed by the one after it, unless it is
/// self-signed (a root ends the chain).
fn check_signed_by_next(
    cert: &X509Certificate<'_>,
    next: Option<&CertificateDer<'_>>,
) -> Result<(), String> {
    if is_self_signed(cert) {
        return Ok(());
    }
    let Some(next) = next else {
        return Ok(());
    };
    let (_, next) = X509Certificate::from_der(next)
        .map_err(|error| format!("has an unparsable issuer: {error}"))?;
    cert.verify_signature(Some(next.public_key()))
        .map_err(|_| "is not signed by the certificate after it in the file".to_owned())
}

/// Checks that the upstream signing certificate is a CA allowed to sign certificates and that
/// `key` is its private key.
fn check_signing_cert(cert: &CertificateDer<'_>, key: &KeyPair) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(cert)
        .map_err(|error| format!("unparsable certificate: {error}"))?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(constraints)) if constraints.value.ca);
    if !is_ca {
        return Err(
            "the upstream certificate is not a CA (basicConstraints cA is not true)".to_owned(),
        );
    }
    let can_sign = matches!(cert.key_usage(), Ok(Some(usage)) if usage.value.key_cert_sign());
    if !can_sign {
        return Err("the upstream certificate lacks the keyCertSign key usage".to_owned());
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(
            "the key does not match the first certificate of the upstream chain".to_owned(),
        );
    }
    Ok(())
}

/// Splits the upstream chain into the roots to publish and the certificates to send after the
/// server's intermediate.
fn split_roots(
    certs: Vec<CertificateDer<'static>>,
) -> (Vec<CertificateDer<'static>>, Vec<CertificateDer<'static>>) {
    let (mut roots, mut intermediates): (Vec<_>, Vec<_>) = certs.into_iter().partition(|cert| {
        X509Certificate::from_der(cert).is_ok_and(|(_, parsed)| is_self_signed(&parsed))
    });
    if roots.is_empty() {
        roots.extend(intermediates.pop());
    }
    (roots, intermediates)
}

fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject() == cert.issuer() && cert.verify_signature(None).is_ok()
}
