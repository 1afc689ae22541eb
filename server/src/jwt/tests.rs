use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::Value;
use signet_core::jwk::jwk_from_public_key_der;
use spiffe::{SpiffeId, TrustDomain};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn signer(key: JwtSigningKey, issuer: Option<&str>) -> JwtSigner {
    JwtSigner::new(
        TrustDomain::new("example.org").unwrap(),
        issuer.map(str::to_owned),
        Duration::from_secs(300),
        key,
    )
}

fn workload_id() -> SpiffeId {
    SpiffeId::new("spiffe://example.org/workload").unwrap()
}

fn audience(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

/// Verifies `token` with the JWT library against the JWK built from the key's public DER, and
/// returns its claims.
fn verify(token: &str, key: &JwtSigningKey, expected_audience: &str) -> JwtSvidClaims {
    decode(token, key, expected_audience).unwrap()
}

fn decode(
    token: &str,
    key: &JwtSigningKey,
    expected_audience: &str,
) -> jsonwebtoken::errors::Result<JwtSvidClaims> {
    let jwk = jwk_from_public_key_der(key.public_key_der(), key.key_id()).unwrap();
    let jwk: Jwk = serde_json::from_value(jwk).unwrap();
    let algorithm: Algorithm = key.key_type().algorithm().parse().unwrap();
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&[expected_audience]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let decoding_key = DecodingKey::from_jwk(&jwk).unwrap();
    jsonwebtoken::decode::<JwtSvidClaims>(token, &decoding_key, &validation)
        .map(|token| token.claims)
}

fn header_bytes(token: &str) -> Vec<u8> {
    use base64::Engine;
    let encoded = token.split('.').next().unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap()
}

fn header_json(token: &str) -> Value {
    serde_json::from_slice(&header_bytes(token)).unwrap()
}

const KEY_TYPES: [JwtKeyType; 3] = [JwtKeyType::Es256, JwtKeyType::Rs256, JwtKeyType::Ps256];

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn token_verifies_for_each_key_type() {
    for (key_type, alg) in [
        (JwtKeyType::Es256, "ES256"),
        (JwtKeyType::Rs256, "RS256"),
        (JwtKeyType::Ps256, "PS256"),
    ] {
        let key = JwtSigningKey::generate(key_type, SystemTime::now() + HOUR).unwrap();
        let key_id = key.key_id().to_owned();
        let signer = signer(key, None);

        let svid = signer
            .sign(
                &workload_id(),
                &audience(&["spiffe://example.org/db"]),
                Duration::from_secs(300),
            )
            .unwrap();

        let header = header_json(&svid.token);
        let expected_header = serde_json::json!({ "alg": alg, "kid": key_id, "typ": "JWT" });
        assert_eq!(header, expected_header, "{key_type}");
        let claims = verify(&svid.token, signer.key(), "spiffe://example.org/db");
        assert_eq!(claims.sub, "spiffe://example.org/workload");
        assert_eq!(claims.aud, ["spiffe://example.org/db"]);
        assert_eq!(claims.exp, unix(svid.expires_at));
        assert_eq!(claims.iat, unix(svid.issued_at));
        assert_eq!(claims.exp - claims.iat, 300);
        assert_eq!(claims.iss, None);
    }
}

#[test]
fn header_bytes_match_jsonwebtoken() {
    for key_type in KEY_TYPES {
        let key = JwtSigningKey::generate(key_type, SystemTime::now() + HOUR).unwrap();
        let mut expected = Header::new(key_type.algorithm().parse().unwrap());
        expected.kid = Some(key.key_id().to_owned());
        expected.typ = Some("JWT".to_owned());
        let signer = signer(key, None);

        let svid = signer
            .sign(&workload_id(), &audience(&["db"]), HOUR)
            .unwrap();

        let expected = serde_json::to_vec(&expected).unwrap();
        assert_eq!(
            String::from_utf8(header_bytes(&svid.token)).unwrap(),
            String::from_utf8(expected).unwrap(),
            "{key_type}"
        );
    }
}

#[test]
fn signature_over_other_claims_fails() {
    for key_type in KEY_TYPES {
        let key = JwtSigningKey::generate(key_type, SystemTime::now() + HOUR).unwrap();
        let signer = signer(key, None);
        let svid = signer
            .sign(&workload_id(), &audience(&["db"]), HOUR)
            .unwrap();
        let other = signer
            .sign(&workload_id(), &audience(&["other"]), HOUR)
            .unwrap();

        let (_, signature) = svid.token.rsplit_once('.').unwrap();
        let (other_input, _) = other.token.rsplit_once('.').unwrap();
        let swapped = format!("{other_input}.{signature}");

        assert!(
            decode(&other.token, signer.key(), "other").is_ok(),
            "{key_type}"
        );
        assert!(
            decode(&swapped, signer.key(), "other").is_err(),
            "{key_type}"
        );
    }
}

#[test]
fn single_audience_is_array() {
    let key = JwtSigningKey::generate(JwtKeyType::Es256, SystemTime::now() + HOUR).unwrap();
    let signer = signer(key, None);

    let svid = signer
        .sign(&workload_id(), &audience(&["db"]), HOUR)
        .unwrap();

    let payload = svid.token.split('.').nth(1).unwrap();
    let payload =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["aud"], serde_json::json!(["db"]));
}

#[test]
fn issuer_is_set_when_configured() {
    let key = JwtSigningKey::generate(JwtKeyType::Es256, SystemTime::now() + HOUR).unwrap();
    let signer = signer(key, Some("https://oidc.example.org"));

    let svid = signer
        .sign(&workload_id(), &audience(&["a", "b"]), HOUR)
        .unwrap();

    let claims = verify(&svid.token, signer.key(), "b");
    assert_eq!(claims.iss.as_deref(), Some("https://oidc.example.org"));
    assert_eq!(claims.aud, ["a", "b"]);
}

#[test]
fn ttl_is_cut_at_key_expiry() {
    let not_after = SystemTime::now() + Duration::from_secs(60);
    let key = JwtSigningKey::generate(JwtKeyType::Es256, not_after).unwrap();
    let key_not_after = key.not_after();
    let signer = signer(key, None);

    let svid = signer
        .sign(&workload_id(), &audience(&["db"]), HOUR)
        .unwrap();

    assert_eq!(svid.expires_at, key_not_after);
    let claims = verify(&svid.token, signer.key(), "db");
    assert_eq!(claims.exp, unix(key_not_after));
}

#[test]
fn expired_key_signs_nothing() {
    let not_after = SystemTime::now() + Duration::from_secs(60);
    let key = JwtSigningKey::generate(JwtKeyType::Es256, not_after).unwrap();
    let signer = signer(key, None);
    let later = not_after + Duration::from_secs(1);

    let error = signer
        .sign_at(&workload_id(), &audience(&["db"]), HOUR, later)
        .unwrap_err();

    assert!(matches!(error, JwtError::KeyExpired { .. }), "{error}");
}

#[test]
fn bad_requests_are_rejected() {
    let key = JwtSigningKey::generate(JwtKeyType::Es256, SystemTime::now() + HOUR).unwrap();
    let signer = signer(key, None);
    let other_domain = SpiffeId::new("spiffe://other.org/workload").unwrap();
    let no_path = SpiffeId::new("spiffe://example.org").unwrap();

    let no_audience = signer.sign(&workload_id(), &[], HOUR).unwrap_err();
    let empty_audience = signer
        .sign(&workload_id(), &audience(&["db", ""]), HOUR)
        .unwrap_err();
    let foreign = signer
        .sign(&other_domain, &audience(&["db"]), HOUR)
        .unwrap_err();
    let pathless = signer.sign(&no_path, &audience(&["db"]), HOUR).unwrap_err();
    let zero_ttl = signer
        .sign(&workload_id(), &audience(&["db"]), Duration::ZERO)
        .unwrap_err();

    assert!(
        matches!(no_audience, JwtError::InvalidAudience(_)),
        "{no_audience}"
    );
    assert!(
        matches!(empty_audience, JwtError::InvalidAudience(_)),
        "{empty_audience}"
    );
    assert!(
        matches!(foreign, JwtError::InvalidSubject { .. }),
        "{foreign}"
    );
    assert!(
        matches!(pathless, JwtError::InvalidSubject { .. }),
        "{pathless}"
    );
    assert!(
        matches!(zero_ttl, JwtError::InvalidTtl { .. }),
        "{zero_ttl}"
    );
    assert!(no_audience.is_invalid_argument());
}

#[test]
fn stored_key_is_reused_on_restart() {
    let dir = tempfile::tempdir().unwrap();

    let first =
        JwtSigningKey::load_or_create(&dir.path().join("jwt"), JwtKeyType::Es256, HOUR).unwrap();
    let second =
        JwtSigningKey::load_or_create(&dir.path().join("jwt"), JwtKeyType::Es256, HOUR).unwrap();

    assert_eq!(first.key_id(), second.key_id());
    assert_eq!(first.public_key_der(), second.public_key_der());
    assert_eq!(first.not_after(), second.not_after());
    let signer = signer(second, None);
    let svid = signer
        .sign(&workload_id(), &audience(&["db"]), HOUR)
        .unwrap();
    verify(&svid.token, &first, "db");
}

#[test]
fn stored_key_signs_after_restart() {
    for key_type in KEY_TYPES {
        let dir = tempfile::tempdir().unwrap();
        let first = JwtSigningKey::load_or_create(dir.path(), key_type, HOUR).unwrap();

        let loaded = JwtSigningKey::load(dir.path(), key_type).unwrap().unwrap();

        assert_eq!(loaded.key_id(), first.key_id(), "{key_type}");
        let signer = signer(loaded, None);
        let svid = signer
            .sign(&workload_id(), &audience(&["db"]), HOUR)
            .unwrap();
        let claims = verify(&svid.token, &first, "db");
        assert_eq!(claims.sub, "spiffe://example.org/workload", "{key_type}");
        assert_eq!(
            header_json(&svid.token)["kid"],
            first.key_id(),
            "{key_type}"
        );
    }
}

#[test]
fn stored_rsa_key_is_reused_on_restart() {
    let dir = tempfile::tempdir().unwrap();

    let first =
        JwtSigningKey::load_or_create(&dir.path().join("jwt"), JwtKeyType::Ps256, HOUR).unwrap();
    let second =
        JwtSigningKey::load_or_create(&dir.path().join("jwt"), JwtKeyType::Ps256, HOUR).unwrap();

    assert_eq!(first.key_id(), second.key_id());
    assert_eq!(first.public_key_der(), second.public_key_der());
}

#[test]
fn key_files_are_private() {
    let dir = tempfile::tempdir().unwrap();

    JwtSigningKey::load_or_create(&dir.path().join("jwt"), JwtKeyType::Es256, HOUR).unwrap();

    let mode = |path: &str| {
        let metadata = std::fs::metadata(dir.path().join(path)).unwrap();
        metadata.permissions().mode() & 0o777
    };
    assert_eq!(mode("jwt"), 0o700);
    assert_eq!(mode("jwt/jwt-key.pem"), 0o600);
    assert_eq!(mode("jwt/jwt-key.json"), 0o600);
}

#[test]
fn changed_key_type_creates_new_key() {
    let dir = tempfile::tempdir().unwrap();

    let first =
        JwtSigningKey::load_or_create(&dir.path().join("jwt"), JwtKeyType::Es256, HOUR).unwrap();
    let second =
        JwtSigningKey::load_or_create(&dir.path().join("jwt"), JwtKeyType::Rs256, HOUR).unwrap();

    assert_ne!(first.key_id(), second.key_id());
    assert_eq!(second.key_type(), JwtKeyType::Rs256);
}

#[test]
fn expired_stored_key_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let first =
        JwtSigningKey::load_or_create(&dir.path().join("jwt"), JwtKeyType::Es256, HOUR).unwrap();
    let metadata_path = dir.path().join("jwt/jwt-key.json");
    let mut metadata: Value =
        serde_json::from_slice(&std::fs::read(&metadata_path).unwrap()).unwrap();
    metadata["not_after"] = serde_json::json!(1);
    std::fs::write(&metadata_path, serde_json::to_vec(&metadata).unwrap()).unwrap();

    let second =
        JwtSigningKey::load_or_create(&dir.path().join("jwt"), JwtKeyType::Es256, HOUR).unwrap();

    assert_ne!(first.key_id(), second.key_id());
    assert!(second.not_after() > SystemTime::now());
}

#[test]
fn key_id_is_random_alphanumeric() {
    let first = JwtSigningKey::generate(JwtKeyType::Es256, SystemTime::now() + HOUR).unwrap();
    let second = JwtSigningKey::generate(JwtKeyType::Es256, SystemTime::now() + HOUR).unwrap();

    assert_eq!(first.key_id().len(), 32);
    assert!(first.key_id().chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(first.key_id(), second.key_id());
}

#[test]
fn debug_hides_key_and_token() {
    let key = JwtSigningKey::generate(JwtKeyType::Es256, SystemTime::now() + HOUR).unwrap();
    let signer = signer(key, None);
    let svid = signer
        .sign(&workload_id(), &audience(&["db"]), HOUR)
        .unwrap();

    let signer_debug = format!("{signer:?}");
    let svid_debug = format!("{svid:?}");

    assert!(
        signer_debug.contains(signer.key().key_id()),
        "{signer_debug}"
    );
    assert!(!signer_debug.contains("BEGIN"), "{signer_debug}");
    assert!(!svid_debug.contains(&svid.token), "{svid_debug}");
}

#[test]
fn key_type_names_round_trip() {
    for name in ["es256", "rs256", "ps256"] {
        assert_eq!(name.parse::<JwtKeyType>().unwrap().to_string(), name);
    }
    let error = "hs256".parse::<JwtKeyType>().unwrap_err();
    assert!(matches!(error, JwtError::UnknownKeyType { .. }), "{error}");
}
