//! CA key types: generation, and loading and saving private keys as PEM.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::der::Encode;
use rsa::pkcs8::der::asn1::ObjectIdentifier;
use rsa::pkcs8::{AlgorithmIdentifierRef, EncodePrivateKey, PrivateKeyInfo};
use rsa::rand_core::OsRng;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use zeroize::Zeroizing;

use super::CaError;

/// The key algorithm of a CA or server key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on NIST P-256, signing with SHA-256.
    #[default]
    EcP256,
    /// ECDSA on NIST P-384, signing with SHA-384.
    EcP384,
    /// RSA with a 2048-bit modulus, signing with PKCS#1 v1.5 and SHA-256.
    Rsa2048,
}

impl KeyType {
    /// Generates a new key of this type.
    ///
    /// # Errors
    ///
    /// [`CaError::KeyGeneration`] when the random source or the key encoding fails.
    pub(crate) fn generate(self) -> Result<KeyPair, CaError> {
        let generated = match self {
            Self::EcP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            Self::EcP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
            Self::Rsa2048 => return generate_rsa_2048(),
        };
        generated.map_err(|error| self.generation_error(error.to_string()))
    }

    /// Returns the type of `key`, or `None` for an algorithm the CA does not create (such as
    /// Ed25519 or RSA with another hash).
    pub(crate) fn of(key: &KeyPair) -> Option<Self> {
        let algorithm = key.algorithm();
        if algorithm == &PKCS_ECDSA_P256_SHA256 {
            Some(Self::EcP256)
        } else if algorithm == &PKCS_ECDSA_P384_SHA384 {
            Some(Self::EcP384)
        } else if algorithm == &PKCS_RSA_SHA256 {
            Some(Self::Rsa2048)
        } else {
            None
        }
    }

    fn generation_error(self, reason: String) -> CaError {
        CaError::KeyGeneration {
            key_type: self.to_string(),
            reason,
        }
    }
}

impl FromStr for KeyType {
    type Err = CaError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "ec-p256" => Ok(Self::EcP256),
            "ec-p384" => Ok(Self::EcP384),
            "rsa-2048" => Ok(Self::Rsa2048),
            _ => Err(CaError::UnknownKeyType {
                value: value.to_owned(),
            }),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EcP256 => "ec-p256",
            Self::EcP384 => "ec-p384",
            Self::Rsa2048 => "rsa-2048",
        })
    }
}

// NOTE: rcgen's `KeyPair`, the ring keys inside it and the `PrivateKeyDer` parsed from PEM do not
// wipe their memory when dropped. Only the key file contents, the PEM text and the PKCS#8 buffers
// this module builds are zeroized.

/// Returns `key` as a PKCS#8 PEM document, wiped from memory when dropped.
pub(crate) fn key_to_pem(key: &KeyPair) -> Zeroizing<String> {
    Zeroizing::new(key.serialize_pem())
}

/// Returns `key` as PKCS#8 DER for rustls.
pub(crate) fn key_to_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// Reads a PEM private key (PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY") from
/// `path`.
///
/// # Errors
///
/// [`CaError::Io`] when the file cannot be read, [`CaError::KeyFileMode`] when group or others
/// have any permission on it, [`CaError::KeyFile`] when it contains no private key or one of an
/// unsupported type.
pub(crate) fn load_key_pem(path: &Path) -> Result<KeyPair, CaError> {
    check_key_file_mode(path)?;
    let pem = Zeroizing::new(std::fs::read(path).map_err(|source| CaError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?);
    let invalid = |reason: &str| CaError::KeyFile {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };

    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| invalid("no PEM private key (PKCS#8, SEC1 or PKCS#1) found"))?;
    match &der {
        PrivateKeyDer::Pkcs8(pkcs8) => KeyPair::try_from(pkcs8)
            .map_err(|_| invalid("unsupported key type: use ECDSA P-256, P-384 or RSA")),
        PrivateKeyDer::Sec1(sec1) => ec_key_from_sec1(sec1).ok_or_else(|| {
            invalid("unsupported SEC1 EC key: use P-256 or P-384 with the public key included")
        }),
        PrivateKeyDer::Pkcs1(pkcs1) => rsa_key_from_pkcs1(pkcs1.secret_pkcs1_der())
            .ok_or_else(|| invalid("invalid PKCS#1 RSA key")),
        _ => Err(invalid("unsupported private key encoding")),
    }
}

/// Rejects a key file that group or others may access, as OpenSSH does for private keys.
fn check_key_file_mode(path: &Path) -> Result<(), CaError> {
    let shared = signet_core::fs::shared_mode(path).map_err(|source| CaError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    match shared {
        Some(mode) => Err(CaError::KeyFileMode {
            path: path.to_owned(),
            mode,
        }),
        None => Ok(()),
    }
}

/// Generates an RSA-2048 key with the `rsa` crate, because ring signs with RSA keys but cannot
/// generate them.
fn generate_rsa_2048() -> Result<KeyPair, CaError> {
    let key_type = KeyType::Rsa2048;
    let private_key = RsaPrivateKey::new(&mut OsRng, 2048)
        .map_err(|error| key_type.generation_error(error.to_string()))?;
    rsa_key_pair(&private_key).map_err(|reason| key_type.generation_error(reason))
}

fn rsa_key_from_pkcs1(pkcs1_der: &[u8]) -> Option<KeyPair> {
    let private_key = RsaPrivateKey::from_pkcs1_der(pkcs1_der).ok()?;
    rsa_key_pair(&private_key).ok()
}

fn rsa_key_pair(private_key: &RsaPrivateKey) -> Result<KeyPair, String> {
    let pkcs8 = private_key
        .to_pkcs8_der()
        .map_err(|error| error.to_string())?;
    let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8.as_bytes());
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_RSA_SHA256)
        .map_err(|error| error.to_string())
}

/// Wraps a SEC1 EC key in PKCS#8, which is the only EC encoding ring loads. SEC1 may omit the
/// curve, so each supported curve is tried; ring rejects a curve that contradicts the key.
fn ec_key_from_sec1(sec1: &PrivateSec1KeyDer<'_>) -> Option<KeyPair> {
    [
        (SECP256R1, &PKCS_ECDSA_P256_SHA256),
        (SECP384R1, &PKCS_ECDSA_P384_SHA384),
    ]
    .into_iter()
    .find_map(|(curve, algorithm)| {
        let pkcs8 = sec1_to_pkcs8(sec1.secret_sec1_der(), &curve)?;
        KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            algorithm,
        )
        .ok()
    })
}

fn sec1_to_pkcs8(sec1_der: &[u8], curve: &ObjectIdentifier) -> Option<Zeroizing<Vec<u8>>> {
    let algorithm = AlgorithmIdentifierRef {
        oid: ID_EC_PUBLIC_KEY,
        parameters: Some(curve.into()),
    };
    PrivateKeyInfo::new(algorithm, sec1_der)
        .to_der()
        .ok()
        .map(Zeroizing::new)
}

/// id-ecPublicKey, RFC 5480 section 2.1.1.
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// NIST P-256, RFC 5480 section 2.1.1.1.
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// NIST P-384, RFC 5480 section 2.1.1.1.
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn key_type_names_round_trip() {
        let cases = [
            ("ec-p256", KeyType::EcP256),
            ("ec-p384", KeyType::EcP384),
            ("rsa-2048", KeyType::Rsa2048),
        ];
        for (name, key_type) in cases {
            assert_eq!(name.parse::<KeyType>().unwrap(), key_type, "{name}");
            assert_eq!(key_type.to_string(), name);
        }
    }

    #[test]
    fn key_type_default_is_ec_p256() {
        assert_eq!(KeyType::default(), KeyType::EcP256);
    }

    #[test]
    fn unknown_key_type_is_rejected() {
        for name in ["", "EC-P256", "ec-p521", "rsa-4096", "ed25519", " ec-p256"] {
            let error = name.parse::<KeyType>().unwrap_err();
            assert!(
                matches!(&error, CaError::UnknownKeyType { value } if value == name),
                "{name}"
            );
            let message = error.to_string();
            assert!(message.contains(&format!("\"{name}\"")), "{message}");
            assert!(
                message.contains("ec-p256, ec-p384 and rsa-2048"),
                "{message}"
            );
        }
    }

    #[test]
    fn generated_keys_have_their_type() {
        for key_type in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
            let key = key_type.generate().unwrap();
            assert_eq!(KeyType::of(&key), Some(key_type));
        }
    }

    #[test]
    fn saved_key_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        for key_type in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
            let key = key_type.generate().unwrap();
            let path = dir.path().join(format!("{key_type}.pem"));
            write_private(&path, key_to_pem(&key).as_bytes());

            let loaded = load_key_pem(&path).unwrap();
            assert_eq!(loaded.public_key_raw(), key.public_key_raw(), "{key_type}");
            assert_eq!(KeyType::of(&loaded), Some(key_type));
        }
    }

    #[test]
    fn non_key_pem_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        write_private(&path, cert.cert.pem().as_bytes());

        let error = load_key_pem(&path).unwrap_err();
        assert!(
            matches!(&error, CaError::KeyFile { path: p, .. } if *p == path),
            "{error}"
        );
    }

    #[test]
    fn shared_key_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca-key.pem");
        let key = KeyType::EcP256.generate().unwrap();
        write_private(&path, key_to_pem(&key).as_bytes());

        for mode in [0o640, 0o604, 0o644, 0o660, 0o602, 0o777] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();

            let error = load_key_pem(&path).unwrap_err();
            assert!(
                matches!(&error, CaError::KeyFileMode { mode: m, .. } if *m == mode),
                "{mode:o}: {error}"
            );
            let message = error.to_string();
            assert!(message.contains(&format!("{mode:o}")), "{message}");
            assert!(
                message.contains(&format!("chmod 600 {}", path.display())),
                "{message}"
            );
        }

        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(load_key_pem(&path).is_ok(), "{mode:o}");
        }
    }

    /// Writes a file that only its owner may read or write.
    fn write_private(path: &Path, contents: &[u8]) {
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}
