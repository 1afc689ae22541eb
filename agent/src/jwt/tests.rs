use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use signet_proto::spire::api::types::Jwtsvid;
use spiffe::{SpiffeId, TrustDomain};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::test_support::{TestJwtKey, TestSigner, unix_seconds};
use super::*;
use crate::cache::{Identity, Snapshot};

const LIFETIME: Duration = Duration::from_secs(300);
const WEB: &str = "spiffe://example.org/web";

fn audience(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

static WEB_ID: LazyLock<SpiffeId> = LazyLock::new(|| SpiffeId::new(WEB).unwrap());

/// Returns the subject of the plain entry `WEB`, whose entry ID is its SPIFFE ID.
fn web() -> JwtSubject<'static> {
    plain(WEB, &WEB_ID)
}

fn plain<'a>(entry_id: &'a str, spiffe_id: &'a SpiffeId) -> JwtSubject<'a> {
    JwtSubject {
        entry_id,
        spiffe_id,
        from_template: false,
    }
}

fn trust_domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

// === token cache ===

#[tokio::test(flavor = "current_thread")]
async fn cache_reuses_token_until_half_life() {
    let signer = TestSigner::new(LIFETIME);
    let cache = JwtSvidCache::new();
    let now = SystemTime::now();

    let first = cache
        .fetch(&signer, web(), &audience(&["db"]), now)
        .await
        .unwrap();
    let again = cache
        .fetch(
            &signer,
            web(),
            &audience(&["db"]),
            now + Duration::from_secs(140),
        )
        .await
        .unwrap();
    assert_eq!(signer.calls(), 1);
    assert!(Arc::ptr_eq(&first, &again));

    let renewed = cache
        .fetch(
            &signer,
            web(),
            &audience(&["db"]),
            now + Duration::from_secs(152),
        )
        .await
        .unwrap();
    assert_eq!(signer.calls(), 2);
    assert!(!Arc::ptr_eq(&first, &renewed));
}

#[tokio::test(flavor = "current_thread")]
async fn cache_key_ignores_audience_order_and_duplicates() {
    let other = SpiffeId::new("spiffe://example.org/other").unwrap();
    let signer = TestSigner::new(LIFETIME);
    let cache = JwtSvidCache::new();
    let now = SystemTime::now();

    cache
        .fetch(&signer, web(), &audience(&["b", "a"]), now)
        .await
        .unwrap();
    cache
        .fetch(&signer, web(), &audience(&["a", "b", "a"]), now)
        .await
        .unwrap();
    assert_eq!(signer.calls(), 1);

    cache
        .fetch(&signer, web(), &audience(&["a"]), now)
        .await
        .unwrap();
    cache
        .fetch(&signer, plain("other", &other), &audience(&["a"]), now)
        .await
        .unwrap();
    assert_eq!(signer.calls(), 3);
    assert_eq!(cache.len(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn cache_keys_template_tokens_by_concrete_id() {
    let signer = TestSigner::new(LIFETIME);
    let cache = JwtSvidCache::new();
    let now = SystemTime::now();
    let root = SpiffeId::new("spiffe://example.org/uid/0").unwrap();
    let nobody = SpiffeId::new("spiffe://example.org/uid/65534").unwrap();
    let subject = |spiffe_id| JwtSubject {
        entry_id: "uid",
        spiffe_id,
        from_template: true,
    };

    let mut tokens = Vec::new();
    for spiffe_id in [&root, &nobody, &root] {
        let token = cache
            .fetch(&signer, subject(spiffe_id), &audience(&["db"]), now)
            .await
            .unwrap();
        tokens.push(token);
    }

    assert_eq!(signer.calls(), 2);
    assert_eq!(signer.template_calls(), 2);
    assert_eq!(cache.len(), 2);
    assert!(Arc::ptr_eq(&tokens[0], &tokens[2]));
    let authorities = [signer.key.authority()];
    let subjects: Vec<SpiffeId> = tokens[..2]
        .iter()
        .map(|token| validate(&token.token, "db", &trust_domain(), &authorities, now))
        .map(|validated| validated.unwrap().spiffe_id)
        .collect();
    assert_eq!(subjects, [root, nobody]);
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_requests_share_one_signature() {
    let gate = Arc::new(Semaphore::new(0));
    let signer = Arc::new(TestSigner {
        gate: Some(Arc::clone(&gate)),
        ..TestSigner::new(LIFETIME)
    });
    let cache = Arc::new(JwtSvidCache::new());
    let now = SystemTime::now();

    let requests: Vec<_> = (0..8)
        .map(|_| {
            let signer = Arc::clone(&signer);
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .fetch(signer.as_ref(), web(), &audience(&["db"]), now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Let every request reach the slot before the first signature completes.
    while signer.calls() == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(8);

    let mut tokens = Vec::new();
    for request in requests {
        tokens.push(request.await.unwrap());
    }
    assert_eq!(signer.calls(), 1);
    assert!(tokens.iter().all(|token| Arc::ptr_eq(token, &tokens[0])));
}

#[tokio::test(flavor = "current_thread")]
async fn failed_signing_is_not_cached() {
    let failing = TestSigner {
        failure: Some(tonic::Status::unavailable("server down")),
        ..TestSigner::new(LIFETIME)
    };
    let cache = JwtSvidCache::new();
    let now = SystemTime::now();

    let error = cache
        .fetch(&failing, web(), &audience(&["db"]), now)
        .await
        .unwrap_err();
    assert!(matches!(error, FetchError::Rpc { .. }), "{error:?}");

    let working = TestSigner::new(LIFETIME);
    cache
        .fetch(&working, web(), &audience(&["db"]), now)
        .await
        .unwrap();
    assert_eq!(working.calls(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn unexpired_token_serves_when_signing_fails() {
    let working = TestSigner::new(LIFETIME);
    let failing = TestSigner {
        failure: Some(tonic::Status::unavailable("server down")),
        ..TestSigner::new(LIFETIME)
    };
    let cache = JwtSvidCache::new();
    let now = SystemTime::now();
    let cached = cache
        .fetch(&working, web(), &audience(&["db"]), now)
        .await
        .unwrap();

    let past_half_life = now + LIFETIME * 3 / 4;
    let served = cache
        .fetch(&failing, web(), &audience(&["db"]), past_half_life)
        .await
        .unwrap();
    let after_expiry = cache
        .fetch(&failing, web(), &audience(&["db"]), now + LIFETIME * 2)
        .await;

    assert!(Arc::ptr_eq(&served, &cached));
    assert_eq!(failing.calls(), 2);
    assert!(after_expiry.is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn prune_drops_tokens_of_removed_entries() {
    let signer = TestSigner::new(LIFETIME);
    let cache = JwtSvidCache::new();
    let now = SystemTime::now();
    let removed = SpiffeId::new("spiffe://example.org/gone").unwrap();
    for subject in [web(), plain("removed", &removed)] {
        cache
            .fetch(&signer, subject, &audience(&["db"]), now)
            .await
            .unwrap();
    }

    let mut snapshot = Snapshot::empty(trust_domain());
    snapshot.identities.push(Identity {
        entry_id: WEB.to_owned(),
        spiffe_id: spiffe::SpiffeId::new(WEB).unwrap().into(),
        selectors: Vec::new(),
        hint: String::new(),
        svid: None,
        expanded_svids: std::collections::BTreeMap::new(),
    });
    snapshot.revision = 7;
    cache.prune(&snapshot);

    assert_eq!(cache.len(), 1);
    cache
        .fetch(&signer, web(), &audience(&["db"]), now)
        .await
        .unwrap();
    assert_eq!(signer.calls(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn prune_drops_tokens_of_tainted_keys() {
    let signer = TestSigner::new(LIFETIME);
    let cache = JwtSvidCache::new();
    let now = SystemTime::now();
    cache
        .fetch(&signer, web(), &audience(&["db"]), now)
        .await
        .unwrap();

    let mut snapshot = Snapshot::empty(trust_domain());
    snapshot.identities.push(Identity {
        entry_id: WEB.to_owned(),
        spiffe_id: spiffe::SpiffeId::new(WEB).unwrap().into(),
        selectors: Vec::new(),
        hint: String::new(),
        svid: None,
        expanded_svids: std::collections::BTreeMap::new(),
    });
    snapshot.jwt_authorities.push(signer.key.authority());
    snapshot.revision = 7;
    cache.prune(&snapshot);
    assert_eq!(cache.len(), 1, "an untainted key keeps its tokens");

    snapshot.jwt_authorities[0].tainted = true;
    snapshot.revision = 8;
    cache.prune(&snapshot);

    assert!(cache.is_empty());
    cache
        .fetch(&signer, web(), &audience(&["db"]), now)
        .await
        .unwrap();
    assert_eq!(signer.calls(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn cache_stays_within_capacity() {
    let signer = TestSigner::new(LIFETIME);
    let cache = JwtSvidCache::with_capacity(3);
    let now = SystemTime::now();

    for index in 0..10 {
        let audience = audience(&[&format!("service-{index}")]);
        cache.fetch(&signer, web(), &audience, now).await.unwrap();
        assert!(cache.len() <= 3, "{} cached tokens", cache.len());
    }
    assert_eq!(signer.calls(), 10);
}

// === tokens from the server ===

#[test]
fn token_from_proto_checks_token_and_expiry() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let svid = |token: &str, issued_at: i64, expires_at: i64| {
        Some(Jwtsvid {
            token: token.to_owned(),
            issued_at,
            expires_at,
            ..Jwtsvid::default()
        })
    };

    let token = JwtSvidToken::from_proto(svid("a.b.c", 999_900, 1_000_100), now).unwrap();
    assert_eq!(
        token.issued_at,
        SystemTime::UNIX_EPOCH + Duration::from_secs(999_900)
    );
    assert!(!token.is_due(now - Duration::from_secs(1)));
    assert!(token.is_due(now));

    let missing_iat = JwtSvidToken::from_proto(svid("a.b.c", 0, 1_000_100), now).unwrap();
    assert_eq!(missing_iat.issued_at, now);

    for (name, response) in [
        ("no SVID", None),
        ("empty token", svid("", 999_900, 1_000_100)),
        ("expired", svid("a.b.c", 999_000, 1_000_000)),
        ("no expiry", svid("a.b.c", 999_000, 0)),
    ] {
        let result = JwtSvidToken::from_proto(response, now);
        assert!(
            matches!(result, Err(FetchError::InvalidResponse(_))),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn token_debug_hides_token() {
    let token = JwtSvidToken {
        token: Zeroizing::new("secret.token.value".to_owned()),
        issued_at: SystemTime::UNIX_EPOCH,
        expires_at: SystemTime::UNIX_EPOCH,
    };
    let printed = format!("{token:?}");
    assert!(printed.contains("<redacted>"));
    assert!(!printed.contains("secret"));
}

// === validation ===

/// Returns true when the error is the one a case expects.
type ErrorCheck = fn(&ValidationError) -> bool;

struct Case {
    key: TestJwtKey,
    now: u64,
}

impl Case {
    fn new() -> Self {
        Self {
            key: TestJwtKey::es256("key-1"),
            now: unix_seconds(SystemTime::now()),
        }
    }

    fn claims(&self) -> Value {
        json!({"sub": WEB, "aud": ["db", "cache"], "iat": self.now, "exp": self.now + 300})
    }

    fn validate(&self, token: &str) -> Result<ValidatedJwtSvid, ValidationError> {
        validate(
            token,
            "db",
            &trust_domain(),
            &[self.key.authority()],
            SystemTime::UNIX_EPOCH + Duration::from_secs(self.now),
        )
    }

    fn with_claims(&self, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut claims = self.claims();
        change(claims.as_object_mut().unwrap());
        self.key.sign_raw(&self.key.header(), &claims)
    }

    fn with_header(&self, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut header = self.key.header();
        change(header.as_object_mut().unwrap());
        self.key.sign_raw(&header, &self.claims())
    }
}

#[test]
fn valid_token_returns_spiffe_id_and_claims() {
    let case = Case::new();
    let token = case.key.sign_raw(&case.key.header(), &case.claims());

    let validated = case.validate(&token).unwrap();

    assert_eq!(validated.spiffe_id.to_string(), WEB);
    assert_eq!(validated.claims["aud"], json!(["db", "cache"]));
    assert_eq!(validated.claims["exp"], json!(case.now + 300));
}

#[test]
fn single_string_audience_and_jose_type_are_accepted() {
    let case = Case::new();
    let token = case.with_claims(|claims| {
        claims.insert("aud".into(), json!("db"));
    });
    assert!(case.validate(&token).is_ok());

    let token = case.with_header(|header| {
        header.insert("typ".into(), json!("JOSE"));
    });
    assert!(case.validate(&token).is_ok());

    let token = case.with_header(|header| {
        header.remove("typ");
    });
    assert!(case.validate(&token).is_ok());
}

#[test]
fn es384_token_is_accepted() {
    let case = Case {
        key: TestJwtKey::es384("key-384"),
        ..Case::new()
    };
    let token = case.key.sign_raw(&case.key.header(), &case.claims());
    assert!(case.validate(&token).is_ok());
}

#[test]
fn invalid_tokens_are_rejected() {
    let case = Case::new();
    let other_key = TestJwtKey::es256("key-1");
    let good = case.key.sign_raw(&case.key.header(), &case.claims());
    let (good_message, _) = good.rsplit_once('.').unwrap();
    let unsigned = |header: Value| {
        format!(
            "{}.{}.",
            base64_json(&header),
            good_message.split('.').nth(1).unwrap()
        )
    };

    let cases: Vec<(&str, String, ErrorCheck)> = vec![
        (
            "signature from another key with the same kid",
            other_key.sign_raw(&case.key.header(), &case.claims()),
            |error| *error == ValidationError::InvalidSignature,
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                good.split('.').next().unwrap(),
                base64_json(&json!({"sub": WEB, "aud": ["db"], "exp": 4_000_000_000u64})),
                good.rsplit('.').next().unwrap()
            ),
            |error| *error == ValidationError::InvalidSignature,
        ),
        (
            "wrong audience",
            case.with_claims(|claims| {
                claims.insert("aud".into(), json!(["other"]));
            }),
            |error| matches!(error, ValidationError::AudienceMismatch { .. }),
        ),
        (
            "missing audience",
            case.with_claims(|claims| {
                claims.remove("aud");
            }),
            |error| *error == ValidationError::MissingAudience,
        ),
        (
            "empty audience",
            case.with_claims(|claims| {
                claims.insert("aud".into(), json!([]));
            }),
            |error| *error == ValidationError::MissingAudience,
        ),
        (
            "empty string audience",
            case.with_claims(|claims| {
                claims.insert("aud".into(), json!(""));
            }),
            |error| *error == ValidationError::MissingAudience,
        ),
        (
            "empty string among audiences",
            case.with_claims(|claims| {
                claims.insert("aud".into(), json!(["db", ""]));
            }),
            |error| *error == ValidationError::MissingAudience,
        ),
        (
            "expired",
            case.with_claims(|claims| {
                claims.insert("exp".into(), json!(case.now - 1));
            }),
            |error| matches!(error, ValidationError::Expired { .. }),
        ),
        (
            "expiring now",
            case.with_claims(|claims| {
                claims.insert("exp".into(), json!(case.now));
            }),
            |error| matches!(error, ValidationError::Expired { .. }),
        ),
        (
            "missing expiry",
            case.with_claims(|claims| {
                claims.remove("exp");
            }),
            |error| *error == ValidationError::MissingExpiry,
        ),
        (
            "not yet valid",
            case.with_claims(|claims| {
                claims.insert("nbf".into(), json!(case.now + 60));
            }),
            |error| matches!(error, ValidationError::NotYetValid { .. }),
        ),
        (
            "alg none",
            unsigned(json!({"alg": "none", "kid": "key-1", "typ": "JWT"})),
            |error| matches!(error, ValidationError::UnsupportedAlgorithm(alg) if alg == "none"),
        ),
        (
            "alg HS256",
            unsigned(json!({"alg": "HS256", "kid": "key-1"})),
            |error| matches!(error, ValidationError::UnsupportedAlgorithm(_)),
        ),
        (
            "alg EdDSA",
            unsigned(json!({"alg": "EdDSA", "kid": "key-1"})),
            |error| matches!(error, ValidationError::UnsupportedAlgorithm(_)),
        ),
        (
            "alg of another key type",
            case.with_header(|header| {
                header.insert("alg".into(), json!("RS256"));
            }),
            |error| matches!(error, ValidationError::KeyMismatch { .. }),
        ),
        (
            "alg of another curve",
            case.with_header(|header| {
                header.insert("alg".into(), json!("ES384"));
            }),
            |error| matches!(error, ValidationError::KeyMismatch { .. }),
        ),
        (
            "unknown kid",
            case.with_header(|header| {
                header.insert("kid".into(), json!("key-2"));
            }),
            |error| matches!(error, ValidationError::UnknownKeyId { .. }),
        ),
        (
            "missing kid",
            case.with_header(|header| {
                header.remove("kid");
            }),
            |error| *error == ValidationError::MissingKeyId,
        ),
        (
            "embedded key header",
            case.with_header(|header| {
                header.insert("jku".into(), json!("https://127.0.0.1/keys"));
            }),
            |error| matches!(error, ValidationError::UnsupportedHeader(member) if member == "jku"),
        ),
        (
            "typ of another token kind",
            case.with_header(|header| {
                header.insert("typ".into(), json!("wit+jwt"));
            }),
            |error| *error == ValidationError::InvalidType("wit+jwt".to_owned()),
        ),
        (
            "sub not a SPIFFE ID",
            case.with_claims(|claims| {
                claims.insert("sub".into(), json!("https://example.org/web"));
            }),
            |error| matches!(error, ValidationError::InvalidSubject(_)),
        ),
        (
            "missing sub",
            case.with_claims(|claims| {
                claims.remove("sub");
            }),
            |error| *error == ValidationError::MissingSubject,
        ),
        (
            "sub not a string",
            case.with_claims(|claims| {
                claims.insert("sub".into(), json!(42));
            }),
            |error| *error == ValidationError::MissingSubject,
        ),
        (
            "sub in another trust domain",
            case.with_claims(|claims| {
                claims.insert("sub".into(), json!("spiffe://other.org/web"));
            }),
            |error| matches!(error, ValidationError::UntrustedTrustDomain(td) if td.as_str() == "other.org"),
        ),
        ("five parts (JWE)", format!("{good}.a.b"), |error| {
            matches!(error, ValidationError::Malformed(_))
        }),
        ("two parts", good_message.to_owned(), |error| {
            matches!(error, ValidationError::Malformed(_))
        }),
        ("header not base64url", format!("!!!{good}"), |error| {
            matches!(error, ValidationError::Malformed(_))
        }),
    ];

    for (name, token, expected) in cases {
        match case.validate(&token) {
            Ok(validated) => panic!("{name}: accepted as {}", validated.spiffe_id),
            Err(error) => assert!(expected(&error), "{name}: unexpected error {error:?}"),
        }
    }
}

#[test]
fn oversized_token_is_rejected_before_parsing() {
    let case = Case::new();
    let at_limit = "A".repeat(MAX_TOKEN_BYTES);
    let over_limit = "A".repeat(MAX_TOKEN_BYTES + 1);

    assert!(matches!(
        case.validate(&at_limit),
        Err(ValidationError::Malformed(_))
    ));
    let error = case.validate(&over_limit).unwrap_err();
    assert_eq!(error, ValidationError::TooLarge(MAX_TOKEN_BYTES + 1));
    assert_eq!(
        error.to_string(),
        "JWT-SVID is 65537 bytes, over the limit of 65536 bytes"
    );
}

#[test]
fn long_token_values_are_cut_in_messages() {
    let case = Case::new();
    let long_sub = format!("web/{}", "x".repeat(20_000));
    let many_audiences: Vec<String> = (0..20).map(|index| format!("aud-{index}")).collect();
    let long_alg = "X".repeat(20_000);

    let tokens = [
        case.with_claims(|claims| {
            claims.insert("sub".into(), json!(long_sub));
        }),
        case.with_claims(|claims| {
            claims.insert("aud".into(), json!(many_audiences));
        }),
        case.with_header(|header| {
            header.insert("alg".into(), json!(long_alg));
        }),
    ];
    let messages: Vec<String> = tokens
        .iter()
        .map(|token| case.validate(token).unwrap_err().to_string())
        .collect();

    for message in &messages {
        assert!(message.len() < 1024, "{} bytes: {message}", message.len());
    }
    assert!(messages[0].contains("... (20004 bytes)"), "{}", messages[0]);
    assert!(
        messages[1].contains(r#""aud-7", and 12 more] does not contain "db""#),
        "{}",
        messages[1]
    );
    assert!(messages[2].contains("... (20000 bytes)"), "{}", messages[2]);
}

#[test]
fn quoted_values_escape_control_characters() {
    assert_eq!(quoted("db"), r#""db""#);
    assert_eq!(quoted("a\nb\u{1b}"), r#""a\nb\u{1b}""#);

    let escaped = quoted(&"\u{1b}".repeat(1000));
    assert!(escaped.len() < 300, "{escaped}");
    assert!(escaped.ends_with("... (1000 bytes)"), "{escaped}");
}

#[test]
fn validation_without_authorities_finds_no_key() {
    let case = Case::new();
    let token = case.key.sign_raw(&case.key.header(), &case.claims());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(case.now);

    let error = validate(&token, "db", &trust_domain(), &[], now).unwrap_err();

    assert!(
        matches!(error, ValidationError::UnknownKeyId { .. }),
        "{error:?}"
    );
}

fn base64_json(value: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn every_changed_character_is_rejected() {
    let case = Case::new();
    let token = case.key.sign_raw(&case.key.header(), &case.claims());
    assert!(case.validate(&token).is_ok());

    // The last character may carry only padding bits of the signature, so it is left out.
    let characters: Vec<char> = token.chars().collect();
    for position in 0..characters.len() - 1 {
        let original = characters[position];
        let replacement = if original == 'A' { 'B' } else { 'A' };
        let mut changed = characters.clone();
        changed[position] = replacement;
        let changed: String = changed.into_iter().collect();

        assert!(
            case.validate(&changed).is_err(),
            "changing position {position} from {original:?} to {replacement:?} was accepted"
        );
    }
}

#[test]
fn arbitrary_ascii_input_is_rejected_without_panic() {
    let case = Case::new();
    for byte in 0u8..=127 {
        let character = char::from(byte);
        for token in [
            character.to_string(),
            format!("{character}.{character}.{character}"),
            format!("eyJhbGciOiJFUzI1NiJ9.{character}.{character}"),
        ] {
            assert!(case.validate(&token).is_err(), "{token:?} was accepted");
        }
    }
}
