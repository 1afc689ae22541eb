//! The JSON layout of the stored workload cache, and its conversion from and to a [`Snapshot`].
//!
//! DER certificates and keys are base64 strings. The layout has a `version` so that a later
//! agent can tell an older file apart instead of misreading it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::CertificateDer;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signet_core::selector::Selector;
use spiffe::{SpiffeId, TrustDomain};
use x509_parser::parse_x509_certificate;
use zeroize::Zeroizing;

use crate::cache::{Identity, JwtAuthority, Snapshot, X509SvidMaterial};
use crate::svid;

/// Version of the layout below.
const VERSION: u32 = 1;

/// The whole file. Encoding borrows the certificates, keys and entry IDs from the snapshot
/// instead of copying them, so writing a large cache needs little memory beyond the JSON.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredCache<'a> {
    version: u32,
    /// SPIFFE ID of the agent that wrote the file, with the join token redacted.
    pub(super) agent_id: String,
    pub(super) trust_domain: String,
    bundle: Vec<Der<'a>>,
    jwt_authorities: Vec<StoredJwtAuthority<'a>>,
    /// In the cache's order, which decides a workload's default identity.
    identities: Vec<StoredIdentity<'a>>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StoredJwtAuthority<'a> {
    key_id: String,
    public_key: Der<'a>,
    /// Unix seconds.
    expires_at: Option<u64>,
    tainted: bool,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StoredIdentity<'a> {
    entry_id: Cow<'a, str>,
    spiffe_id: String,
    /// Selectors as `type:value`.
    selectors: Vec<String>,
    hint: Cow<'a, str>,
    svid: Option<StoredSvid<'a>>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StoredSvid<'a> {
    /// Leaf first.
    chain: Vec<Der<'a>>,
    /// PKCS#8 DER of the leaf's private key.
    private_key: SecretDer<'a>,
}

/// DER bytes, written as base64: borrowed when encoding, owned when decoded.
struct Der<'a>(Cow<'a, [u8]>);

/// DER bytes of a private key, written as base64. The decoded copy is wiped from memory on
/// drop, and the borrowed one belongs to an [`X509SvidMaterial`], which wipes it.
struct SecretDer<'a>(Cow<'a, Zeroizing<Vec<u8>>>);

/// Encodes `snapshot` as the file's JSON, for the agent `agent_id` (already redacted).
pub(super) fn encode(
    agent_id: &str,
    snapshot: &Snapshot,
) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let stored = StoredCache::from_snapshot(agent_id, snapshot);
    // NOTE: the capacity is an estimate. When it is too small, the buffer grows and the freed
    // allocation keeps a copy of the keys until the memory is reused.
    let mut contents = Zeroizing::new(Vec::with_capacity(stored.estimated_len()));
    serde_json::to_writer(&mut *contents, &stored)?;
    Ok(contents)
}

/// Parses the file's JSON and checks its version.
pub(super) fn decode(contents: &[u8]) -> Result<StoredCache<'static>, String> {
    let stored: StoredCache<'static> =
        serde_json::from_slice(contents).map_err(|error| error.to_string())?;
    if stored.version != VERSION {
        return Err(format!(
            "unsupported version {}, expected {VERSION}",
            stored.version
        ));
    }
    Ok(stored)
}

// === impl StoredCache ===

impl<'a> StoredCache<'a> {
    fn from_snapshot(agent_id: &str, snapshot: &'a Snapshot) -> Self {
        Self {
            version: VERSION,
            agent_id: agent_id.to_owned(),
            trust_domain: snapshot.trust_domain.to_string(),
            bundle: snapshot.bundle.iter().map(Der::borrowed).collect(),
            jwt_authorities: snapshot
                .jwt_authorities
                .iter()
                .map(StoredJwtAuthority::from_authority)
                .collect(),
            // NOTE: template entries are left out. Their X509-SVIDs are signed for the
            // workloads that ask, so a restarted agent serves them only once the server is back.
            identities: snapshot
                .identities
                .iter()
                .filter(|identity| !identity.spiffe_id.is_template())
                .map(StoredIdentity::from_identity)
                .collect(),
        }
    }

    /// Converts the file into a snapshot of `trust_domain`, checking every SVID against its key
    /// and SPIFFE ID, and leaving out the SVIDs and JWT authorities expired at `now`.
    pub(super) fn into_snapshot(
        self,
        trust_domain: &TrustDomain,
        now: SystemTime,
    ) -> Result<Snapshot, String> {
        let bundle = self
            .bundle
            .into_iter()
            .map(|der| certificate(der.0.into_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        if bundle.is_empty() {
            return Err("the bundle contains no X.509 authority".to_owned());
        }
        let jwt_authorities = self
            .jwt_authorities
            .into_iter()
            .map(StoredJwtAuthority::into_authority)
            .filter(|authority| authority.expires_at.is_none_or(|expiry| now < expiry))
            .collect();
        let identities = self
            .identities
            .into_iter()
            .map(|identity| identity.into_identity(trust_domain, now))
            .collect::<Result<_, _>>()?;
        Ok(Snapshot {
            trust_domain: trust_domain.clone(),
            bundle,
            jwt_authorities,
            identities,
            revision: 0,
        })
    }

    /// Returns about how many bytes the JSON takes: base64 adds a third to the DER, and each
    /// identity and authority adds names and punctuation.
    fn estimated_len(&self) -> usize {
        let chain_len = |svid: &StoredSvid<'_>| {
            svid.chain.iter().map(|der| der.0.len()).sum::<usize>() + svid.private_key.0.len()
        };
        let der_len: usize = self.bundle.iter().map(|der| der.0.len()).sum::<usize>()
            + self
                .jwt_authorities
                .iter()
                .map(|authority| authority.public_key.0.len())
                .sum::<usize>()
            + self
                .identities
                .iter()
                .filter_map(|identity| identity.svid.as_ref())
                .map(chain_len)
                .sum::<usize>();
        let items = self.identities.len() + self.jwt_authorities.len() + 1;
        der_len / 3 * 4 + items * ITEM_OVERHEAD
    }
}

// === impl StoredJwtAuthority ===

impl<'a> StoredJwtAuthority<'a> {
    fn from_authority(authority: &'a JwtAuthority) -> Self {
        Self {
            key_id: authority.key_id.clone(),
            public_key: Der(Cow::Borrowed(&authority.public_key_der)),
            expires_at: authority.expires_at.map(unix_seconds),
            tainted: authority.tainted,
        }
    }

    fn into_authority(self) -> JwtAuthority {
        JwtAuthority {
            key_id: self.key_id,
            public_key_der: self.public_key.0.into_owned(),
            expires_at: self
                .expires_at
                .map(|seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)),
            tainted: self.tainted,
        }
    }
}

// === impl StoredIdentity ===

impl<'a> StoredIdentity<'a> {
    fn from_identity(identity: &'a Identity) -> Self {
        Self {
            entry_id: Cow::Borrowed(&identity.entry_id),
            spiffe_id: identity.spiffe_id.to_string(),
            selectors: identity.selectors.iter().map(ToString::to_string).collect(),
            hint: Cow::Borrowed(&identity.hint),
            svid: identity.svid.as_deref().map(StoredSvid::from_material),
        }
    }

    fn into_identity(
        self,
        trust_domain: &TrustDomain,
        now: SystemTime,
    ) -> Result<Identity, String> {
        let reject = |reason: String| format!("entry {}: {reason}", self.entry_id);
        let spiffe_id = SpiffeId::new(&self.spiffe_id)
            .map_err(|error| reject(format!("invalid SPIFFE ID {:?}: {error}", self.spiffe_id)))?;
        if spiffe_id.trust_domain() != trust_domain {
            return Err(reject(format!(
                "SPIFFE ID {spiffe_id} is outside trust domain {trust_domain}"
            )));
        }
        let selectors = self
            .selectors
            .iter()
            .map(|text| Selector::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| reject(error.to_string()))?;
        let svid = self
            .svid
            .map(|stored| stored.into_material(&spiffe_id))
            .transpose()
            .map_err(reject)?
            .filter(|material| now < material.expires_at)
            .map(Arc::new);
        Ok(Identity {
            entry_id: self.entry_id.into_owned(),
            spiffe_id: spiffe_id.into(),
            selectors,
            hint: self.hint.into_owned(),
            svid,
            expanded_svids: BTreeMap::new(),
        })
    }
}

// === impl StoredSvid ===

impl<'a> StoredSvid<'a> {
    fn from_material(material: &'a X509SvidMaterial) -> Self {
        Self {
            chain: material.chain.iter().map(Der::borrowed).collect(),
            private_key: SecretDer(Cow::Borrowed(&material.private_key_pkcs8)),
        }
    }

    /// Rebuilds the SVID, checking that its leaf names `spiffe_id` and matches its key.
    fn into_material(self, spiffe_id: &SpiffeId) -> Result<X509SvidMaterial, String> {
        let chain = self
            .chain
            .into_iter()
            .map(|der| certificate(der.0.into_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        let (leaf_id, material) = svid::from_parts(chain, self.private_key.0.into_owned())
            .map_err(|error| error.to_string())?;
        if &leaf_id != spiffe_id {
            return Err(format!("the X509-SVID names {leaf_id}, not {spiffe_id}"));
        }
        Ok(material)
    }
}

// === impl Der ===

impl<'a> Der<'a> {
    fn borrowed(certificate: &'a CertificateDer<'static>) -> Self {
        Self(Cow::Borrowed(certificate.as_ref()))
    }
}

impl Serialize for Der<'_> {
    /// Writes the base64 straight into the serializer's output, without a string per
    /// certificate.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&Base64Display::new(&self.0, &STANDARD))
    }
}

impl<'de> Deserialize<'de> for Der<'_> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text)
            .map(|der| Self(Cow::Owned(der)))
            .map_err(D::Error::custom)
    }
}

// === impl SecretDer ===

impl Serialize for SecretDer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(STANDARD.encode(self.0.as_slice()));
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for SecretDer<'_> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        STANDARD
            .decode(text.as_bytes())
            .map(|der| Self(Cow::Owned(Zeroizing::new(der))))
            .map_err(|_| D::Error::custom("a private key is not valid base64"))
    }
}

impl fmt::Debug for SecretDer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDer(<redacted>)")
    }
}

/// Checks that `der` is one X.509 certificate.
fn certificate(der: Vec<u8>) -> Result<CertificateDer<'static>, String> {
    match parse_x509_certificate(&der) {
        Ok(([], _)) => Ok(CertificateDer::from(der)),
        Ok(_) => Err("trailing bytes after a certificate".to_owned()),
        Err(error) => Err(format!("malformed certificate: {error}")),
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Estimated JSON bytes per identity or authority beyond its base64 DER.
const ITEM_OVERHEAD: usize = 512;
