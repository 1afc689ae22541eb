//! JWT-SVID signing: the JOSE header and claims, with the token lifetime cut to the key's
//! notAfter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use signet_core::audience::{check_audience, normalize_audience};
use spiffe::{SpiffeId, TrustDomain};

use super::{JwtError, JwtSigningKey, SignedJwtSvid, jws};

/// Signs JWT-SVIDs for one trust domain with one [`JwtSigningKey`].
///
/// After the key's notAfter, signing fails with [`JwtError::KeyExpired`]; the server's rotation
/// replaces the signer long before that.
#[derive(Debug)]
pub struct JwtSigner {
    trust_domain: TrustDomain,
    issuer: Option<String>,
    default_ttl: Duration,
    key: JwtSigningKey,
    /// The base64url JOSE header, the same for every token of `key`.
    encoded_header: String,
    /// Whether a lifetime cut to the key's notAfter has been logged at warn.
    ttl_cut_logged: AtomicBool,
}

/// The claims of a JWT-SVID, as signed and as tests decode them.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct JwtSvidClaims {
    /// The SPIFFE ID of the workload.
    pub sub: String,
    /// The audiences, always serialized as a JSON array, even for one value.
    pub aud: Vec<String>,
    /// Expiry, in Unix seconds.
    pub exp: u64,
    /// Issue time, in Unix seconds.
    pub iat: u64,
    /// Issuer URL, present when the server is configured with one (for OIDC relying parties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

impl JwtSigner {
    /// Signs with `key` for `trust_domain`, adding `iss` to every token when `issuer` is set.
    /// `default_ttl` is the lifetime of tokens whose request sets none.
    pub fn new(
        trust_domain: TrustDomain,
        issuer: Option<String>,
        default_ttl: Duration,
        key: JwtSigningKey,
    ) -> Self {
        Self {
            trust_domain,
            issuer,
            default_ttl,
            encoded_header: jws::encode_header(key.key_type(), key.key_id()),
            key,
            ttl_cut_logged: AtomicBool::new(false),
        }
    }

    /// Returns the lifetime of tokens whose request or entry sets none.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// Returns the signing key, whose public half the bundle publishes.
    pub fn key(&self) -> &JwtSigningKey {
        &self.key
    }

    /// Signs a JWT-SVID for `spiffe_id` and `audience`, valid for `ttl` or until the key's
    /// notAfter, whichever comes first. The `aud` claim is `audience` sorted, each value once,
    /// as the agent requests it.
    ///
    /// # Errors
    ///
    /// [`JwtError::InvalidAudience`] for no audience, an empty one or too many,
    /// [`JwtError::InvalidSubject`] for an ID outside the trust domain or without a path,
    /// [`JwtError::InvalidTtl`] for a zero TTL, [`JwtError::KeyExpired`] once the key has expired,
    /// and [`JwtError::Signing`] when the crypto library fails to sign.
    pub fn sign(
        &self,
        spiffe_id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
    ) -> Result<SignedJwtSvid, JwtError> {
        self.sign_at(spiffe_id, audience, ttl, SystemTime::now())
    }

    /// Does the work of [`Self::sign`] with `now` as the current time.
    pub(super) fn sign_at(
        &self,
        spiffe_id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<SignedJwtSvid, JwtError> {
        self.check_subject(spiffe_id)?;
        check_audience(audience)?;
        let (issued_at, expires_at) = self.lifetime(ttl, now)?;

        let claims = JwtSvidClaims {
            sub: spiffe_id.to_string(),
            aud: normalize_audience(audience),
            exp: unix_seconds(expires_at),
            iat: unix_seconds(issued_at),
            iss: self.issuer.clone(),
        };
        let signing_failed = || JwtError::Signing {
            key_id: self.key.key_id().to_owned(),
        };
        let claims_json = serde_json::to_vec(&claims).map_err(|_| signing_failed())?;
        let token = jws::encode(&self.encoded_header, &claims_json, self.key.jws_key())
            .map_err(|_| signing_failed())?;

        Ok(SignedJwtSvid {
            token,
            issued_at,
            expires_at,
        })
    }

    fn check_subject(&self, spiffe_id: &SpiffeId) -> Result<(), JwtError> {
        let invalid = |reason: String| JwtError::InvalidSubject {
            spiffe_id: spiffe_id.to_string(),
            reason,
        };
        if !spiffe_id.is_member_of(&self.trust_domain) {
            return Err(invalid(format!(
                "not in trust domain {}",
                self.trust_domain
            )));
        }
        if spiffe_id.path().is_empty() {
            return Err(invalid("a workload SPIFFE ID needs a path".to_owned()));
        }
        Ok(())
    }

    /// Returns `iat` and `exp`, both whole seconds, with `exp` at most the key's notAfter.
    fn lifetime(
        &self,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<(SystemTime, SystemTime), JwtError> {
        let invalid_ttl = JwtError::InvalidTtl {
            ttl_seconds: ttl.as_secs(),
        };
        if ttl.is_zero() {
            return Err(invalid_ttl);
        }
        let issued_at = UNIX_EPOCH + Duration::from_secs(unix_seconds(now));
        let not_after = self.key.not_after();
        if issued_at >= not_after {
            return Err(JwtError::KeyExpired {
                key_id: self.key.key_id().to_owned(),
                expired_at: humantime::format_rfc3339_seconds(not_after).to_string(),
            });
        }

        let requested = issued_at.checked_add(ttl).ok_or(invalid_ttl)?;
        let expires_at = if requested > not_after {
            self.log_ttl_cut(ttl);
            not_after
        } else {
            requested
        };
        Ok((issued_at, expires_at))
    }

    /// Logs a TTL cut at warn the first time for this key and at debug afterwards, so that a TTL
    /// longer than the key's remaining life does not log once per signature.
    fn log_ttl_cut(&self, ttl: Duration) {
        let key_id = self.key.key_id();
        let key_expiry = humantime::format_rfc3339_seconds(self.key.not_after());
        if self.ttl_cut_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(%key_id, ?ttl, %key_expiry, "JWT-SVID TTL cut to the signing key's expiry");
        } else {
            tracing::warn!(
                %key_id,
                ?ttl,
                %key_expiry,
                "JWT-SVID TTL cut to the signing key's expiry; request a shorter JWT-SVID TTL or \
                 give the server a longer --ca-ttl"
            );
        }
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
