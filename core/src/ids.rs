//! SPIFFE IDs with a fixed meaning in SPIRE deployments, and conversion to the API's split form.

use sha2::{Digest, Sha256};
use signet_proto::spire::api::types::Spiffeid;
use spiffe::{SpiffeId, SpiffeIdError, TrustDomain};

/// Error from turning an API SPIFFE ID or untrusted text into a [`SpiffeId`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The trust domain and path do not form a valid SPIFFE ID.
    #[error("invalid SPIFFE ID {id:?}")]
    Invalid {
        /// The ID as assembled from the request.
        id: String,
        /// The SPIFFE ID parser's error.
        #[source]
        source: SpiffeIdError,
    },
    /// The ID parses only after normalisation (upper-case scheme or trust domain), which the
    /// SPIFFE ID standard forbids.
    #[error("invalid SPIFFE ID {0:?}: scheme and trust domain must be lower case")]
    NotCanonical(String),
    /// The trust domain name is invalid or not in its canonical lower-case form.
    #[error("invalid trust domain {0:?}: use lower-case letters, digits, '.', '-' and '_' only")]
    InvalidTrustDomain(String),
    /// The ID is longer than X.509 and JWT consumers accept.
    #[error("SPIFFE ID is {length} bytes long: the maximum is {max}")]
    TooLong {
        /// Length of the rejected ID in bytes.
        length: usize,
        /// The longest accepted ID.
        max: usize,
    },
    /// The ID field was absent from the request.
    #[error("missing SPIFFE ID")]
    Missing,
}

/// Parses a SPIFFE ID from untrusted text, strictly.
///
/// The `spiffe` crate accepts an upper-case scheme or trust domain and lowers it; the standard
/// requires rejecting them, so the text must equal the parsed ID's canonical form.
///
/// # Errors
///
/// [`IdError::Invalid`] when the text is no SPIFFE ID, [`IdError::NotCanonical`] when it is one
/// only after normalisation.
pub fn parse_spiffe_id(text: &str) -> Result<SpiffeId, IdError> {
    if text.len() > MAX_SPIFFE_ID_LEN {
        return Err(IdError::TooLong {
            length: text.len(),
            max: MAX_SPIFFE_ID_LEN,
        });
    }
    let id = SpiffeId::new(text).map_err(|source| IdError::Invalid {
        id: text.to_owned(),
        source,
    })?;
    if id.to_string() != text {
        return Err(IdError::NotCanonical(text.to_owned()));
    }
    Ok(id)
}

/// Parses a trust domain name (`example.org`, not `spiffe://example.org`) from untrusted text.
///
/// # Errors
///
/// [`IdError::InvalidTrustDomain`] when the name is invalid or not lower case.
pub fn parse_trust_domain(name: &str) -> Result<TrustDomain, IdError> {
    match TrustDomain::new(name) {
        Ok(trust_domain) if trust_domain.as_str() == name => Ok(trust_domain),
        _ => Err(IdError::InvalidTrustDomain(name.to_owned())),
    }
}

/// Returns the ID of an agent attested with a join token, as SPIRE forms it:
/// `spiffe://<td>/spire/agent/join_token/<token>`.
///
/// # Errors
///
/// [`IdError::Invalid`] when the token has characters a SPIFFE ID path may not contain.
pub fn join_token_agent_id(trust_domain: &TrustDomain, token: &str) -> Result<SpiffeId, IdError> {
    build(
        trust_domain.as_str(),
        &format!("{JOIN_TOKEN_PATH_PREFIX}{token}"),
    )
}

/// Returns an agent SPIFFE ID fit for logs and messages.
///
/// A join-token agent's ID ends with the token, which stays a secret the operator handled even
/// after use. It is replaced by `sha256:` and the first 12 hex digits of the token's SHA-256
/// digest, which still distinguishes agents. Other IDs are returned unchanged.
pub fn redacted_agent_id(agent_id: &SpiffeId) -> String {
    match agent_id.path().strip_prefix(JOIN_TOKEN_PATH_PREFIX) {
        Some(token) => {
            let digest = Sha256::digest(token.as_bytes());
            let fingerprint = hex::encode(digest.get(..6).unwrap_or_default());
            format!(
                "spiffe://{}{JOIN_TOKEN_PATH_PREFIX}sha256:{fingerprint}",
                agent_id.trust_domain()
            )
        }
        None => agent_id.to_string(),
    }
}

/// Returns the server's own ID, `spiffe://<td>/spire/server`, the parent of node alias entries.
pub fn server_id(trust_domain: &TrustDomain) -> SpiffeId {
    // A valid trust domain followed by this fixed path always forms a valid SPIFFE ID.
    build(trust_domain.as_str(), "/spire/server").unwrap_or_else(|_| unreachable_id())
}

/// Splits a SPIFFE ID into the API's trust domain and path fields.
pub fn to_proto_id(id: &SpiffeId) -> Spiffeid {
    Spiffeid {
        trust_domain: id.trust_domain_name().to_owned(),
        path: id.path().to_owned(),
    }
}

/// Joins the API's trust domain and path fields into a checked SPIFFE ID.
///
/// # Errors
///
/// [`IdError::Missing`] when `id` is `None`, [`IdError::Invalid`] when the parts do not form a
/// valid SPIFFE ID.
pub fn from_proto_id(id: Option<&Spiffeid>) -> Result<SpiffeId, IdError> {
    let id = id.ok_or(IdError::Missing)?;
    build(&id.trust_domain, &id.path)
}

fn build(trust_domain: &str, path: &str) -> Result<SpiffeId, IdError> {
    parse_trust_domain(trust_domain)?;
    parse_spiffe_id(&format!("spiffe://{trust_domain}{path}"))
}

#[expect(clippy::panic, reason = "called only where the ID was proven valid")]
fn unreachable_id() -> SpiffeId {
    panic!("a trust domain with the path /spire/server must form a valid SPIFFE ID")
}

const JOIN_TOKEN_PATH_PREFIX: &str = "/spire/agent/join_token/";

/// Longest SPIFFE ID accepted: the SPIFFE ID standard caps URIs at 2048 bytes, and SPIFFE clients
/// reject longer URI SANs.
const MAX_SPIFFE_ID_LEN: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    fn example_org() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    #[test]
    fn join_token_agent_id_matches_spire_shape() {
        let id = join_token_agent_id(&example_org(), "c0ffee").unwrap();
        assert_eq!(
            id.to_string(),
            "spiffe://example.org/spire/agent/join_token/c0ffee"
        );
    }

    #[test]
    fn redacted_agent_id_hides_join_token() {
        let id = join_token_agent_id(&example_org(), "c0ffee").unwrap();
        let redacted = redacted_agent_id(&id);
        assert!(!redacted.contains("c0ffee"), "{redacted}");
        // The first six bytes of SHA-256("c0ffee").
        let expected = hex::encode(&Sha256::digest(b"c0ffee")[..6]);
        assert_eq!(
            redacted,
            format!("spiffe://example.org/spire/agent/join_token/sha256:{expected}")
        );
        let server = server_id(&example_org());
        assert_eq!(redacted_agent_id(&server), server.to_string());
    }

    #[test]
    fn join_token_with_slash_is_rejected() {
        assert!(join_token_agent_id(&example_org(), "a/../b").is_err());
    }

    #[test]
    fn parse_spiffe_id_is_strict() {
        assert!(parse_spiffe_id("spiffe://example.org/web").is_ok());
        let rejected = [
            "spiffe://Example.org/web",
            "SPIFFE://example.org/web",
            "spiffe://example.org/web/",
            "spiffe://example.org:8443/web",
            "spiffe://user@example.org/web",
            "spiffe://example.org/web?q=1",
            "spiffe://example.org/web#f",
            "spiffe://example.org/a//b",
            "spiffe://example.org/./a",
            "spiffe:///web",
            "http://example.org/web",
            "example.org/web",
            "",
        ];
        for text in rejected {
            assert!(parse_spiffe_id(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn parse_spiffe_id_limits_length() {
        let prefix = "spiffe://example.org/";
        let longest = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
        assert!(parse_spiffe_id(&longest).is_ok());
        let too_long = format!("{longest}a");
        assert!(matches!(
            parse_spiffe_id(&too_long),
            Err(IdError::TooLong { length: 2049, .. })
        ));
    }

    #[test]
    fn parse_trust_domain_is_strict() {
        assert!(parse_trust_domain("example.org").is_ok());
        for name in ["Example.org", "spiffe://example.org", "ex ample", "", "a/b"] {
            assert!(parse_trust_domain(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn server_id_is_spire_server_path() {
        assert_eq!(
            server_id(&example_org()).to_string(),
            "spiffe://example.org/spire/server"
        );
    }

    #[test]
    fn proto_id_round_trips() {
        let id = SpiffeId::new("spiffe://example.org/ns/prod/sa/web").unwrap();
        assert_eq!(from_proto_id(Some(&to_proto_id(&id))).unwrap(), id);
    }

    #[test]
    fn proto_id_rejects_bad_parts() {
        let bad = Spiffeid {
            trust_domain: "Example.org".to_owned(),
            path: "/x".to_owned(),
        };
        assert!(matches!(
            from_proto_id(Some(&bad)),
            Err(IdError::InvalidTrustDomain(_))
        ));
        let smuggled_path = Spiffeid {
            trust_domain: "example.org/admin".to_owned(),
            path: String::new(),
        };
        assert!(from_proto_id(Some(&smuggled_path)).is_err());
        assert!(matches!(from_proto_id(None), Err(IdError::Missing)));
    }
}
