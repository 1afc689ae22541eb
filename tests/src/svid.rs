//! Checks of served X509-SVIDs against the X509-SVID specification, with x509-parser for the
//! fields and rustls' WebPKI verifier for the chain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// What a test compares after the specification checks passed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SvidFacts {
    /// The leaf's only URI SAN.
    pub spiffe_id: String,
    /// The leaf's serial number, colon-separated hex.
    pub serial: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

impl SvidFacts {
    /// Returns notAfter minus notBefore.
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs((self.not_after - self.not_before).max(0).unsigned_abs())
    }
}

/// Checks an X509-SVID leaf-first `chain` issued for `expected_id`, and that it chains to one of
/// the `bundle` authorities.
///
/// # Errors
///
/// Fails with the first rule the chain breaks.
pub fn check_x509_svid(
    chain: &[&[u8]],
    bundle: &[&[u8]],
    expected_id: &str,
) -> anyhow::Result<SvidFacts> {
    let leaf_der = chain.first().context("the X509-SVID chain is empty")?;
    let (_, leaf) = X509Certificate::from_der(leaf_der).context("parsing the leaf certificate")?;

    let spiffe_id = only_uri_san(&leaf)?;
    ensure!(
        spiffe_id == expected_id,
        "leaf URI SAN is {spiffe_id}, expected {expected_id}"
    );
    check_leaf_constraints(&leaf)?;
    check_leaf_key_usage(&leaf)?;
    verify_chain(chain, bundle)?;

    Ok(SvidFacts {
        spiffe_id,
        serial: leaf.raw_serial_as_string(),
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
    })
}

/// Checks that `der` is a signing certificate as X509-SVID section 4 requires: `cA` true,
/// keyUsage critical with keyCertSign, and no path in its SPIFFE ID if it carries one.
///
/// # Errors
///
/// Fails with the first rule the certificate breaks.
pub fn check_authority(der: &[u8], trust_domain: &str) -> anyhow::Result<()> {
    let (_, cert) = X509Certificate::from_der(der).context("parsing a bundle certificate")?;
    ensure!(
        cert.is_ca(),
        "bundle certificate has no basicConstraints cA=true"
    );
    let key_usage = cert
        .key_usage()?
        .context("bundle certificate has no keyUsage extension")?;
    ensure!(
        key_usage.critical,
        "bundle certificate keyUsage is not critical"
    );
    ensure!(
        key_usage.value.key_cert_sign(),
        "bundle certificate lacks keyCertSign"
    );
    ensure!(
        !key_usage.value.digital_signature(),
        "bundle certificate sets digitalSignature, which is for leaves only"
    );
    for uri in uri_sans(&cert)? {
        ensure!(
            uri == format!("spiffe://{trust_domain}"),
            "bundle certificate URI SAN {uri} is not the trust domain ID spiffe://{trust_domain}"
        );
    }
    Ok(())
}

/// Verifies that the leaf-first `chain` chains to one of the `bundle` authorities and is valid
/// now, with the same WebPKI path validation a rustls server applies to client certificates.
///
/// # Errors
///
/// Fails when no valid path exists.
pub fn verify_chain(chain: &[&[u8]], bundle: &[&[u8]]) -> anyhow::Result<()> {
    let mut roots = RootCertStore::empty();
    for authority in bundle {
        roots
            .add(CertificateDer::from(authority.to_vec()))
            .context("adding a bundle authority as trust anchor")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .context("building the chain verifier")?;

    let (leaf, intermediates) = chain
        .split_first()
        .context("the X509-SVID chain is empty")?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|der| CertificateDer::from(*der))
        .collect();
    verifier
        .verify_client_cert(
            &CertificateDer::from(*leaf),
            &intermediates,
            UnixTime::now(),
        )
        .context("the X509-SVID does not chain to the bundle")?;
    Ok(())
}

/// Returns the DER of every certificate in `pem`, in order.
///
/// # Errors
///
/// Fails when a PEM block is malformed.
pub fn pem_certificates(pem: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|certificate| Ok(certificate.context("parsing a PEM certificate")?.to_vec()))
        .collect()
}

fn only_uri_san(leaf: &X509Certificate<'_>) -> anyhow::Result<String> {
    let uris = uri_sans(leaf)?;
    match uris.as_slice() {
        [uri] => Ok(uri.clone()),
        _ => bail!(
            "leaf has {} URI SANs, exactly one is required: {uris:?}",
            uris.len()
        ),
    }
}

fn uri_sans(cert: &X509Certificate<'_>) -> anyhow::Result<Vec<String>> {
    let Some(san) = cert.subject_alternative_name()? else {
        return Ok(Vec::new());
    };
    if cert.subject().iter().next().is_none() {
        // RFC 5280 section 4.1.2.6: with an empty subject the SAN carries the identity.
        ensure!(
            san.critical,
            "subject is empty but the SAN extension is not critical"
        );
    }
    let uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect();
    Ok(uris)
}

fn check_leaf_constraints(leaf: &X509Certificate<'_>) -> anyhow::Result<()> {
    if let Some(constraints) = leaf.basic_constraints()? {
        ensure!(!constraints.value.ca, "leaf has basicConstraints cA=true");
    }
    Ok(())
}

fn check_leaf_key_usage(leaf: &X509Certificate<'_>) -> anyhow::Result<()> {
    let key_usage = leaf
        .key_usage()?
        .context("leaf has no keyUsage extension")?;
    ensure!(key_usage.critical, "leaf keyUsage is not critical");
    ensure!(
        key_usage.value.digital_signature(),
        "leaf lacks digitalSignature"
    );
    ensure!(!key_usage.value.key_cert_sign(), "leaf sets keyCertSign");
    ensure!(!key_usage.value.crl_sign(), "leaf sets cRLSign");

    if let Some(extended) = leaf.extended_key_usage()? {
        ensure!(
            extended.value.server_auth && extended.value.client_auth,
            "leaf extendedKeyUsage must hold both serverAuth and clientAuth"
        );
    }
    Ok(())
}
