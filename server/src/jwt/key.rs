//! The JWT signing key: generated for a key type, and kept in its own directory so that a restart
//! keeps the same `kid` and published public key while the key is valid.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::distr::Alphanumeric;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::jws::JwsSigningKey;
use super::{JwtError, JwtKeyType};

/// A JWT signing key with its `kid` and notAfter time.
///
/// Only the public key (PKIX `SubjectPublicKeyInfo` DER) leaves this type. Debug shows the `kid`,
/// type and notAfter, never key material.
pub struct JwtSigningKey {
    key_id: String,
    key_type: JwtKeyType,
    not_before: SystemTime,
    not_after: SystemTime,
    public_key_der: Vec<u8>,
    jws_key: JwsSigningKey,
}

impl JwtSigningKey {
    /// Generates a key of `key_type` with a random 32-character `kid`, valid until `not_after`.
    ///
    /// # Errors
    ///
    /// [`JwtError::KeyGeneration`] when the random source or the key encoding fails.
    pub fn generate(key_type: JwtKeyType, not_after: SystemTime) -> Result<Self, JwtError> {
        let material = KeyMaterial::generate(key_type)?;
        let validity = (whole_seconds(SystemTime::now()), whole_seconds(not_after));
        Ok(material.into_key(random_key_id(), key_type, validity))
    }

    /// Loads the key stored in `dir` when it is present, of `key_type` and unexpired, else
    /// generates one valid for `ttl` and writes it there (key file mode 0600).
    ///
    /// # Errors
    ///
    /// [`JwtError::Io`] when the directory or files cannot be read or written, and
    /// [`JwtError::KeyGeneration`] or [`JwtError::InvalidTtl`] when creating the key fails.
    pub fn load_or_create(
        dir: &Path,
        key_type: JwtKeyType,
        ttl: Duration,
    ) -> Result<Self, JwtError> {
        match Self::load(dir, key_type)? {
            Some(key) => Ok(key),
            None => Self::create(dir, key_type, ttl),
        }
    }

    /// Loads the key stored in `dir`, or returns `None` when there is none or it is of another
    /// type, damaged or expired (the reason is logged).
    ///
    /// # Errors
    ///
    /// [`JwtError::KeyFileMode`] when other users may access the key file, [`JwtError::Io`] when
    /// its mode cannot be read.
    pub fn load(dir: &Path, key_type: JwtKeyType) -> Result<Option<Self>, JwtError> {
        let files = KeyFiles::new(dir);
        files.check_mode()?;
        match files.load(key_type) {
            Ok(Some(key)) => {
                tracing::info!(key_id = %key.key_id, path = %files.key_path.display(), "Loaded JWT signing key");
                Ok(Some(key))
            }
            Ok(None) => Ok(None),
            Err(reason) => {
                tracing::warn!(
                    path = %files.key_path.display(),
                    reason = %reason,
                    "Stored JWT signing key is not usable"
                );
                Ok(None)
            }
        }
    }

    /// Generates a key of `key_type` valid for `ttl` and writes it to `dir` (key file mode 0600).
    ///
    /// # Errors
    ///
    /// [`JwtError::Io`] when the files cannot be written, and [`JwtError::KeyGeneration`] or
    /// [`JwtError::InvalidTtl`] when creating the key fails.
    pub fn create(dir: &Path, key_type: JwtKeyType, ttl: Duration) -> Result<Self, JwtError> {
        let not_before = whole_seconds(SystemTime::now());
        let not_after = not_before.checked_add(ttl).ok_or(JwtError::InvalidTtl {
            ttl_seconds: ttl.as_secs(),
        })?;
        let key_id = random_key_id();
        let material = KeyMaterial::generate(key_type)?;
        let metadata = KeyMetadata {
            key_id,
            key_type: key_type.to_string(),
            not_before: unix_seconds(not_before),
            not_after: unix_seconds(not_after),
        };
        KeyFiles::new(dir).save(&material, &metadata)?;
        tracing::info!(key_id = %metadata.key_id, key_type = %key_type, "Created JWT signing key");
        Ok(material.into_key(metadata.key_id, key_type, (not_before, not_after)))
    }

    /// Returns the `kid` that tokens and the bundle name this key by.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Returns the key type.
    pub fn key_type(&self) -> JwtKeyType {
        self.key_type
    }

    /// Returns when the key was created.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// Returns the time after which the key signs nothing.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Returns the public key as PKIX `SubjectPublicKeyInfo` DER, the form the bundle stores.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    pub(super) fn jws_key(&self) -> &JwsSigningKey {
        &self.jws_key
    }
}

impl fmt::Debug for JwtSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigningKey")
            .field("key_id", &self.key_id)
            .field("key_type", &self.key_type)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The private key as PKCS#8 PEM (for the key file), the key parsed for signing and the public
/// key DER.
// NOTE: the PEM, the PKCS#8 buffers and the `rsa` crate's key are wiped when dropped, but ring's
// parsed key pairs and rcgen's `KeyPair` used for ECDSA keys are not.
struct KeyMaterial {
    pkcs8_pem: Zeroizing<String>,
    jws_key: JwsSigningKey,
    public_key_der: Vec<u8>,
}

impl KeyMaterial {
    fn generate(key_type: JwtKeyType) -> Result<Self, JwtError> {
        let failed = |reason: String| JwtError::KeyGeneration {
            key_type: key_type.to_string(),
            reason,
        };
        if key_type.is_rsa() {
            let key =
                RsaPrivateKey::new(&mut OsRng, RSA_KEY_BITS).map_err(|e| failed(e.to_string()))?;
            Self::from_rsa(&key, key_type).map_err(failed)
        } else {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
                .map_err(|e| failed(e.to_string()))?;
            Self::from_ec(&key).map_err(failed)
        }
    }

    /// Parses a PKCS#8 PEM key of `key_type`, returning why it cannot be used if it cannot.
    fn parse(pem: &str, key_type: JwtKeyType) -> Result<Self, String> {
        if key_type.is_rsa() {
            let key = RsaPrivateKey::from_pkcs8_pem(pem)
                .map_err(|e| format!("not an RSA PKCS#8 key: {e}"))?;
            return Self::from_rsa(&key, key_type);
        }
        let key = KeyPair::from_pem(pem).map_err(|e| format!("not a PKCS#8 key: {e}"))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err("not an ECDSA P-256 key".to_owned());
        }
        Self::from_ec(&key)
    }

    fn from_ec(key: &KeyPair) -> Result<Self, String> {
        let pkcs8_der = Zeroizing::new(key.serialize_der());
        Ok(Self {
            pkcs8_pem: Zeroizing::new(key.serialize_pem()),
            jws_key: JwsSigningKey::from_pkcs8(JwtKeyType::Es256, &pkcs8_der)?,
            public_key_der: key.subject_public_key_info(),
        })
    }

    fn from_rsa(key: &RsaPrivateKey, key_type: JwtKeyType) -> Result<Self, String> {
        let pkcs8_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| format!("PKCS#8 encoding failed: {e}"))?;
        let pkcs8_der = key
            .to_pkcs8_der()
            .map_err(|e| format!("PKCS#8 encoding failed: {e}"))?;
        let public_key_der = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| format!("public key encoding failed: {e}"))?;
        Ok(Self {
            pkcs8_pem,
            jws_key: JwsSigningKey::from_pkcs8(key_type, pkcs8_der.as_bytes())?,
            public_key_der: public_key_der.into_vec(),
        })
    }

    fn into_key(
        self,
        key_id: String,
        key_type: JwtKeyType,
        (not_before, not_after): (SystemTime, SystemTime),
    ) -> JwtSigningKey {
        JwtSigningKey {
            key_id,
            key_type,
            not_before,
            not_after,
            public_key_der: self.public_key_der,
            jws_key: self.jws_key,
        }
    }
}

/// Contents of the metadata file next to the key.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct KeyMetadata {
    key_id: String,
    key_type: String,
    /// Unix seconds.
    not_before: u64,
    /// Unix seconds.
    not_after: u64,
}

/// Paths of the stored key and its metadata.
struct KeyFiles {
    dir: PathBuf,
    key_path: PathBuf,
    metadata_path: PathBuf,
}

impl KeyFiles {
    fn new(dir: &Path) -> Self {
        let dir = dir.to_owned();
        Self {
            key_path: dir.join("jwt-key.pem"),
            metadata_path: dir.join("jwt-key.json"),
            dir,
        }
    }

    /// Reads the stored key. Returns `Ok(None)` when no key is stored and `Err` with the reason
    /// when a stored key cannot serve `key_type` now.
    fn load(&self, key_type: JwtKeyType) -> Result<Option<JwtSigningKey>, String> {
        let metadata = match std::fs::read(&self.metadata_path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(format!(
                    "failed to read {}: {error}",
                    self.metadata_path.display()
                ));
            }
        };
        let metadata: KeyMetadata = serde_json::from_slice(&metadata).map_err(|e| {
            format!(
                "invalid metadata file {}: {e}",
                self.metadata_path.display()
            )
        })?;
        if metadata.key_type != key_type.to_string() {
            return Err(format!(
                "key type {} is not the configured {key_type}",
                metadata.key_type
            ));
        }
        if metadata.key_id.is_empty() {
            return Err("empty key ID".to_owned());
        }
        let not_after = UNIX_EPOCH + Duration::from_secs(metadata.not_after);
        if SystemTime::now() >= not_after {
            return Err(format!("expired at Unix time {}", metadata.not_after));
        }

        let pem = Zeroizing::new(
            std::fs::read_to_string(&self.key_path)
                .map_err(|e| format!("failed to read {}: {e}", self.key_path.display()))?,
        );
        let material = KeyMaterial::parse(&pem, key_type)?;
        let not_before = UNIX_EPOCH + Duration::from_secs(metadata.not_before);
        Ok(Some(material.into_key(
            metadata.key_id,
            key_type,
            (not_before, not_after),
        )))
    }

    /// Rejects a key file that group or others may access; a missing file passes.
    fn check_mode(&self) -> Result<(), JwtError> {
        match signet_core::fs::shared_mode(&self.key_path) {
            Ok(Some(mode)) => Err(JwtError::KeyFileMode {
                path: self.key_path.clone(),
                mode,
            }),
            Ok(None) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(JwtError::Io {
                action: "read",
                path: self.key_path.clone(),
                source,
            }),
        }
    }

    /// Writes the key (mode 0600) before its metadata, so metadata on disk always has its key.
    fn save(&self, material: &KeyMaterial, metadata: &KeyMetadata) -> Result<(), JwtError> {
        signet_core::fs::create_private_dir(&self.dir).map_err(|source| JwtError::Io {
            action: "create directory",
            path: self.dir.clone(),
            source,
        })?;
        signet_core::fs::write_secret(&self.key_path, material.pkcs8_pem.as_bytes()).map_err(
            |source| JwtError::Io {
                action: "write",
                path: self.key_path.clone(),
                source,
            },
        )?;
        // serde_json fails only on non-string map keys or failing Serialize impls, and this
        // struct has neither.
        let text = serde_json::to_vec_pretty(metadata).unwrap_or_default();
        signet_core::fs::write_atomic(&self.metadata_path, &text, METADATA_FILE_MODE).map_err(
            |source| JwtError::Io {
                action: "write",
                path: self.metadata_path.clone(),
                source,
            },
        )
    }
}

/// Drops sub-second precision, because the metadata file, the bundle and `exp` keep whole
/// seconds.
fn whole_seconds(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds(time))
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Returns a random `kid` of [`KEY_ID_LEN`] letters and digits.
fn random_key_id() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(KEY_ID_LEN)
        .map(char::from)
        .collect()
}

const KEY_ID_LEN: usize = 32;
const RSA_KEY_BITS: usize = 2048;

/// The metadata is not secret, but only the server reads it.
const METADATA_FILE_MODE: u32 = 0o600;
