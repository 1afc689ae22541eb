//! The server's certificate authority: its signing key and certificate, kept in the data
//! directory, and the signing of X509-SVIDs from CSRs.
//!
//! By default the CA is a self-signed root. With an upstream CA configured, the server creates an
//! intermediate CA signed by the upstream key, and the trust bundle contains the upstream root(s).

// Certificate and CSR bytes come from peers and files, so a bad index must not panic the server.
#![warn(clippy::indexing_slicing)]

mod authority;
mod error;
mod key;
mod signer;
mod upstream;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use spiffe::TrustDomain;

pub use authority::CertificateAuthority;
pub use error::CaError;
pub use key::KeyType;
pub use signer::certificate_serial_number;

/// Settings for [`CertificateAuthority::load_or_create`].
#[derive(Clone, Debug)]
pub struct CaConfig {
    /// The trust domain the CA signs X509-SVIDs for.
    pub trust_domain: TrustDomain,
    /// The directory that contains this CA's key and certificate.
    pub dir: PathBuf,
    /// Validity period of a newly created CA certificate.
    pub ca_ttl: Duration,
    /// Key type of a newly created CA key.
    pub key_type: KeyType,
    /// The upstream CA that signs the server's intermediate CA, if any.
    pub upstream: Option<UpstreamCa>,
}

/// Files of an upstream CA that signs the server's intermediate CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamCa {
    /// PEM certificate chain: the upstream signing certificate first, then any certificates up to
    /// and including its root.
    pub cert_path: PathBuf,
    /// PEM private key of the first certificate in `cert_path` (PKCS#8, SEC1 or PKCS#1).
    pub key_path: PathBuf,
}

/// An X509-SVID signed by [`CertificateAuthority::sign_x509_svid`].
#[derive(Clone, Debug)]
pub struct SignedX509Svid {
    /// DER certificates, leaf first, then every intermediate needed to reach the trust bundle.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf serial number in lower-case hex without leading zeros, as returned by
    /// [`certificate_serial_number`].
    pub serial_number: String,
    /// The leaf's notAfter time.
    pub expires_at: SystemTime,
    /// The ID of the CA that signed it, as [`CertificateAuthority::authority_id`] returns it.
    pub authority_id: String,
}

/// Key and certificate chain for the server's own TLS endpoint.
pub struct ServerIdentity {
    /// DER certificates, leaf first, then every intermediate needed to reach the trust bundle.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// The leaf's notAfter time.
    pub expires_at: SystemTime,
}

// === impl ServerIdentity ===

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("chain_len", &self.chain.len())
            .field("key", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests;
