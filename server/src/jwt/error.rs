//! Errors raised while loading, creating or using the JWT signing key.

use std::io;
use std::path::PathBuf;

use signet_core::audience::AudienceError;

/// An error from the JWT signing key.
///
/// Messages name paths, key IDs and SPIFFE IDs, never key material or tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The requested audience list is empty or past the limits every verifier accepts.
    #[error(transparent)]
    InvalidAudience(#[from] AudienceError),

    /// The requested TTL is zero or too large to add to the current time.
    #[error("invalid JWT-SVID TTL {ttl_seconds}s: use a TTL of at least one second")]
    InvalidTtl {
        /// The requested TTL in seconds.
        ttl_seconds: u64,
    },

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

    /// Group or others have permissions on a key file.
    #[error(
        "JWT signing key file {path} has mode {mode:o}, so other users may read it: run \
         `chmod 600 {path}`"
    )]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },

    /// The key has passed its notAfter time, so no token it signs would be valid.
    #[error(
        "the JWT signing key {key_id} expired at {expired_at}; restart the server to create a new key"
    )]
    KeyExpired {
        /// The key's `kid`.
        key_id: String,
        /// The key's notAfter time, in RFC 3339.
        expired_at: String,
    },

    /// A key could not be generated or encoded.
    #[error("failed to generate a {key_type} JWT signing key: {reason}")]
    KeyGeneration {
        /// The key type, as written in configuration.
        key_type: String,
        /// The key library's error message.
        reason: String,
    },

    /// Encoding the claims or signing the token failed. Neither serde_json's nor ring's error
    /// adds detail worth reporting here.
    #[error("failed to sign a JWT-SVID with key {key_id}")]
    Signing {
        /// The key's `kid`.
        key_id: String,
    },

    /// The SPIFFE ID is outside the server's trust domain or has no path.
    #[error("invalid JWT-SVID subject {spiffe_id}: {reason}")]
    InvalidSubject {
        /// The rejected SPIFFE ID.
        spiffe_id: String,
        /// Description of the problem.
        reason: String,
    },

    /// A key type name in configuration is not one the server supports.
    #[error("unknown JWT key type \"{value}\": valid key types are es256, rs256 and ps256")]
    UnknownKeyType {
        /// The rejected name.
        value: String,
    },
}

impl JwtError {
    /// Returns true when the caller's request (audience, subject or TTL) is at fault, so the same
    /// request fails again. Returns false for failures of the key itself.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Self::InvalidAudience(_) | Self::InvalidSubject { .. } | Self::InvalidTtl { .. }
        )
    }
}
