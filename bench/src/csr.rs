//! P-256 keys and PKCS#10 CSRs, made the way signet-agent makes them, so that the server does
//! the same work for the benchmark's requests as for an agent's.

use std::fmt;

use anyhow::Context;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use spiffe::SpiffeId;

/// A P-256 key and a CSR signed with it that requests one SPIFFE ID.
pub struct KeyAndCsr {
    key: KeyPair,
    csr_der: Vec<u8>,
}

impl KeyAndCsr {
    /// Generates a P-256 key and a CSR with `spiffe_id` as its only URI SAN.
    ///
    /// # Errors
    ///
    /// Fails when rcgen cannot generate the key or the CSR.
    pub fn generate(spiffe_id: &SpiffeId) -> anyhow::Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .context("failed to generate a P-256 key")?;
        let uri = spiffe_id
            .to_string()
            .try_into()
            .with_context(|| format!("{spiffe_id} is no valid URI SAN"))?;
        let mut params = CertificateParams::new(Vec::new()).context("failed to start a CSR")?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let csr = params
            .serialize_request(&key)
            .with_context(|| format!("failed to build a CSR for {spiffe_id}"))?;
        Ok(Self {
            csr_der: csr.der().to_vec(),
            key,
        })
    }

    /// Returns the DER PKCS#10 CSR.
    pub fn csr_der(&self) -> &[u8] {
        &self.csr_der
    }

    /// Returns the private key in PKCS#8 DER.
    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }
}

impl fmt::Debug for KeyAndCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAndCsr")
            .field("key", &"…")
            .field("csr_der_len", &self.csr_der.len())
            .finish()
    }
}
