//! TLS client verification of a peer's X509-SVID by SPIFFE ID instead of DNS name.
//!
//! An agent connects to the server by address and expects the server's SPIFFE ID
//! (`spiffe://<td>/spire/server`) in the leaf's URI SAN. DNS names and IP SANs play no part.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, DigitallySignedStruct, Error as TlsError, OtherError, RootCertStore,
    SignatureScheme,
};
use spiffe::SpiffeId;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ids::redacted_agent_id;

/// Error from reading a certificate's SPIFFE ID or matching it against the expected one.
///
/// Debug prints the message, because rustls shows a custom certificate error through Debug.
#[derive(Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdCheckError {
    /// The certificate is not valid DER X.509.
    #[error("certificate is not valid X.509 DER")]
    Malformed,
    /// The certificate has no URI SAN or more than one, so it is no X509-SVID.
    #[error("certificate has {0} URI SANs, an X509-SVID must have exactly one")]
    UriSanCount(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("certificate URI SAN {0:?} is not a valid SPIFFE ID")]
    InvalidSpiffeId(String),
    /// The leaf names another SPIFFE ID than the expected one. Join tokens in agent IDs are
    /// redacted.
    #[error("certificate SPIFFE ID is {presented}, expected {expected}")]
    Mismatch {
        /// SPIFFE ID the caller requires.
        expected: String,
        /// SPIFFE ID in the certificate.
        presented: String,
    },
}

impl fmt::Debug for SpiffeIdCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error from building a [`SpiffeServerVerifier`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierError {
    /// The bundle contains no certificate, so no server could ever be trusted.
    #[error("trust bundle is empty")]
    EmptyBundle,
    /// A bundle certificate cannot serve as a trust anchor.
    #[error("trust bundle certificate {index} is not a usable X.509 CA certificate")]
    InvalidAuthority {
        /// Position of the certificate in the bundle.
        index: usize,
        /// The rustls error.
        #[source]
        source: TlsError,
    },
}

/// Verifies a server's X509-SVID chain against a trust bundle and requires one SPIFFE ID.
///
/// The chain must lead to a bundle certificate and be valid now. The leaf must carry exactly one
/// URI SAN, equal to the expected SPIFFE ID. The server name the client dialled is ignored.
pub struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected_id: SpiffeId,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Accepts any server certificate that names the expected SPIFFE ID, without checking its chain.
///
/// Only for an agent's first attestation with `--insecure-bootstrap`, when it has no bundle yet.
/// The handshake signature is still checked, so the peer has the key of the certificate it
/// shows, but anyone can make such a certificate: the connection is open to an active attacker.
pub struct InsecureBootstrapVerifier {
    expected_id: SpiffeId,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Returns the SPIFFE ID in the single URI SAN of `cert`.
///
/// # Errors
///
/// [`SpiffeIdCheckError::Malformed`] for bad DER, [`SpiffeIdCheckError::UriSanCount`] unless
/// there is exactly one URI SAN, [`SpiffeIdCheckError::InvalidSpiffeId`] when it is no SPIFFE ID.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, SpiffeIdCheckError> {
    let (_, parsed) =
        X509Certificate::from_der(cert.as_ref()).map_err(|_| SpiffeIdCheckError::Malformed)?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|_| SpiffeIdCheckError::Malformed)?;
    let uris: Vec<&str> = san
        .map(|extension| {
            extension
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();

    let [uri] = uris.as_slice() else {
        return Err(SpiffeIdCheckError::UriSanCount(uris.len()));
    };
    crate::ids::parse_spiffe_id(uri)
        .map_err(|_| SpiffeIdCheckError::InvalidSpiffeId((*uri).to_owned()))
}

/// Checks that `cert` carries exactly one URI SAN and that it equals `expected`.
///
/// # Errors
///
/// The errors of [`spiffe_id_of`], and [`SpiffeIdCheckError::Mismatch`] for another ID.
pub fn check_spiffe_id(
    cert: &CertificateDer<'_>,
    expected: &SpiffeId,
) -> Result<(), SpiffeIdCheckError> {
    let presented = spiffe_id_of(cert)?;
    if &presented != expected {
        return Err(SpiffeIdCheckError::Mismatch {
            expected: redacted_agent_id(expected),
            presented: redacted_agent_id(&presented),
        });
    }
    Ok(())
}

// === impl SpiffeServerVerifier ===

impl SpiffeServerVerifier {
    /// Creates a verifier that trusts the CA certificates in `bundle` and requires `expected_id`.
    ///
    /// # Errors
    ///
    /// [`VerifierError::EmptyBundle`] for an empty bundle, [`VerifierError::InvalidAuthority`]
    /// when a bundle certificate cannot be a trust anchor.
    pub fn new(
        bundle: &[CertificateDer<'static>],
        expected_id: SpiffeId,
    ) -> Result<Self, VerifierError> {
        if bundle.is_empty() {
            return Err(VerifierError::EmptyBundle);
        }
        let mut roots = RootCertStore::empty();
        for (index, authority) in bundle.iter().enumerate() {
            roots
                .add(authority.clone())
                .map_err(|source| VerifierError::InvalidAuthority { index, source })?;
        }
        Ok(Self {
            roots: Arc::new(roots),
            expected_id,
            algorithms: ring_algorithms(),
        })
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        check_spiffe_id(end_entity, &self.expected_id).map_err(invalid_certificate)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("authorities", &self.roots.len())
            .field("expected_id", &self.expected_id)
            .finish()
    }
}

// === impl InsecureBootstrapVerifier ===

impl InsecureBootstrapVerifier {
    /// Creates a verifier that checks only the SPIFFE ID and the handshake signature.
    pub fn insecure_new(expected_id: SpiffeId) -> Self {
        Self {
            expected_id,
            algorithms: ring_algorithms(),
        }
    }
}

impl ServerCertVerifier for InsecureBootstrapVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        check_spiffe_id(end_entity, &self.expected_id).map_err(invalid_certificate)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl fmt::Debug for InsecureBootstrapVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InsecureBootstrapVerifier")
            .field("expected_id", &self.expected_id)
            .finish()
    }
}

fn ring_algorithms() -> WebPkiSupportedAlgorithms {
    let provider: CryptoProvider = ring::default_provider();
    provider.signature_verification_algorithms
}

fn invalid_certificate(error: SpiffeIdCheckError) -> TlsError {
    TlsError::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

#[cfg(test)]
mod tests;
