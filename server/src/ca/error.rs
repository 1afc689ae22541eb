//! Errors raised while loading, creating or using the server's certificate authority.

use std::io;
use std::path::PathBuf;

/// An error from the certificate authority.
///
/// Messages name paths, SPIFFE IDs and other public values, never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The CA certificate and key in the data directory or the upstream files could not be used.
    #[error("invalid CA certificate {path}: {reason}")]
    CaCertificate {
        /// The certificate file.
        path: PathBuf,
        /// Description of the problem.
        reason: String,
    },

    /// The CA is past its notAfter time, so nothing it signs would verify.
    #[error("the CA expired at {expired_at}; restart the server to create a new CA")]
    CaExpired {
        /// The CA certificate's notAfter time, in RFC 3339.
        expired_at: String,
    },

    /// Building or signing a certificate failed inside the certificate library.
    #[error("failed to build the {what} certificate")]
    Certificate {
        /// Kind of certificate being built ("CA", "X509-SVID", ...).
        what: &'static str,
        /// The certificate library's error.
        #[source]
        source: rcgen::Error,
    },

    /// The CSR signature does not verify against the public key it carries, so the caller has not
    /// proven possession of the private key.
    #[error("the CSR signature does not verify against its public key")]
    CsrSignature,

    /// A file or directory under the data directory could not be read or written.
    #[error("failed to {action} {path}")]
    Io {
        /// Operation that failed ("read", "write", "create directory").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// A certificate passed in is not a DER X.509 certificate.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// The parser's error message.
        reason: String,
    },

    /// The X509-SVID request is invalid: the CSR is not a DER PKCS#10 request or carries a key the
    /// CA does not sign, the SPIFFE ID is outside the CA's trust domain, or a DNS name is invalid.
    #[error("invalid X509-SVID request: {reason}")]
    InvalidCsr {
        /// Description of the problem.
        reason: String,
    },

    /// The requested TTL is zero or does not fit in a certificate validity period.
    #[error(
        "invalid TTL {ttl_seconds}s: use a TTL of at least one second that ends before year 9999"
    )]
    InvalidTtl {
        /// The requested TTL in seconds.
        ttl_seconds: u64,
    },

    /// A key could not be generated.
    #[error("failed to generate a {key_type} key: {reason}")]
    KeyGeneration {
        /// The key type, as written in configuration ("ec-p256", ...).
        key_type: String,
        /// The key library's error message.
        reason: String,
    },

    /// A private key file could not be parsed or its key type is not supported.
    #[error("invalid private key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// Description of the problem, never the key itself.
        reason: String,
    },

    /// A private key file grants access to group or others, so another user may have read it.
    #[error(
        "private key file {} has mode {mode:03o}, which lets group or others access it: \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },

    /// A key type name in configuration is not one the CA supports.
    #[error("unknown key type \"{value}\": valid key types are ec-p256, ec-p384 and rsa-2048")]
    UnknownKeyType {
        /// The rejected name.
        value: String,
    },

    /// The upstream CA certificate or key cannot sign the server's intermediate CA.
    #[error("invalid upstream CA {path}: {reason}")]
    Upstream {
        /// The upstream certificate or key file.
        path: PathBuf,
        /// Description of the problem.
        reason: String,
    },
}

impl CaError {
    /// Returns true when the caller's request (CSR, names or TTL) is at fault. Such a request fails
    /// again unless it changes. Returns false for failures of the CA itself.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Self::CsrSignature | Self::InvalidCsr { .. } | Self::InvalidTtl { .. }
        )
    }
}
