//! JSON Web Keys (RFC 7517) for JWT-SVID signing keys, built from their PKIX public key DER.
//!
//! The SPIRE API carries JWT authorities as `SubjectPublicKeyInfo` DER. The SPIFFE bundle
//! format, the Workload API's JWT bundles and OIDC discovery all publish them as a JWK Set, so
//! this module is the one place that turns the first form into the second. Only public parts
//! are ever emitted: the input has no private key to leak.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Error from turning a public key into a JWK.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// The key ID is empty. Every published key needs a `kid` so verifiers can pick it.
    #[error("JWT signing key has an empty key ID")]
    EmptyKeyId,
    /// An EC key is not an uncompressed point of the size its curve requires.
    #[error("EC public key {key} is not an uncompressed {curve} point")]
    InvalidEcPoint {
        /// The rejected key: its quoted key ID, or the name the caller gave it.
        key: String,
        /// JWK curve name (`P-256` or `P-384`).
        curve: &'static str,
    },
    /// The bytes are not a DER `SubjectPublicKeyInfo`, or its key does not parse.
    #[error("public key {0} is not a valid DER SubjectPublicKeyInfo")]
    InvalidPublicKey(String),
    /// The key is neither RSA nor EC on P-256 or P-384.
    #[error(
        "public key {key} uses unsupported algorithm {algorithm}: expected RSA, EC P-256 or EC P-384"
    )]
    UnsupportedAlgorithm {
        /// The rejected key: its quoted key ID, or the name the caller gave it.
        key: String,
        /// Dotted OID of the key algorithm, or of the curve for EC keys.
        algorithm: String,
    },
}

/// Builds the public JWK for a PKIX `SubjectPublicKeyInfo` DER key.
///
/// EC keys on P-256 and P-384 give `{"kty":"EC","crv":…,"x":…,"y":…,"kid":…}` and RSA keys give
/// `{"kty":"RSA","n":…,"e":…,"kid":…}`, with big-endian integers in unpadded base64url and no
/// leading zero bytes (RFC 7518 section 6).
///
/// # Errors
///
/// [`JwkError::EmptyKeyId`] for an empty `key_id`, [`JwkError::InvalidPublicKey`] when the DER
/// does not parse, [`JwkError::InvalidEcPoint`] for a compressed or mis-sized EC point, and
/// [`JwkError::UnsupportedAlgorithm`] for other key types and curves.
pub fn jwk_from_public_key_der(der: &[u8], key_id: &str) -> Result<Value, JwkError> {
    if key_id.is_empty() {
        return Err(JwkError::EmptyKeyId);
    }
    let mut jwk = public_key_members(der, &format!("{key_id:?}"))?;
    jwk.insert("kid".to_owned(), Value::String(key_id.to_owned()));
    Ok(Value::Object(jwk))
}

/// Builds the members of a public JWK that describe a PKIX `SubjectPublicKeyInfo` DER key:
/// `kty`, then `crv`, `x` and `y`, or `n` and `e`, as [`jwk_from_public_key_der`] does but
/// without `kid`. It serves JWKs that identify their key otherwise, such as the x509-svid keys
/// of a SPIFFE bundle, which carry their certificate in `x5c`.
///
/// # Errors
///
/// As for [`jwk_from_public_key_der`], with `key_name` naming the key in the error.
pub fn public_key_members(der: &[u8], key_name: &str) -> Result<Map<String, Value>, JwkError> {
    let invalid = || JwkError::InvalidPublicKey(key_name.to_owned());
    let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|_| invalid())?;
    if !rest.is_empty() {
        return Err(invalid());
    }
    match spki.parsed().map_err(|_| invalid())? {
        PublicKey::RSA(rsa) => Ok(rsa_members(rsa.modulus, rsa.exponent)),
        PublicKey::EC(point) => ec_members(&spki, point.data(), key_name),
        _ => Err(unsupported(
            key_name,
            spki.algorithm.algorithm.to_id_string(),
        )),
    }
}

/// Builds a JWK Set (`{"keys":[…]}`) from `(key ID, SubjectPublicKeyInfo DER)` pairs.
///
/// With `usage` set, each key gets a `"use"` member: the SPIFFE bundle format marks JWT
/// authorities with `"use":"jwt-svid"`. The Workload API's JWT bundles and OIDC discovery
/// documents are plain JWK Sets and pass `None`.
///
/// A key that cannot be converted is left out and logged at warn with its key ID, so a
/// verifier rejects the tokens it signed rather than trusting something unreadable. Keys come
/// from this server's own datastore, so that only happens on corrupted data.
pub fn jwks(keys: &[(String, Vec<u8>)], usage: Option<&str>) -> Value {
    let entries: Vec<Value> = keys
        .iter()
        .filter_map(|(key_id, der)| match jwk_from_public_key_der(der, key_id) {
            Ok(jwk) => Some(with_usage(jwk, usage)),
            Err(error) => {
                tracing::warn!(%error, key_id, "Leaving unreadable JWT signing key out of JWK Set");
                None
            }
        })
        .collect();
    json!({ "keys": entries })
}

fn with_usage(mut jwk: Value, usage: Option<&str>) -> Value {
    if let (Some(usage), Some(members)) = (usage, jwk.as_object_mut()) {
        members.insert("use".to_owned(), Value::String(usage.to_owned()));
    }
    jwk
}

fn rsa_members(modulus: &[u8], exponent: &[u8]) -> Map<String, Value> {
    let mut members = Map::new();
    members.insert("kty".to_owned(), json!("RSA"));
    members.insert("n".to_owned(), json!(base64url_uint(modulus)));
    members.insert("e".to_owned(), json!(base64url_uint(exponent)));
    members
}

fn ec_members(
    spki: &SubjectPublicKeyInfo<'_>,
    point: &[u8],
    key_name: &str,
) -> Result<Map<String, Value>, JwkError> {
    let curve_oid = spki
        .algorithm
        .parameters()
        .and_then(|parameters| parameters.as_oid().ok());
    let (curve, coordinate_len) = match curve_oid {
        Some(oid) if oid == OID_EC_P256 => ("P-256", 32),
        Some(oid) if oid == OID_NIST_EC_P384 => ("P-384", 48),
        Some(oid) => return Err(unsupported(key_name, oid.to_id_string())),
        None => {
            return Err(unsupported(
                key_name,
                OID_KEY_TYPE_EC_PUBLIC_KEY.to_id_string(),
            ));
        }
    };

    // SEC 1 uncompressed form: 0x04, then x and y at the curve's full width.
    let coordinates = match point.split_first() {
        Some((0x04, coordinates)) if coordinates.len() == 2 * coordinate_len => coordinates,
        _ => {
            return Err(JwkError::InvalidEcPoint {
                key: key_name.to_owned(),
                curve,
            });
        }
    };
    let (x, y) = coordinates.split_at(coordinate_len);

    let mut members = Map::new();
    members.insert("kty".to_owned(), json!("EC"));
    members.insert("crv".to_owned(), json!(curve));
    members.insert("x".to_owned(), json!(URL_SAFE_NO_PAD.encode(x)));
    members.insert("y".to_owned(), json!(URL_SAFE_NO_PAD.encode(y)));
    Ok(members)
}

/// Encodes an unsigned big-endian integer as RFC 7518 Base64urlUInt: DER may add a zero byte to
/// keep the sign bit clear, and the JWK form must have none.
fn base64url_uint(bytes: &[u8]) -> String {
    let first_nonzero = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    let minimal = bytes.get(first_nonzero..).unwrap_or_default();
    if minimal.is_empty() {
        return URL_SAFE_NO_PAD.encode([0]);
    }
    URL_SAFE_NO_PAD.encode(minimal)
}

fn unsupported(key_name: &str, algorithm: String) -> JwkError {
    JwkError::UnsupportedAlgorithm {
        key: key_name.to_owned(),
        algorithm,
    }
}

#[cfg(test)]
mod tests;
