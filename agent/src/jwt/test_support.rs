//! JWT signing keys and a counting signer for tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PublicKeyData as _};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::{FetchError, JwtSigner, JwtSubject, JwtSvidToken};
use crate::cache::JwtAuthority;

/// An EC signing key with its key ID.
pub(crate) struct TestJwtKey {
    pub(crate) key_id: String,
    pub(crate) algorithm: Algorithm,
    encoding: EncodingKey,
    public_key_der: Vec<u8>,
}

/// A [`JwtSigner`] that signs with a [`TestJwtKey`], using the subject's SPIFFE ID as `sub`, and
/// counts its calls, and separately those for template entries. With a gate, each call first
/// waits for a permit.
#[derive(Debug)]
pub(crate) struct TestSigner {
    pub(crate) key: TestJwtKey,
    pub(crate) lifetime: Duration,
    pub(crate) calls: AtomicUsize,
    pub(crate) template_calls: AtomicUsize,
    pub(crate) gate: Option<Arc<Semaphore>>,
    /// Status of every call instead of a token, when set.
    pub(crate) failure: Option<tonic::Status>,
}

impl TestJwtKey {
    /// Returns a P-256 key for ES256.
    pub(crate) fn es256(key_id: &str) -> Self {
        Self::generate(key_id, &PKCS_ECDSA_P256_SHA256, Algorithm::ES256)
    }

    /// Returns a P-384 key for ES384.
    pub(crate) fn es384(key_id: &str) -> Self {
        Self::generate(key_id, &PKCS_ECDSA_P384_SHA384, Algorithm::ES384)
    }

    fn generate(
        key_id: &str,
        algorithm: &'static rcgen::SignatureAlgorithm,
        jwt_algorithm: Algorithm,
    ) -> Self {
        let key = KeyPair::generate_for(algorithm).unwrap();
        Self {
            key_id: key_id.to_owned(),
            algorithm: jwt_algorithm,
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            public_key_der: key.subject_public_key_info(),
        }
    }

    pub(crate) fn authority(&self) -> JwtAuthority {
        JwtAuthority {
            key_id: self.key_id.clone(),
            public_key_der: self.public_key_der.clone(),
            expires_at: None,
            tainted: false,
        }
    }

    /// Signs `header` and `claims` as given, so tests can build any header.
    pub(crate) fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", encode_part(header), encode_part(claims));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.algorithm).unwrap();
        format!("{message}.{signature}")
    }

    /// Returns the header this key puts on a JWT-SVID.
    pub(crate) fn header(&self) -> Value {
        json!({"alg": format!("{:?}", self.algorithm), "kid": self.key_id, "typ": "JWT"})
    }

    /// Signs a JWT-SVID for `spiffe_id` and `audience`, issued now.
    pub(crate) fn token(&self, spiffe_id: &str, audience: &[&str], lifetime: Duration) -> String {
        let now = unix_seconds(SystemTime::now());
        let claims = json!({
            "sub": spiffe_id,
            "aud": audience,
            "iat": now,
            "exp": now + lifetime.as_secs(),
        });
        self.sign_raw(&self.header(), &claims)
    }
}

impl std::fmt::Debug for TestJwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestJwtKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl TestSigner {
    pub(crate) fn new(lifetime: Duration) -> Self {
        Self {
            key: TestJwtKey::es256("test-key"),
            lifetime,
            calls: AtomicUsize::new(0),
            template_calls: AtomicUsize::new(0),
            gate: None,
            failure: None,
        }
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn template_calls(&self) -> usize {
        self.template_calls.load(Ordering::SeqCst)
    }
}

impl JwtSigner for TestSigner {
    fn new_jwt_svid<'a>(
        &'a self,
        subject: JwtSubject<'a>,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvidToken, FetchError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if subject.from_template {
                self.template_calls.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            if let Some(status) = &self.failure {
                return Err(FetchError::Rpc {
                    code: status.code(),
                    message: status.message().to_owned(),
                });
            }
            let audience: Vec<&str> = audience.iter().map(String::as_str).collect();
            let issued_at = UNIX_EPOCH + Duration::from_secs(unix_seconds(SystemTime::now()));
            Ok(JwtSvidToken {
                token: Zeroizing::new(self.key.token(
                    &subject.spiffe_id.to_string(),
                    &audience,
                    self.lifetime,
                )),
                issued_at,
                expires_at: issued_at + self.lifetime,
            })
        })
    }
}

fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs()
}
