//! The JWK Set OIDC relying parties read: the bundle's JWT authorities as plain signing keys.

use serde_json::Value;
use signet_core::jwk;
use signet_proto::spire::api::types::Bundle;

/// The `use` value OIDC clients expect on signature keys (RFC 7517 section 4.2). Some clients,
/// PyJWT's `PyJWKClient` among them, skip keys with another `use` such as SPIFFE's `jwt-svid`.
const SIGNATURE_USE: &str = "sig";

/// Builds the JWK Set of the JWT authorities in `bundle` that have not expired at `now` (Unix
/// seconds).
///
/// Each key has `kid` and `"use":"sig"`. EC keys also get `alg` (`ES256` on P-256, `ES384` on
/// P-384). RSA keys get none, because the bundle does not say whether the server signs with
/// RS256 or PS256, and a wrong `alg` would make clients reject valid tokens. Tainted keys stay,
/// because tokens they signed remain valid until they expire.
pub fn jwks_from_bundle(bundle: &Bundle, now: i64) -> Value {
    let keys: Vec<(String, Vec<u8>)> = bundle
        .jwt_authorities
        .iter()
        .filter(|key| key.expires_at == 0 || key.expires_at > now)
        .map(|key| (key.key_id.clone(), key.public_key.clone()))
        .collect();
    let mut jwks = jwk::jwks(&keys, Some(SIGNATURE_USE));
    if let Some(entries) = jwks.get_mut("keys").and_then(Value::as_array_mut) {
        entries.iter_mut().for_each(add_algorithm);
    }
    jwks
}

/// Returns the key IDs of a JWK Set, for logging which keys are published.
pub fn key_ids(jwks: &Value) -> Vec<String> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|key| key.get("kid").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

fn add_algorithm(key: &mut Value) {
    let algorithm = match key.get("crv").and_then(Value::as_str) {
        Some("P-256") => "ES256",
        Some("P-384") => "ES384",
        _ => return,
    };
    if let Some(members) = key.as_object_mut() {
        members.insert("alg".to_owned(), Value::String(algorithm.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PublicKeyData};
    use signet_proto::spire::api::types::JwtKey;

    use super::*;

    fn jwt_key(key_id: &str, der: Vec<u8>, expires_at: i64) -> JwtKey {
        JwtKey {
            public_key: der,
            key_id: key_id.to_owned(),
            expires_at,
            ..JwtKey::default()
        }
    }

    fn bundle_of(keys: Vec<JwtKey>) -> Bundle {
        Bundle {
            trust_domain: "example.org".to_owned(),
            jwt_authorities: keys,
            ..Bundle::default()
        }
    }

    fn public_key_der(algorithm: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        KeyPair::generate_for(algorithm)
            .unwrap()
            .subject_public_key_info()
    }

    #[test]
    fn ec_keys_get_sig_use_and_algorithm() {
        let bundle = bundle_of(vec![
            jwt_key("p256", public_key_der(&PKCS_ECDSA_P256_SHA256), 0),
            jwt_key("p384", public_key_der(&PKCS_ECDSA_P384_SHA384), 0),
        ]);
        let jwks = jwks_from_bundle(&bundle, 1_000);

        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["kid"], "p256");
        assert_eq!(keys[0]["use"], "sig");
        assert_eq!(keys[0]["alg"], "ES256");
        assert_eq!(keys[0]["kty"], "EC");
        assert_eq!(keys[1]["alg"], "ES384");
        assert_eq!(keys[1]["crv"], "P-384");
    }

    #[test]
    fn expired_keys_are_left_out() {
        let der = public_key_der(&PKCS_ECDSA_P256_SHA256);
        let bundle = bundle_of(vec![
            jwt_key("expired", der.clone(), 999),
            jwt_key("at-now", der.clone(), 1_000),
            jwt_key("valid", der, 1_001),
        ]);
        let jwks = jwks_from_bundle(&bundle, 1_000);
        assert_eq!(key_ids(&jwks), ["valid"]);
    }

    #[test]
    fn unreadable_keys_are_left_out() {
        let bundle = bundle_of(vec![
            jwt_key("garbage", vec![1, 2, 3], 0),
            jwt_key("", public_key_der(&PKCS_ECDSA_P256_SHA256), 0),
            jwt_key("good", public_key_der(&PKCS_ECDSA_P256_SHA256), 0),
        ]);
        assert_eq!(key_ids(&jwks_from_bundle(&bundle, 0)), ["good"]);
    }

    #[test]
    fn bundle_without_jwt_keys_gives_empty_set() {
        let jwks = jwks_from_bundle(&bundle_of(Vec::new()), 0);
        assert_eq!(jwks, serde_json::json!({ "keys": [] }));
    }

    #[test]
    fn jwks_has_no_private_members() {
        let bundle = bundle_of(vec![jwt_key(
            "p256",
            public_key_der(&PKCS_ECDSA_P256_SHA256),
            0,
        )]);
        let jwks = jwks_from_bundle(&bundle, 0);
        let mut members: Vec<&String> = jwks["keys"][0].as_object().unwrap().keys().collect();
        members.sort();
        assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    }
}
