//! Key and CSR generation for X509-SVIDs, and checks on the chains the server signs.
//!
//! The agent makes a fresh P-256 key for every SVID, workload and agent alike, so a private key
//! never leaves the node. The server signs the CSR and returns the chain. Before the agent uses
//! it, it checks that the leaf names the requested SPIFFE ID and contains the agent's own public key.

use std::fmt;
use std::time::{Duration, SystemTime};

use rand::Rng;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType};
use rustls::pki_types::CertificateDer;
use signet_core::ids::redacted_agent_id;
use signet_core::tls::{SpiffeIdCheckError, check_spiffe_id, spiffe_id_of};
use spiffe::SpiffeId;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::cache::X509SvidMaterial;

/// Error from building an SVID request or checking a signed SVID.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The P-256 key or the CSR could not be generated.
    #[error("failed to generate a key and CSR for {spiffe_id}")]
    Generate {
        /// SPIFFE ID the CSR was for.
        spiffe_id: String,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// The server returned no certificates.
    #[error("empty certificate chain for {0}")]
    EmptyChain(String),
    /// A certificate in the returned chain is not valid X.509 DER.
    #[error("malformed leaf certificate for {0}")]
    MalformedCertificate(String),
    /// The leaf does not name the requested SPIFFE ID.
    #[error("the X509-SVID does not name the requested identity")]
    WrongIdentity(#[source] SpiffeIdCheckError),
    /// A stored private key is not valid PKCS#8.
    #[error("the private key of {0} is not a valid PKCS#8 key")]
    InvalidKey(String),
    /// The leaf contains a public key other than the one in the CSR.
    #[error("the X509-SVID for {0} contains another public key than its private key")]
    KeyMismatch(String),
}

/// A private key with a CSR for it, waiting for the server's signature.
pub struct PendingSvid {
    spiffe_id: SpiffeId,
    key: KeyPair,
    csr_der: Vec<u8>,
}

// === impl PendingSvid ===

impl PendingSvid {
    /// Generates a P-256 key and a CSR with `spiffe_id` as its only URI SAN.
    ///
    /// The server ignores the CSR's names and sets the SVID's from the registration entry, but
    /// the URI SAN makes a CSR readable on its own.
    ///
    /// # Errors
    ///
    /// [`SvidError::Generate`] when rcgen fails.
    pub fn generate(spiffe_id: &SpiffeId) -> Result<Self, SvidError> {
        let generate_error = |source| SvidError::Generate {
            spiffe_id: redacted_agent_id(spiffe_id),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate_error)?;
        let mut params = CertificateParams::new(Vec::new()).map_err(generate_error)?;
        let uri = redacted_agent_id(spiffe_id)
            .try_into()
            .map_err(generate_error)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let csr = params.serialize_request(&key).map_err(generate_error)?;
        Ok(Self {
            spiffe_id: spiffe_id.clone(),
            csr_der: csr.der().to_vec(),
            key,
        })
    }

    /// Returns the SPIFFE ID the CSR requests.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// Returns the DER PKCS#10 CSR to send to the server.
    pub fn csr_der(&self) -> &[u8] {
        &self.csr_der
    }

    /// Checks the chain the server signed for this CSR and pairs it with the private key.
    ///
    /// # Errors
    ///
    /// [`SvidError::EmptyChain`], [`SvidError::MalformedCertificate`],
    /// [`SvidError::WrongIdentity`] or [`SvidError::KeyMismatch`] when the chain is unusable.
    pub fn complete(self, chain: Vec<Vec<u8>>) -> Result<X509SvidMaterial, SvidError> {
        let mut chain: Vec<_> = chain.into_iter().map(CertificateDer::from).collect();
        // The decoder's vector has room for four certificates, and the cache keeps this one
        // until the SVID is renewed.
        chain.shrink_to_fit();
        assemble(&self.spiffe_id, chain, &self.key)
    }
}

impl fmt::Debug for PendingSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSvid")
            .field("spiffe_id", &redacted_agent_id(&self.spiffe_id))
            .finish_non_exhaustive()
    }
}

/// Rebuilds a stored X509-SVID from its chain and PKCS#8 key, returning its SPIFFE ID too.
///
/// # Errors
///
/// [`SvidError::InvalidKey`] when the key cannot be parsed, and the errors of
/// [`PendingSvid::complete`] for the chain.
pub fn from_parts(
    chain: Vec<CertificateDer<'static>>,
    private_key_pkcs8: Zeroizing<Vec<u8>>,
) -> Result<(SpiffeId, X509SvidMaterial), SvidError> {
    let leaf = chain
        .first()
        .ok_or_else(|| SvidError::EmptyChain("the stored SVID".to_owned()))?;
    let spiffe_id = spiffe_id_of(leaf).map_err(SvidError::WrongIdentity)?;
    let key = KeyPair::try_from(private_key_pkcs8.as_slice())
        .map_err(|_| SvidError::InvalidKey(redacted_agent_id(&spiffe_id)))?;
    let material = assemble(&spiffe_id, chain, &key)?;
    Ok((spiffe_id, material))
}

/// Returns when an SVID should be replaced: at half its lifetime minus a random part of up to
/// a tenth of it, so between 40 % and 50 % of the way from notBefore to notAfter, never later.
///
/// The random part spreads the renewals of SVIDs signed together (thousands of workloads, or
/// agents started together), so they do not all reach the server in the same instant. The time
/// is drawn once per SVID: callers store it instead of calling again.
///
/// Returns `SystemTime::UNIX_EPOCH`, so the SVID counts as due at once, when the leaf is
/// missing or cannot be parsed.
pub fn refresh_at(svid: &X509SvidMaterial) -> SystemTime {
    let Some(validity) = svid.leaf().and_then(Validity::of) else {
        return SystemTime::UNIX_EPOCH;
    };
    let lifetime = validity
        .not_after
        .duration_since(validity.not_before)
        .unwrap_or(Duration::ZERO);
    let jitter = rand::rng().random_range(Duration::ZERO..=lifetime / RENEWAL_JITTER_DIVISOR);
    validity.not_before + lifetime / 2 - jitter
}

/// Returns when to replace `renewed`, the renewal of an SVID that expired at `previous_expiry`,
/// as seen at `now`.
///
/// A renewal that kept the previous notAfter was cut at the CA's expiry. Renewing it at half its
/// lifetime would repeat ever faster as that expiry nears, so such an SVID is renewed at the
/// midpoint of its remaining time or [`CUT_RENEWAL_MIN_WAIT`] from now, whichever is later, but
/// always before it expires. Any other SVID is renewed at [`refresh_at`].
pub fn refresh_at_after_renewal(
    renewed: &X509SvidMaterial,
    previous_expiry: Option<SystemTime>,
    now: SystemTime,
) -> SystemTime {
    if previous_expiry != Some(renewed.expires_at) {
        return refresh_at(renewed);
    }
    let remaining = renewed
        .expires_at
        .duration_since(now)
        .unwrap_or(Duration::ZERO);
    let wait = (remaining / 2)
        .max(CUT_RENEWAL_MIN_WAIT)
        .min(remaining.saturating_sub(EXPIRY_MARGIN));
    now + wait
}

/// The random part of [`refresh_at`] is at most the lifetime divided by this.
const RENEWAL_JITTER_DIVISOR: u32 = 10;
/// Shortest wait before renewing again an SVID whose renewal was cut at the CA's expiry.
pub const CUT_RENEWAL_MIN_WAIT: Duration = Duration::from_secs(30);
/// How long before its expiry an SVID cut at the CA's expiry is renewed at the latest.
const EXPIRY_MARGIN: Duration = Duration::from_secs(1);

/// Checks that the leaf names `spiffe_id` and contains the public half of `key`, and pairs the chain with the key.
fn assemble(
    spiffe_id: &SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
) -> Result<X509SvidMaterial, SvidError> {
    let leaf = chain
        .first()
        .ok_or_else(|| SvidError::EmptyChain(redacted_agent_id(spiffe_id)))?;
    check_spiffe_id(leaf, spiffe_id).map_err(SvidError::WrongIdentity)?;

    let validity = Validity::of(leaf)
        .ok_or_else(|| SvidError::MalformedCertificate(redacted_agent_id(spiffe_id)))?;
    if validity.public_key != key.der_bytes() {
        return Err(SvidError::KeyMismatch(redacted_agent_id(spiffe_id)));
    }
    Ok(X509SvidMaterial {
        private_key_pkcs8: Zeroizing::new(key.serialize_der()),
        expires_at: validity.not_after,
        chain,
    })
}

/// The parts of a leaf certificate the agent needs.
struct Validity {
    not_before: SystemTime,
    not_after: SystemTime,
    public_key: Vec<u8>,
}

impl Validity {
    fn of(leaf: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
        let validity = cert.validity();
        Some(Self {
            not_before: to_system_time(validity.not_before.timestamp())?,
            not_after: to_system_time(validity.not_after.timestamp())?,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }
}

/// Converts Unix seconds to `SystemTime`, or None before 1970.
fn to_system_time(unix_seconds: i64) -> Option<SystemTime> {
    let seconds = u64::try_from(unix_seconds).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests;
