//! Single-thread rates of the signing primitives the server uses, measured in this process. They
//! are the ceiling the server's throughput is compared with. The server's CA signs X509-SVIDs
//! with ring's ECDSA P-256 (through rcgen) and verifies CSRs with it (through x509-parser). The
//! server signs JWT-SVIDs with ring's ECDSA P-256 in the fixed-length form that JWS uses.

use std::hint::black_box;
use std::time::Duration;

use anyhow::anyhow;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair, UnparsedPublicKey,
};
use serde::Serialize;
use tokio::time::Instant;

/// Operations per second of one primitive on one thread.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rate {
    /// Operations done.
    pub operations: u64,
    /// Operations per second.
    pub per_second: f64,
}

/// Returns the rate of ring's P-256 ECDSA signatures over a certificate-sized message.
///
/// # Errors
///
/// Fails when ring cannot make a key or a signature.
pub fn p256_sign_rate(duration: Duration) -> anyhow::Result<Rate> {
    let rng = SystemRandom::new();
    let key = p256_key(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)?;
    measure(duration, || {
        key.sign(&rng, black_box(&MESSAGE))
            .map(drop)
            .map_err(|_| anyhow!("ring failed to sign"))
    })
}

/// Returns the rate of ring's P-256 ECDSA verifications, the proof-of-possession check the
/// server makes on each CSR.
///
/// # Errors
///
/// Fails when ring cannot make a key or a signature, or the signature does not verify.
pub fn p256_verify_rate(duration: Duration) -> anyhow::Result<Rate> {
    let rng = SystemRandom::new();
    let key = p256_key(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)?;
    let signature = key
        .sign(&rng, &MESSAGE)
        .map_err(|_| anyhow!("ring failed to sign"))?;
    let public_key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref());
    measure(duration, || {
        public_key
            .verify(black_box(&MESSAGE), signature.as_ref())
            .map_err(|_| anyhow!("ring rejected its own signature"))
    })
}

/// Returns the rate of ES256 signatures over a JWT-sized message with ring's P-256 key pair in
/// the fixed-length (R and S) form, parsed once, as the server signs JWT-SVIDs. Only the
/// signature is measured, not the JSON and base64url encoding around it.
///
/// # Errors
///
/// Fails when ring cannot make a key or a signature.
pub fn es256_sign_rate(duration: Duration) -> anyhow::Result<Rate> {
    let rng = SystemRandom::new();
    let key = p256_key(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
    measure(duration, || {
        key.sign(&rng, black_box(&MESSAGE[..JWT_MESSAGE_LEN]))
            .map(drop)
            .map_err(|_| anyhow!("ring failed to sign"))
    })
}

/// Runs `operation` until `duration` has passed and returns its rate.
fn measure(
    duration: Duration,
    mut operation: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Rate> {
    let started = Instant::now();
    let mut operations = 0_u64;
    while started.elapsed() < duration {
        for _ in 0..BATCH {
            operation()?;
        }
        operations += BATCH;
    }
    Ok(Rate {
        operations,
        per_second: operations as f64 / started.elapsed().as_secs_f64(),
    })
}

/// Returns a new P-256 key pair that signs in the form of `algorithm`.
fn p256_key(
    algorithm: &'static EcdsaSigningAlgorithm,
    rng: &SystemRandom,
) -> anyhow::Result<EcdsaKeyPair> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(algorithm, rng)
        .map_err(|_| anyhow!("ring failed to generate a P-256 key"))?;
    EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref(), rng)
        .map_err(|_| anyhow!("ring rejected its own P-256 key"))
}

/// Operations between two clock reads.
const BATCH: u64 = 50;
/// Length of a JWT-SVID's signing input (header and claims in base64url).
const JWT_MESSAGE_LEN: usize = 250;
/// A message the size of an X509-SVID's TBSCertificate. The content does not change the cost.
const MESSAGE: [u8; 450] = [0x5a; 450];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_positive() {
        let duration = Duration::from_millis(20);
        for rate in [
            p256_sign_rate(duration).unwrap(),
            p256_verify_rate(duration).unwrap(),
            es256_sign_rate(duration).unwrap(),
        ] {
            assert!(rate.operations >= BATCH);
            assert!(rate.per_second > 0.0);
        }
    }
}
