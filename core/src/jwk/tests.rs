use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PublicKeyData};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use super::*;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap()
}

/// Signs a token with `encoding_key` and verifies it with a key built by `jsonwebtoken` from
/// our JWK, so the JWK is checked by an implementation we did not write.
fn assert_jwk_verifies(jwk: &Value, encoding_key: &EncodingKey, algorithm: Algorithm) {
    let claims = json!({ "sub": "spiffe://example.org/workload", "exp": 4_000_000_000_u64 });
    let token = jsonwebtoken::encode(&Header::new(algorithm), &claims, encoding_key).unwrap();

    let parsed: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let decoding_key = DecodingKey::from_jwk(&parsed).unwrap();
    let mut validation = Validation::new(algorithm);
    validation.validate_aud = false;
    let decoded = jsonwebtoken::decode::<Value>(&token, &decoding_key, &validation).unwrap();
    assert_eq!(decoded.claims["sub"], "spiffe://example.org/workload");
}

#[test]
fn p256_key_gives_ec_jwk() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let point = key.public_key_raw();

    let jwk = jwk_from_public_key_der(&key.subject_public_key_info(), "kid-1").unwrap();

    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["x"], b64(&point[1..33]));
    assert_eq!(jwk["y"], b64(&point[33..]));
    assert_eq!(jwk["kid"], "kid-1");
    assert_eq!(
        jwk.as_object().unwrap().len(),
        5,
        "unexpected members in {jwk}"
    );
    let encoding_key = EncodingKey::from_ec_der(&key.serialize_der());
    assert_jwk_verifies(&jwk, &encoding_key, Algorithm::ES256);
}

#[test]
fn p384_key_gives_ec_jwk() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let point = key.public_key_raw();

    let jwk = jwk_from_public_key_der(&key.subject_public_key_info(), "kid-384").unwrap();

    assert_eq!(jwk["crv"], "P-384");
    assert_eq!(jwk["x"], b64(&point[1..49]));
    assert_eq!(jwk["y"], b64(&point[49..]));
    let encoding_key = EncodingKey::from_ec_der(&key.serialize_der());
    assert_jwk_verifies(&jwk, &encoding_key, Algorithm::ES384);
}

#[test]
fn rsa_key_gives_rsa_jwk() {
    let key = rsa_key();
    let der = key.to_public_key().to_public_key_der().unwrap();

    let jwk = jwk_from_public_key_der(der.as_bytes(), "kid-rsa").unwrap();

    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["n"], b64(&key.n().to_bytes_be()));
    assert_eq!(jwk["e"], "AQAB");
    assert_eq!(jwk["kid"], "kid-rsa");
    assert_eq!(
        jwk.as_object().unwrap().len(),
        4,
        "unexpected members in {jwk}"
    );
    let encoding_key = EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes());
    assert_jwk_verifies(&jwk, &encoding_key, Algorithm::RS256);
    assert_jwk_verifies(&jwk, &encoding_key, Algorithm::PS256);
}

#[test]
fn empty_key_id_is_rejected() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();

    let error = jwk_from_public_key_der(&key.subject_public_key_info(), "").unwrap_err();

    assert_eq!(error, JwkError::EmptyKeyId);
}

#[test]
fn malformed_der_is_rejected() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut trailing = key.subject_public_key_info();
    trailing.push(0);
    let truncated = &key.subject_public_key_info()[..40];

    for der in [&b"not a key"[..], &trailing, truncated, &[]] {
        let error = jwk_from_public_key_der(der, "kid").unwrap_err();
        assert_eq!(error, JwkError::InvalidPublicKey("\"kid\"".to_owned()));
    }
}

#[test]
fn ec_point_not_uncompressed_is_rejected() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut der = key.subject_public_key_info();
    // The point is the last 65 bytes of the DER, and its first byte is the SEC 1 form marker.
    let marker = der.len() - 65;
    der[marker] = 0x02;

    let error = jwk_from_public_key_der(&der, "kid").unwrap_err();

    let expected = JwkError::InvalidEcPoint {
        key: "\"kid\"".to_owned(),
        curve: "P-256",
    };
    assert_eq!(error, expected);
}

#[test]
fn ed25519_key_is_unsupported() {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();

    let error = jwk_from_public_key_der(&key.subject_public_key_info(), "kid").unwrap_err();

    let expected = JwkError::UnsupportedAlgorithm {
        key: "\"kid\"".to_owned(),
        algorithm: "1.3.101.112".to_owned(),
    };
    assert_eq!(error, expected);
}

#[test]
fn key_members_have_no_kid() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();

    let members = public_key_members(&key.subject_public_key_info(), "of the CA").unwrap();
    let error = public_key_members(b"garbage", "of the CA").unwrap_err();

    assert_eq!(members["kty"], "EC");
    assert!(members.get("kid").is_none(), "{members:?}");
    let message = "public key of the CA is not a valid DER SubjectPublicKeyInfo";
    assert_eq!(error.to_string(), message);
}

#[test]
fn jwks_marks_usage_when_asked() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let keys = vec![("a".to_owned(), key.subject_public_key_info())];

    let marked = jwks(&keys, Some("jwt-svid"));
    let plain = jwks(&keys, None);

    assert_eq!(marked["keys"][0]["use"], "jwt-svid");
    assert_eq!(marked["keys"][0]["kid"], "a");
    assert!(plain["keys"][0].get("use").is_none(), "{plain}");
    assert_eq!(
        plain.as_object().unwrap().len(),
        1,
        "unexpected members in {plain}"
    );
}

#[test]
fn jwks_leaves_out_unreadable_keys() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let keys = vec![
        ("bad".to_owned(), b"garbage".to_vec()),
        ("good".to_owned(), key.subject_public_key_info()),
    ];

    let set = jwks(&keys, None);

    let kids: Vec<&Value> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(kids, [&json!("good")]);
}

#[test]
fn jwks_of_no_keys_is_empty_set() {
    assert_eq!(jwks(&[], None), json!({ "keys": [] }));
}

#[test]
fn base64url_uint_drops_leading_zeros() {
    let cases: [(&str, &[u8], &str); 4] = [
        ("sign byte", &[0x00, 0x80, 0x01], "gAE"),
        ("no padding byte", &[0x01, 0x00, 0x01], "AQAB"),
        ("several zeros", &[0x00, 0x00, 0x01], "AQ"),
        ("zero", &[0x00], "AA"),
    ];
    for (name, input, expected) in cases {
        assert_eq!(base64url_uint(input), expected, "case {name}");
    }
}
