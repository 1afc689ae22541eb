//! JWT-SVIDs on the agent: the cache of tokens the server signed for workloads, and the
//! validation of tokens against the JWT authorities of the trust domain.
//!
//! The server signs every JWT-SVID, so the agent has no JWT signing key: SPIRE's `NewJWTSVID` for
//! entries with one SPIFFE ID, Signet's `TemplateSvid/NewJWTSVID` with the concrete ID for entries
//! with a SPIFFE ID template. Tokens are cached per registration entry, concrete SPIFFE ID and
//! audience set and reused until half their lifetime.
//! A workload that requests a token for every call it makes thus costs the server one
//! signature per half lifetime.

mod cache;
mod validate;

use std::fmt;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use signet_proto::spire::api::types::Jwtsvid;
use spiffe::SpiffeId;
use zeroize::Zeroizing;

pub use self::cache::JwtSvidCache;
pub(crate) use self::validate::quoted;
pub use self::validate::{MAX_TOKEN_BYTES, ValidatedJwtSvid, ValidationError, validate};
use crate::node::{Node, describe_status};

/// Has JWT-SVIDs signed for registration entries. The agent's [`Node`] implements it by calling
/// the server's `NewJWTSVID`, or `TemplateSvid/NewJWTSVID` for a template entry.
pub trait JwtSigner: fmt::Debug + Send + Sync {
    /// Signs a JWT-SVID for `subject` whose `aud` claim is `audience`.
    ///
    /// # Errors
    ///
    /// [`FetchError`] when the server cannot be reached, rejects the request or returns no
    /// usable token.
    fn new_jwt_svid<'a>(
        &'a self,
        subject: JwtSubject<'a>,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvidToken, FetchError>>;
}

/// The identity a JWT-SVID is signed for.
#[derive(Clone, Copy, Debug)]
pub struct JwtSubject<'a> {
    /// ID of the registration entry.
    pub entry_id: &'a str,
    /// The token's `sub`: the entry's SPIFFE ID, or its template filled in for the workload.
    pub spiffe_id: &'a SpiffeId,
    /// Whether the entry has a SPIFFE ID template, so the request to the server must carry
    /// `spiffe_id`.
    pub from_template: bool,
}

/// A signed JWT-SVID with its lifetime. Debug shows the lifetime only, never the token.
#[derive(Clone)]
pub struct JwtSvidToken {
    /// The token in JWS compact serialization, wiped from memory on drop.
    pub token: Zeroizing<String>,
    /// The token's `iat`, or the time the agent received it when the server sent none.
    pub issued_at: SystemTime,
    /// The token's `exp`.
    pub expires_at: SystemTime,
}

/// Error from having a JWT-SVID signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The `NewJWTSVID` call failed.
    #[error("NewJWTSVID call to the server failed: {code:?}: {message}")]
    Rpc {
        /// gRPC status code.
        code: tonic::Code,
        /// Status message, followed by the causes of a transport failure.
        message: String,
    },
    /// The server's response contains no token, or one that has already expired.
    #[error("the server returned an unusable JWT-SVID: {0}")]
    InvalidResponse(&'static str),
}

// === impl FetchError ===

impl FetchError {
    /// Returns true when the server rejected the request as invalid, so repeating it unchanged
    /// cannot succeed.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Self::Rpc {
                code: tonic::Code::InvalidArgument,
                ..
            }
        )
    }
}

// === impl JwtSvidToken ===

impl JwtSvidToken {
    /// Checks the `NewJWTSVID` result `svid` received at `now`.
    ///
    /// # Errors
    ///
    /// [`FetchError::InvalidResponse`] when the token is missing or empty, or expires at or
    /// before `now`.
    pub fn from_proto(svid: Option<Jwtsvid>, now: SystemTime) -> Result<Self, FetchError> {
        let svid = svid.ok_or(FetchError::InvalidResponse("the response has no JWT-SVID"))?;
        if svid.token.is_empty() {
            return Err(FetchError::InvalidResponse("the token is empty"));
        }
        let expires_at = unix_seconds(svid.expires_at)
            .filter(|expires_at| *expires_at > now)
            .ok_or(FetchError::InvalidResponse("the token has already expired"))?;
        let issued_at = unix_seconds(svid.issued_at)
            .filter(|issued_at| *issued_at < expires_at)
            .unwrap_or(now);
        Ok(Self {
            token: Zeroizing::new(svid.token),
            issued_at,
            expires_at,
        })
    }

    /// Returns true once the token is past half its lifetime, when the agent has a new one
    /// signed, so a workload never receives a token that is about to expire.
    pub fn is_due(&self, now: SystemTime) -> bool {
        let lifetime = self
            .expires_at
            .duration_since(self.issued_at)
            .unwrap_or_default();
        now >= self.issued_at + lifetime / 2
    }
}

impl fmt::Debug for JwtSvidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvidToken")
            .field("token", &"<redacted>")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

// === impl Node ===

impl JwtSigner for Node {
    fn new_jwt_svid<'a>(
        &'a self,
        subject: JwtSubject<'a>,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvidToken, FetchError>> {
        Box::pin(async move {
            let client = self.client();
            let svid = if subject.from_template {
                client
                    .new_template_jwt_svid(subject.entry_id, subject.spiffe_id, audience)
                    .await
            } else {
                client.new_jwt_svid(subject.entry_id, audience).await
            };
            let svid = svid.map_err(|status| FetchError::Rpc {
                code: status.code(),
                message: describe_status(&status),
            })?;
            JwtSvidToken::from_proto(svid, SystemTime::now())
        })
    }
}

/// Converts seconds since the Unix epoch, where zero or less means unset.
fn unix_seconds(seconds: i64) -> Option<SystemTime> {
    let seconds = u64::try_from(seconds).ok().filter(|seconds| *seconds > 0)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
