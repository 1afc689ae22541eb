//! X509-SVID signing: CSR checks and leaf certificates for workloads, agents and the server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls::pki_types::{CertificateDer, DnsName};
use spiffe::SpiffeId;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use signet_core::ids::redacted_agent_id;

use super::authority::{CLOCK_SKEW, rfc3339, to_offset};
use super::key::{KeyType, key_to_der};
use super::{CaError, CertificateAuthority, ServerIdentity, SignedX509Svid};

impl CertificateAuthority {
    /// Signs an X509-SVID for `spiffe_id` from a DER PKCS#10 CSR.
    ///
    /// The CSR signature is verified (proof of possession of the private key), and its subject and
    /// extensions are ignored: the SVID contains exactly one URI SAN (`spiffe_id`) plus `dns_names`,
    /// the first DNS name also as the subject CN. Its validity starts 10 seconds in the past and
    /// ends at `now + ttl` or at the CA's notAfter, whichever comes first.
    ///
    /// # Errors
    ///
    /// - [`CaError::InvalidCsr`] for an unparsable CSR, an unsupported or weak key, an ID outside
    ///   the CA's trust domain or without a path, or an invalid DNS name.
    /// - [`CaError::CsrSignature`] when the CSR signature does not verify.
    /// - [`CaError::InvalidTtl`] for a zero TTL.
    /// - [`CaError::CaExpired`] when the CA has expired.
    pub fn sign_x509_svid(
        &self,
        csr_der: &[u8],
        spiffe_id: &SpiffeId,
        ttl: Duration,
        dns_names: &[String],
    ) -> Result<SignedX509Svid, CaError> {
        if !spiffe_id.is_member_of(&self.trust_domain) {
            return Err(CaError::InvalidCsr {
                reason: format!(
                    "SPIFFE ID {spiffe_id} is not in trust domain {}",
                    self.trust_domain
                ),
            });
        }
        if spiffe_id.path().is_empty() {
            return Err(CaError::InvalidCsr {
                reason: format!(
                    "SPIFFE ID {spiffe_id} has no path, but an X509-SVID leaf needs one"
                ),
            });
        }
        let subject_key = verified_csr_key(csr_der)?;
        let names = LeafNames {
            spiffe_id,
            dns_names,
            ip_addresses: &[],
        };
        self.sign_leaf(&subject_key, &names, ttl)
    }

    /// Issues the key and certificate chain of the server's own TLS endpoint, with the URI SAN
    /// `spiffe://<trust domain>/spire/server`, the DNS SAN "localhost" and the IP SANs 127.0.0.1
    /// and ::1. The ECDSA P-256 key is generated in memory and never written to disk.
    ///
    /// # Errors
    ///
    /// [`CaError::InvalidTtl`] for a zero TTL, [`CaError::CaExpired`] when the CA has expired,
    /// and [`CaError::KeyGeneration`] or [`CaError::Certificate`] when building the certificate
    /// fails.
    pub fn issue_server_identity(&self, ttl: Duration) -> Result<ServerIdentity, CaError> {
        let server_id = signet_core::ids::server_id(&self.trust_domain);
        let key = KeyType::EcP256.generate()?;
        let subject_key = SubjectKey {
            spki: SubjectPublicKeyInfo::from_der(&key.subject_public_key_info()).map_err(
                |source| CaError::Certificate {
                    what: "server",
                    source,
                },
            )?,
            is_rsa: false,
        };
        let names = LeafNames {
            spiffe_id: &server_id,
            dns_names: &["localhost".to_owned()],
            ip_addresses: &[
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
        };
        let signed = self.sign_leaf(&subject_key, &names, ttl)?;
        Ok(ServerIdentity {
            chain: signed.chain,
            key: key_to_der(&key),
            expires_at: signed.expires_at,
        })
    }

    fn sign_leaf(
        &self,
        subject_key: &SubjectKey,
        names: &LeafNames<'_>,
        ttl: Duration,
    ) -> Result<SignedX509Svid, CaError> {
        let (not_before, not_after) = self.leaf_validity(names.spiffe_id, ttl)?;
        let serial = random_serial_number();
        let mut params = leaf_params(names, subject_key.is_rsa)?;
        params.serial_number = Some(serial.clone());
        params.not_before = to_offset(not_before);
        params.not_after = to_offset(not_after);

        let leaf = params
            .signed_by(&subject_key.spki, &self.issuer)
            .map_err(|source| CaError::Certificate {
                what: "X509-SVID",
                source,
            })?;
        let leaf = leaf.der().clone();
        let serial_number = serial_number_hex(serial.as_ref());
        let expires_at = SystemTime::from(to_offset(not_after));
        tracing::debug!(
            spiffe_id = %redacted_agent_id(names.spiffe_id),
            serial = %serial_number,
            expiry = %rfc3339(expires_at),
            "Signed X509-SVID"
        );

        let mut chain = Vec::with_capacity(1 + self.intermediates.len());
        chain.push(leaf);
        chain.extend(self.intermediates.iter().cloned());
        Ok(SignedX509Svid {
            chain,
            serial_number,
            expires_at,
            authority_id: self.authority_id().to_owned(),
        })
    }

    /// Returns the leaf's notBefore and notAfter, both inside the CA's own validity.
    fn leaf_validity(
        &self,
        spiffe_id: &SpiffeId,
        ttl: Duration,
    ) -> Result<(SystemTime, SystemTime), CaError> {
        if ttl < Duration::from_secs(1) {
            return Err(CaError::InvalidTtl {
                ttl_seconds: ttl.as_secs(),
            });
        }
        let now = SystemTime::now();
        if now >= self.not_after {
            return Err(CaError::CaExpired {
                expired_at: rfc3339(self.not_after),
            });
        }
        // Backdating by the full clock skew allowance would put a short-lived SVID's half-life
        // point (where agents renew) at or before its issue time, so short TTLs get a tenth.
        let skew = CLOCK_SKEW.min(ttl / 10);
        let not_before = now.checked_sub(skew).unwrap_or(now).max(self.not_before);
        let requested = now.checked_add(ttl).unwrap_or(self.not_after);
        if requested > self.not_after {
            self.log_ttl_cut(spiffe_id, ttl);
        }
        Ok((not_before, requested.min(self.not_after)))
    }
}

impl CertificateAuthority {
    /// Logs a TTL cut at warn the first time for this CA and at debug afterwards, so that a TTL
    /// longer than the CA's remaining life does not log once per signature.
    fn log_ttl_cut(&self, spiffe_id: &SpiffeId, ttl: Duration) {
        let ca_expiry = rfc3339(self.not_after);
        if self.ttl_cut_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(spiffe_id = %redacted_agent_id(spiffe_id), ?ttl, %ca_expiry, "X509-SVID TTL cut to the CA expiry");
        } else {
            tracing::warn!(
                spiffe_id = %redacted_agent_id(spiffe_id),
                ?ttl,
                %ca_expiry,
                "X509-SVID TTL cut to the CA expiry; give the entry a shorter TTL or the server a \
                 longer --ca-ttl"
            );
        }
    }
}

/// Returns the serial number of a DER certificate in lower-case hex without leading zeros, the
/// form stored for agents and compared against the serial of an agent's client certificate.
///
/// # Errors
///
/// [`CaError::InvalidCertificate`] when `cert` is not a DER X.509 certificate.
pub fn certificate_serial_number(cert: &CertificateDer<'_>) -> Result<String, CaError> {
    let (_, parsed) =
        X509Certificate::from_der(cert).map_err(|error| CaError::InvalidCertificate {
            reason: error.to_string(),
        })?;
    Ok(serial_number_hex(parsed.tbs_certificate.raw_serial()))
}

/// Formats a serial number, given as the big-endian bytes of an unsigned integer, in lower-case
/// hex without leading zeros ("0" for zero). It is the only formatting of serial numbers, so that
/// a serial recorded at signing always equals the one later read from the certificate.
pub(super) fn serial_number_hex(big_endian: &[u8]) -> String {
    let digits = hex::encode(big_endian);
    match digits.trim_start_matches('0') {
        "" => "0".to_owned(),
        significant => significant.to_owned(),
    }
}

/// Returns a random 128-bit serial number. RFC 5280 section 4.1.2.2 requires serials that are
/// positive, unique per CA and at most 20 octets long. Random bits also make them unpredictable.
pub(super) fn random_serial_number() -> SerialNumber {
    SerialNumber::from_slice(&rand::random::<[u8; 16]>())
}

/// The public key of a verified CSR.
struct SubjectKey {
    spki: SubjectPublicKeyInfo,
    is_rsa: bool,
}

/// The names an X509-SVID binds to its key.
struct LeafNames<'a> {
    spiffe_id: &'a SpiffeId,
    dns_names: &'a [String],
    ip_addresses: &'a [IpAddr],
}

/// Parses a CSR, verifies its self-signature and returns its public key.
fn verified_csr_key(csr_der: &[u8]) -> Result<SubjectKey, CaError> {
    let invalid = |reason: String| CaError::InvalidCsr { reason };
    let (rest, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|error| invalid(format!("not a DER PKCS#10 request: {error}")))?;
    if !rest.is_empty() {
        return Err(invalid("trailing bytes after the request".to_owned()));
    }
    csr.verify_signature().map_err(|_| CaError::CsrSignature)?;

    let spki = &csr.certification_request_info.subject_pki;
    check_key_strength(spki.parsed().ok()).map_err(invalid)?;
    let is_rsa = spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION;
    let spki = SubjectPublicKeyInfo::from_der(spki.raw)
        .map_err(|_| invalid("unsupported public key algorithm".to_owned()))?;
    Ok(SubjectKey { spki, is_rsa })
}

fn check_key_strength(key: Option<PublicKey<'_>>) -> Result<(), String> {
    match key {
        Some(PublicKey::RSA(rsa)) if rsa.key_size() < MIN_RSA_BITS => Err(format!(
            "RSA key of {} bits is too small: use at least {MIN_RSA_BITS} bits",
            rsa.key_size()
        )),
        Some(_) => Ok(()),
        None => Err("unparsable public key".to_owned()),
    }
}

/// Returns the certificate parameters of an X509-SVID leaf, without its serial number and
/// validity.
fn leaf_params(names: &LeafNames<'_>, is_rsa: bool) -> Result<CertificateParams, CaError> {
    let invalid = |reason: String| CaError::InvalidCsr { reason };
    let uri = names.spiffe_id.to_string().try_into().map_err(|_| {
        invalid(format!(
            "SPIFFE ID {} is not a valid URI SAN",
            names.spiffe_id
        ))
    })?;
    let mut subject_alt_names = vec![SanType::URI(uri)];
    for dns_name in names.dns_names {
        let name = check_dns_name(dns_name)
            .and_then(|()| dns_name.as_str().try_into().ok())
            .ok_or_else(|| invalid(format!("DNS name {dns_name:?} is not a valid DNS SAN")))?;
        subject_alt_names.push(SanType::DnsName(name));
    }
    subject_alt_names.extend(names.ip_addresses.iter().copied().map(SanType::IpAddress));

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(first) = names.dns_names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.subject_alt_names = subject_alt_names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if is_rsa {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Checks DNS name syntax, allowing one leading wildcard label ("*.example.org") as SPIRE does.
fn check_dns_name(name: &str) -> Option<()> {
    let base = name.strip_prefix("*.").unwrap_or(name);
    DnsName::try_from(base).ok().map(|_| ())
}

const MIN_RSA_BITS: usize = 2048;
