//! Validation of a JWT-SVID against the JWT authorities of its trust domain.
//!
//! The checks follow the JWT-SVID specification. The token must be in JWS compact
//! serialization, with a header of only `alg`, `kid` and `typ`. Its asymmetric `alg` is checked
//! before anything else, and the key is picked by `kid` in the bundle of the `sub` claim's trust
//! domain. Then come the signature, `aud`, `exp` and `nbf`. Time checks allow no clock skew, so
//! no token is accepted after its `exp`.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use signet_core::ids::parse_spiffe_id;
use signet_core::jwk::jwk_from_public_key_der;
use spiffe::{SpiffeId, TrustDomain};

use crate::cache::JwtAuthority;

/// A JWT-SVID that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedJwtSvid {
    /// The `sub` claim.
    pub spiffe_id: SpiffeId,
    /// Every claim of the payload, as the token carries them.
    pub claims: Map<String, Value>,
}

/// Reason a JWT-SVID is not valid.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The token is longer than [`MAX_TOKEN_BYTES`], so nothing else of it is read.
    #[error("JWT-SVID is {0} bytes, over the limit of {MAX_TOKEN_BYTES} bytes")]
    TooLarge(usize),
    /// The token is not three base64url parts, or a part is not JSON.
    #[error("malformed JWT-SVID: {0}")]
    Malformed(String),
    /// The header has a member other than `alg`, `kid` and `typ`.
    #[error("JWT-SVID header member {} is not allowed; only alg, kid and typ are", quoted(.0))]
    UnsupportedHeader(String),
    /// `alg` is missing or not one of the asymmetric algorithms the specification allows.
    #[error(
        "JWT-SVID algorithm {} is not allowed; expected RS256, RS384, RS512, ES256, ES384, \
         PS256, PS384 or PS512",
        quoted(.0)
    )]
    UnsupportedAlgorithm(String),
    /// `typ` is present but neither `JWT` nor `JOSE`.
    #[error("JWT-SVID header typ {} is not JWT or JOSE", quoted(.0))]
    InvalidType(String),
    /// The header has no `kid`, so no key can be chosen.
    #[error("JWT-SVID header has no kid")]
    MissingKeyId,
    /// `sub` is missing or not a string.
    #[error("JWT-SVID has no valid sub claim: expected a SPIFFE ID string")]
    MissingSubject,
    /// `sub` is a string but not a SPIFFE ID.
    #[error("JWT-SVID sub {} is not a valid SPIFFE ID", quoted(.0))]
    InvalidSubject(String),
    /// The agent has no JWT bundle for the trust domain of `sub`.
    #[error("no JWT bundle for trust domain {0}")]
    UntrustedTrustDomain(TrustDomain),
    /// The bundle has no key with the token's `kid`.
    #[error("no JWT authority with key ID {} in the bundle of {trust_domain}", quoted(.key_id))]
    UnknownKeyId {
        /// The token's `kid`.
        key_id: String,
        /// Trust domain of the bundle.
        trust_domain: TrustDomain,
    },
    /// The key with the token's `kid` is of another type than `alg` needs.
    #[error("JWT authority {key_id:?} cannot verify {algorithm} signatures")]
    KeyMismatch {
        /// The token's `kid`.
        key_id: String,
        /// The token's `alg`.
        algorithm: String,
    },
    /// The signature does not verify with the key.
    #[error("JWT-SVID signature is invalid")]
    InvalidSignature,
    /// `aud` is missing, or not a non-empty string or a non-empty array of non-empty strings.
    #[error(
        "JWT-SVID has no valid aud claim: expected a non-empty string or a non-empty array \
         of them"
    )]
    MissingAudience,
    /// `aud` does not contain the validator's audience.
    #[error(
        "JWT-SVID audience {} does not contain {}",
        quoted_list(.actual),
        quoted(.expected)
    )]
    AudienceMismatch {
        /// The audience the caller validates for.
        expected: String,
        /// The token's `aud` values.
        actual: Vec<String>,
    },
    /// `exp` is missing or not a number.
    #[error("JWT-SVID has no valid exp claim")]
    MissingExpiry,
    /// `exp` is not after the check time.
    #[error("JWT-SVID expired at {expired_at} (checked at {checked_at})")]
    Expired {
        /// RFC 3339 time of `exp`.
        expired_at: String,
        /// RFC 3339 time of the check.
        checked_at: String,
    },
    /// `nbf` is after the check time.
    #[error("JWT-SVID is not valid before {not_before} (checked at {checked_at})")]
    NotYetValid {
        /// RFC 3339 time of `nbf`.
        not_before: String,
        /// RFC 3339 time of the check.
        checked_at: String,
    },
}

/// Validates `token` for `audience` at `now` with the JWT `authorities` of `trust_domain`, the
/// only trust domain the agent has a bundle for.
///
/// # Errors
///
/// The first check that fails, as a [`ValidationError`].
pub fn validate(
    token: &str,
    audience: &str,
    trust_domain: &TrustDomain,
    authorities: &[JwtAuthority],
    now: SystemTime,
) -> Result<ValidatedJwtSvid, ValidationError> {
    // Parse: the size first, and the algorithm before the payload is even decoded.
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ValidationError::TooLarge(token.len()));
    }
    let (header, payload) = split_compact(token)?;
    let header = decode_json(header, "header")?;
    let algorithm = check_header(&header)?;
    let key_id = string_member(&header, "kid")
        .filter(|key_id| !key_id.is_empty())
        .ok_or(ValidationError::MissingKeyId)?;
    let unverified = decode_json(payload, "payload")?;
    let spiffe_id = subject(&unverified)?;

    // Pick the key from the bundle of the subject's trust domain.
    if spiffe_id.trust_domain() != trust_domain {
        return Err(ValidationError::UntrustedTrustDomain(
            spiffe_id.trust_domain().clone(),
        ));
    }
    let authority = authorities
        .iter()
        .find(|authority| authority.key_id == key_id)
        .ok_or_else(|| ValidationError::UnknownKeyId {
            key_id: key_id.to_owned(),
            trust_domain: trust_domain.clone(),
        })?;
    let key = decoding_key(authority, algorithm)?;

    // Verify, then check the claims of the verified payload.
    let claims = verify_signature(token, &key, algorithm)?;
    check_audience(&claims, audience)?;
    check_times(&claims, now)?;
    Ok(ValidatedJwtSvid {
        spiffe_id: subject(&claims)?,
        claims,
    })
}

/// Splits the JWS compact serialization into its encoded header and payload. An empty
/// signature passes here, so that an unsecured token (`alg` none) is rejected for its algorithm.
fn split_compact(token: &str) -> Result<(&str, &str), ValidationError> {
    let parts: Vec<&str> = token.split('.').collect();
    match parts.as_slice() {
        [header, payload, _signature] if !header.is_empty() && !payload.is_empty() => {
            Ok((header, payload))
        }
        [_, _, _] => Err(ValidationError::Malformed(
            "the header or payload is empty".to_owned(),
        )),
        _ => Err(ValidationError::Malformed(format!(
            "expected 3 dot-separated parts (JWS compact serialization), found {}",
            parts.len()
        ))),
    }
}

fn decode_json(part: &str, name: &str) -> Result<Map<String, Value>, ValidationError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ValidationError::Malformed(format!("the {name} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| ValidationError::Malformed(format!("the {name} is not a JSON object")))
}

/// Checks the header's members and `typ`, and returns its algorithm.
fn check_header(header: &Map<String, Value>) -> Result<Algorithm, ValidationError> {
    let name = string_member(header, "alg").unwrap_or_default();
    let algorithm = ALLOWED_ALGORITHMS
        .iter()
        .find(|(allowed, _)| *allowed == name)
        .map(|(_, algorithm)| *algorithm)
        .ok_or_else(|| ValidationError::UnsupportedAlgorithm(name.to_owned()))?;
    if let Some(member) = header
        .keys()
        .find(|member| !ALLOWED_HEADER_MEMBERS.contains(&member.as_str()))
    {
        return Err(ValidationError::UnsupportedHeader(member.clone()));
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ == "JWT" || typ == "JOSE" => {}
        Some(Value::String(typ)) => return Err(ValidationError::InvalidType(typ.clone())),
        Some(other) => return Err(ValidationError::InvalidType(other.to_string())),
    }
    Ok(algorithm)
}

fn subject(claims: &Map<String, Value>) -> Result<SpiffeId, ValidationError> {
    let subject = string_member(claims, "sub").ok_or(ValidationError::MissingSubject)?;
    parse_spiffe_id(subject).map_err(|_| ValidationError::InvalidSubject(subject.to_owned()))
}

/// Builds the verification key, after checking that its type fits `algorithm` so that no
/// token can make the agent use a key with an algorithm it was not made for.
fn decoding_key(
    authority: &JwtAuthority,
    algorithm: Algorithm,
) -> Result<DecodingKey, ValidationError> {
    let mismatch = || ValidationError::KeyMismatch {
        key_id: authority.key_id.clone(),
        algorithm: format!("{algorithm:?}"),
    };
    // Sync only keeps keys that convert, so a failure here means a key of another type.
    let jwk = jwk_from_public_key_der(&authority.public_key_der, &authority.key_id)
        .map_err(|_| mismatch())?;
    let fits = match (
        jwk.get("kty").and_then(Value::as_str),
        jwk.get("crv").and_then(Value::as_str),
    ) {
        (Some("RSA"), _) => matches!(
            algorithm,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        (Some("EC"), Some("P-256")) => algorithm == Algorithm::ES256,
        (Some("EC"), Some("P-384")) => algorithm == Algorithm::ES384,
        _ => false,
    };
    if !fits {
        return Err(mismatch());
    }
    let jwk: Jwk = serde_json::from_value(jwk).map_err(|_| mismatch())?;
    DecodingKey::from_jwk(&jwk).map_err(|_| mismatch())
}

/// Verifies the signature and returns the payload. Claims are checked by the caller, which
/// gives precise errors and takes the check time as a parameter.
fn verify_signature(
    token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
) -> Result<Map<String, Value>, ValidationError> {
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(error) => match error.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                Err(ValidationError::InvalidSignature)
            }
            _ => Err(ValidationError::Malformed(error.to_string())),
        },
    }
}

/// Checks that `aud`, a string or an array of strings, none of them empty, contains `expected`.
fn check_audience(claims: &Map<String, Value>, expected: &str) -> Result<(), ValidationError> {
    let actual: Vec<String> = match claims.get("aud") {
        Some(Value::String(audience)) => vec![audience.clone()],
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| value.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(ValidationError::MissingAudience)?,
        _ => return Err(ValidationError::MissingAudience),
    };
    if actual.is_empty() || actual.iter().any(String::is_empty) {
        return Err(ValidationError::MissingAudience);
    }
    if actual.iter().any(|audience| audience == expected) {
        Ok(())
    } else {
        Err(ValidationError::AudienceMismatch {
            expected: expected.to_owned(),
            actual,
        })
    }
}

fn check_times(claims: &Map<String, Value>, now: SystemTime) -> Result<(), ValidationError> {
    let expires_at = claims
        .get("exp")
        .and_then(seconds_to_time)
        .ok_or(ValidationError::MissingExpiry)?;
    if now >= expires_at {
        return Err(ValidationError::Expired {
            expired_at: rfc3339(expires_at),
            checked_at: rfc3339(now),
        });
    }
    if let Some(value) = claims.get("nbf") {
        let not_before = seconds_to_time(value).ok_or_else(|| {
            ValidationError::Malformed("the nbf claim is not a number".to_owned())
        })?;
        if now < not_before {
            return Err(ValidationError::NotYetValid {
                not_before: rfc3339(not_before),
                checked_at: rfc3339(now),
            });
        }
    }
    Ok(())
}

/// Converts a NumericDate (seconds since the Unix epoch, possibly fractional) to a time.
fn seconds_to_time(value: &Value) -> Option<SystemTime> {
    let seconds = value.as_f64().filter(|seconds| seconds.is_finite())?;
    if seconds <= 0.0 {
        return Some(SystemTime::UNIX_EPOCH);
    }
    let duration = Duration::try_from_secs_f64(seconds).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(duration)
}

/// Quotes `value` with control characters escaped, cut after [`MAX_QUOTED_BYTES`] of escaped
/// text. Token values may be kilobytes long, and a status message that long breaks the client's
/// HTTP/2 stream.
pub(crate) fn quoted(value: &str) -> String {
    let mut escaped = String::new();
    for character in value.chars() {
        let piece = character.escape_debug().to_string();
        if escaped.len() + piece.len() > MAX_QUOTED_BYTES {
            return format!("\"{escaped}\"... ({} bytes)", value.len());
        }
        escaped.push_str(&piece);
    }
    format!("\"{escaped}\"")
}

/// Quotes the first [`MAX_QUOTED_VALUES`] of `values` as a list, each as [`quoted`] does.
fn quoted_list(values: &[String]) -> String {
    let mut items: Vec<String> = values
        .iter()
        .take(MAX_QUOTED_VALUES)
        .map(|value| quoted(value))
        .collect();
    if values.len() > MAX_QUOTED_VALUES {
        items.push(format!("and {} more", values.len() - MAX_QUOTED_VALUES));
    }
    format!("[{}]", items.join(", "))
}

fn string_member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Maximum size of a token the agent reads, so that no caller has it decode megabytes. A token
/// the server signs is under 1 KiB unless it carries long audiences.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Bytes of escaped text of a token-supplied value that an error message quotes.
const MAX_QUOTED_BYTES: usize = 256;
/// Values of a token-supplied list that an error message quotes.
const MAX_QUOTED_VALUES: usize = 8;

/// The JWS algorithms the JWT-SVID specification allows that jsonwebtoken can verify. ES512
/// is also allowed by the specification, but jsonwebtoken has no P-521 support.
const ALLOWED_ALGORITHMS: [(&str, Algorithm); 8] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
];
const ALLOWED_HEADER_MEMBERS: [&str; 3] = ["alg", "kid", "typ"];
