//! JWT-SVID signing: the server's JWT signing key, kept in the data directory, and the signing
//! of JWT-SVIDs with it.
//!
//! The key's public half is published in the trust bundle (`jwt_authorities`) before it signs
//! anything, and no token it signs outlives it: each token's `exp` is cut to the key's notAfter.

mod error;
mod jws;
mod key;
mod signer;

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

pub use error::JwtError;
pub use key::JwtSigningKey;
pub use signer::{JwtSigner, JwtSvidClaims};

/// The JWS algorithm, and so the key type, of the JWT signing key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JwtKeyType {
    /// ECDSA on NIST P-256 with SHA-256.
    #[default]
    Es256,
    /// RSASSA-PSS with SHA-256 on a 2048-bit RSA key.
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 on a 2048-bit RSA key.
    Rs256,
}

/// A signed JWT-SVID.
pub struct SignedJwtSvid {
    /// The token in JWS compact serialization. It is a bearer credential: never log it.
    pub token: String,
    /// The `iat` claim.
    pub issued_at: SystemTime,
    /// The `exp` claim.
    pub expires_at: SystemTime,
}

// === impl JwtKeyType ===

impl JwtKeyType {
    /// Returns the `alg` header value, the JWS algorithm name of RFC 7518 section 3.1.
    pub fn algorithm(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Ps256 => "PS256",
            Self::Rs256 => "RS256",
        }
    }

    fn is_rsa(self) -> bool {
        matches!(self, Self::Ps256 | Self::Rs256)
    }
}

impl FromStr for JwtKeyType {
    type Err = JwtError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "es256" => Ok(Self::Es256),
            "ps256" => Ok(Self::Ps256),
            "rs256" => Ok(Self::Rs256),
            _ => Err(JwtError::UnknownKeyType {
                value: value.to_owned(),
            }),
        }
    }
}

impl fmt::Display for JwtKeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Es256 => "es256",
            Self::Ps256 => "ps256",
            Self::Rs256 => "rs256",
        })
    }
}

// === impl SignedJwtSvid ===

impl fmt::Debug for SignedJwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedJwtSvid")
            .field("token", &"[redacted]")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests;
