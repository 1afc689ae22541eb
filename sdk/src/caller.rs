//! The caller behind the peer: a JWT-SVID in a request header, validated locally against the
//! JWT bundles, never sent to the agent.
//!
//! By default the token is read from `authorization: Bearer <JWT-SVID>`, the header that
//! clients send and that gateways such as nginx forward unchanged. [`CallerJwt::header`]
//! chooses another header, such as `x-signet-caller`, whose whole value is then the token.
//!
//! An `authorization` header with another scheme, such as `Basic abc`, is no caller JWT-SVID:
//! the request has no caller, as if the header were absent, so rules that need no caller still
//! allow it and rules that need one return 401. A `Bearer` value is always validated, and a
//! rejected token is always 401.

use std::fmt;
use std::sync::Arc;

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};
use spiffe::bundle::BundleSource;
use spiffe::svid::jwt::JwtVerificationErrorKind;
use spiffe::{JwtBundle, JwtSvid, JwtSvidError, SpiffeId};

/// Validates caller JWT-SVIDs for the service's own audiences.
#[derive(Clone)]
pub struct CallerJwt {
    header: HeaderName,
    audiences: Arc<[String]>,
    validate: Arc<Validate>,
}

/// The reason a request's caller JWT-SVID was rejected. The text is safe to send to the
/// client, because it never contains the token.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallerError {
    /// The header appears more than once, so the caller is ambiguous.
    #[error("several caller headers")]
    Ambiguous,
    /// `authorization` contains `Bearer` without a token, or the header is not text.
    #[error("malformed caller header: expected \"Bearer <JWT-SVID>\"")]
    Malformed,
    /// The token's `exp` has passed, or its `nbf` is still ahead.
    #[error("JWT-SVID expired or not yet valid")]
    Expired,
    /// The token's `aud` contains none of the service's audiences.
    #[error("JWT-SVID audience does not include {0}")]
    WrongAudience(String),
    /// No JWT bundle is known for the trust domain of the token's subject.
    #[error("no JWT bundle for trust domain {0}")]
    UnknownTrustDomain(String),
    /// The signature does not verify, or no JWT authority of the bundle has the token's key ID.
    #[error("JWT-SVID signature not valid for the trust bundle")]
    BadSignature,
    /// The token is not a well-formed JWT-SVID.
    #[error("JWT-SVID invalid")]
    Invalid,
}

type Validate = dyn Fn(&str, &[String]) -> Result<JwtSvid, JwtSvidError> + Send + Sync;

// === impl CallerJwt ===

impl CallerJwt {
    /// Validates tokens against the JWT bundles of `bundles`, accepting those whose `aud`
    /// contains one of `audiences`.
    ///
    /// `bundles` is normally a [`spiffe::JwtSource`] from
    /// [`WorkloadIdentity::jwt_source`](crate::WorkloadIdentity::jwt_source), which the agent's
    /// stream keeps current; a fixed [`spiffe::JwtBundleSet`] also works.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use signet_sdk::{CallerJwt, WorkloadIdentity};
    ///
    /// # async fn run() -> Result<(), signet_sdk::WorkloadIdentityError> {
    /// let identity = WorkloadIdentity::builder().build().await?;
    /// let callers = CallerJwt::new(identity.jwt_source().await?, ["spiffe://example.org/orders"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new<B, I, S>(bundles: B, audiences: I) -> Self
    where
        B: BundleSource<Item = JwtBundle> + Send + Sync + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let validate = move |token: &str, audiences: &[String]| {
            JwtSvid::parse_and_validate(token, &bundles, audiences)
        };
        Self {
            header: AUTHORIZATION,
            audiences: audiences.into_iter().map(Into::into).collect(),
            validate: Arc::new(validate),
        }
    }

    /// Reads the token from `header` instead of `authorization`. Any header other than
    /// `authorization` contains the bare token, without `Bearer`.
    #[must_use]
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Returns the caller's SPIFFE ID when `headers` carry a valid JWT-SVID, and `None` when
    /// they carry none (an `authorization` header with a scheme other than `Bearer` carries
    /// none).
    ///
    /// # Errors
    ///
    /// A [`CallerError`] when the header is present but its token is rejected.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Option<SpiffeId>, CallerError> {
        let mut values = headers.get_all(&self.header).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(CallerError::Ambiguous);
        }
        let value = value.to_str().map_err(|_| CallerError::Malformed)?;
        let token = if self.header == AUTHORIZATION {
            match bearer_token(value) {
                Token::Bearer(token) => token,
                Token::OtherScheme => return Ok(None),
                Token::Missing => return Err(CallerError::Malformed),
            }
        } else {
            value.trim()
        };
        (self.validate)(token, &self.audiences)
            .map(|svid| Some(svid.spiffe_id().clone()))
            .map_err(|error| self.rejection(&error))
    }

    fn rejection(&self, error: &JwtSvidError) -> CallerError {
        match error {
            JwtSvidError::InvalidToken(verification) => match verification.kind() {
                JwtVerificationErrorKind::Expired | JwtVerificationErrorKind::NotYetValid => {
                    CallerError::Expired
                }
                JwtVerificationErrorKind::AudienceMismatch => {
                    CallerError::WrongAudience(self.audiences.join(", "))
                }
                JwtVerificationErrorKind::InvalidSignature => CallerError::BadSignature,
                _ => CallerError::Invalid,
            },
            JwtSvidError::InvalidAudience(..) => {
                CallerError::WrongAudience(self.audiences.join(", "))
            }
            JwtSvidError::BundleNotFound(trust_domain) => {
                CallerError::UnknownTrustDomain(trust_domain.to_string())
            }
            JwtSvidError::AuthorityNotFound(_) => CallerError::BadSignature,
            _ => CallerError::Invalid,
        }
    }
}

impl fmt::Debug for CallerJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerJwt")
            .field("header", &self.header)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

/// The content of an `authorization` value.
#[derive(Debug, Eq, PartialEq)]
enum Token<'a> {
    /// `Bearer <token>`.
    Bearer(&'a str),
    /// `Bearer` without a token.
    Missing,
    /// Another scheme, such as `Basic`.
    OtherScheme,
}

/// Reads an `authorization` value; the scheme is case-insensitive (RFC 9110).
fn bearer_token(value: &str) -> Token<'_> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    match (scheme.eq_ignore_ascii_case("bearer"), token.is_empty()) {
        (false, _) => Token::OtherScheme,
        (true, true) => Token::Missing,
        (true, false) => Token::Bearer(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_reads_scheme_in_any_case() {
        assert_eq!(bearer_token("Bearer abc"), Token::Bearer("abc"));
        assert_eq!(bearer_token("bearer  abc "), Token::Bearer("abc"));
        assert_eq!(bearer_token("Basic abc"), Token::OtherScheme);
        assert_eq!(bearer_token("Bearer"), Token::Missing);
        assert_eq!(bearer_token("Bearer "), Token::Missing);
    }

    #[test]
    fn absent_header_means_no_caller() {
        let callers = CallerJwt::new(spiffe::JwtBundleSet::new(), ["orders"]);
        assert_eq!(callers.caller(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn other_schemes_mean_no_caller() {
        let callers = CallerJwt::new(spiffe::JwtBundleSet::new(), ["orders"]);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(callers.caller(&headers), Ok(None));
    }

    #[test]
    fn malformed_and_repeated_headers_are_rejected() {
        let callers = CallerJwt::new(spiffe::JwtBundleSet::new(), ["orders"]);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer".parse().unwrap());
        assert_eq!(callers.caller(&headers), Err(CallerError::Malformed));

        headers.append(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(callers.caller(&headers), Err(CallerError::Ambiguous));
    }

    #[test]
    fn token_of_trust_domain_without_bundle_names_it() {
        // Header {"alg":"ES256","kid":"k1","typ":"JWT"}, claims with the subject
        // spiffe://other.org/billing, audience "orders" and expiry in 2100, and a dummy
        // signature: the bundle lookup fails before the signature is checked.
        let token = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.\
                     eyJzdWIiOiJzcGlmZmU6Ly9vdGhlci5vcmcvYmlsbGluZyIsImF1ZCI6WyJvcmRlcnMiXSwiZXhwIjo0MTAyNDQ0ODAwfQ.\
                     c2ln";
        let callers = CallerJwt::new(spiffe::JwtBundleSet::new(), ["orders"]);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        let error = callers.caller(&headers).unwrap_err();
        assert_eq!(
            error,
            CallerError::UnknownTrustDomain("other.org".to_owned())
        );
        assert_eq!(
            error.to_string(),
            "no JWT bundle for trust domain other.org"
        );
    }

    #[test]
    fn token_of_unknown_trust_domain_is_rejected() {
        let callers = CallerJwt::new(spiffe::JwtBundleSet::new(), ["orders"])
            .header(HeaderName::from_static("x-signet-caller"));
        let mut headers = HeaderMap::new();
        headers.insert("x-signet-caller", "not-a-jwt".parse().unwrap());
        assert_eq!(callers.caller(&headers), Err(CallerError::Invalid));
    }
}
