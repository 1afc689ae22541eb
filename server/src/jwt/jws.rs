//! JWS compact serialization (RFC 7515 section 7.1) of JWT-SVIDs, signed with a ring key pair that
//! is parsed once when the key is loaded or generated.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::error::Unspecified;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding,
    RsaKeyPair,
};
use serde::Serialize;

use super::JwtKeyType;

/// A private key parsed into ring's signing form for the JWS algorithm of its key type.
///
/// ring's key pairs are `Send` and `Sync`, so one value serves all concurrent requests.
pub(super) struct JwsSigningKey {
    key_pair: KeyPair,
    rng: SystemRandom,
}

enum KeyPair {
    /// ES256, whose JWS signature is R and S as two 32-byte big-endian integers
    /// (RFC 7518 section 3.4), the form ring calls "fixed".
    Ecdsa(EcdsaKeyPair),
    /// RS256 or PS256, which differ only in `padding`.
    Rsa {
        key_pair: RsaKeyPair,
        padding: &'static dyn RsaEncoding,
    },
}

/// The JOSE header of a JWT-SVID. The field order is the one jsonwebtoken 11 writes, so tokens
/// keep the header bytes they had when the server signed with that library.
#[derive(Serialize)]
struct JoseHeader<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
}

impl JwsSigningKey {
    /// Parses an unencrypted PKCS#8 v1 DER private key for `key_type`. An ECDSA key must contain
    /// its public key, as keys that rcgen and ring generate do.
    ///
    /// # Errors
    ///
    /// Returns the reason when ring rejects the key for `key_type`.
    pub(super) fn from_pkcs8(key_type: JwtKeyType, pkcs8_der: &[u8]) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let rsa = |padding: &'static dyn RsaEncoding| {
            RsaKeyPair::from_pkcs8(pkcs8_der).map(|key_pair| KeyPair::Rsa { key_pair, padding })
        };
        let key_pair = match key_type {
            JwtKeyType::Es256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8_der, &rng)
                    .map(KeyPair::Ecdsa)
            }
            JwtKeyType::Ps256 => rsa(&RSA_PSS_SHA256),
            JwtKeyType::Rs256 => rsa(&RSA_PKCS1_SHA256),
        }
        .map_err(|rejected| format!("ring rejected the {key_type} key: {rejected}"))?;
        Ok(Self { key_pair, rng })
    }

    /// Signs the JWS signing input in `token` (the encoded header and claims joined by a dot) and
    /// appends a dot and the encoded signature, completing the compact serialization.
    fn append_signature(&self, token: &mut String) -> Result<(), Unspecified> {
        let message = token.as_bytes();
        let signature = match &self.key_pair {
            KeyPair::Ecdsa(key_pair) => key_pair.sign(&self.rng, message)?.as_ref().to_vec(),
            KeyPair::Rsa { key_pair, padding } => {
                let mut signature = vec![0; key_pair.public().modulus_len()];
                key_pair.sign(*padding, &self.rng, message, &mut signature)?;
                signature
            }
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, token);
        Ok(())
    }
}

/// Returns the base64url-encoded JOSE header for tokens signed by the `key_type` key `key_id`:
/// `typ` "JWT", `alg` and `kid`, as the JWT-SVID standard allows.
pub(super) fn encode_header(key_type: JwtKeyType, key_id: &str) -> String {
    let header = JoseHeader {
        typ: "JWT",
        alg: key_type.algorithm(),
        kid: key_id,
    };
    // serde_json fails only on non-string map keys or failing Serialize impls, and this struct
    // has neither.
    let json = serde_json::to_vec(&header).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Returns the compact JWS of `claims_json` under `encoded_header` (from [`encode_header`]),
/// signed with `key`.
///
/// # Errors
///
/// [`Unspecified`] when ring fails to sign, for example because the system random source fails.
pub(super) fn encode(
    encoded_header: &str,
    claims_json: &[u8],
    key: &JwsSigningKey,
) -> Result<String, Unspecified> {
    let mut token = format!("{encoded_header}.");
    URL_SAFE_NO_PAD.encode_string(claims_json, &mut token);
    key.append_signature(&mut token)?;
    Ok(token)
}
