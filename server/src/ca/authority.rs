//! The CA's signing key and certificate: loaded from the data directory, or created as a
//! self-signed root or as an intermediate signed by an upstream CA.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use spiffe::TrustDomain;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::key::{KeyType, key_to_pem, load_key_pem};
use super::upstream::UpstreamChain;
use super::{CaConfig, CaError};

/// The server's certificate authority: signs X509-SVIDs for one trust domain.
///
/// The signing certificate is either a self-signed root or an intermediate signed by an upstream
/// CA; in both cases its key and certificate persist in `<data_dir>/ca/`, so a restart keeps the
/// same trust bundle until the CA expires.
///
/// One CA signs until its notAfter: X509-SVID lifetimes are cut to it, and after it signing fails
/// with [`CaError::CaExpired`]. The server's rotation replaces it long before that.
pub struct CertificateAuthority {
    pub(super) trust_domain: TrustDomain,
    pub(super) issuer: Issuer<'static, KeyPair>,
    /// Certificates sent after an SVID leaf: the intermediate and any upstream intermediates. Empty
    /// for a self-signed root, because the root is in the bundle.
    pub(super) intermediates: Vec<CertificateDer<'static>>,
    authorities: Vec<CertificateDer<'static>>,
    authority_id: String,
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
    /// Set once an X509-SVID TTL has been cut to the CA expiry, so later cuts log at debug.
    pub(super) ttl_cut_logged: AtomicBool,
}

impl CertificateAuthority {
    /// Loads the CA from its directory when it is present, unexpired and matches the
    /// configuration (trust domain, key type, issuer), else creates a new one and writes it there.
    ///
    /// # Errors
    ///
    /// [`CaError::Io`] when the CA directory or files cannot be read or written,
    /// [`CaError::KeyFile`] or [`CaError::CaCertificate`] when stored files exist but cannot be
    /// parsed, [`CaError::Upstream`] when the upstream CA cannot sign, and
    /// [`CaError::KeyGeneration`] or [`CaError::Certificate`] when creating the CA fails.
    pub fn load_or_create(config: &CaConfig) -> Result<Self, CaError> {
        match Self::load(config)? {
            Some(ca) => Ok(ca),
            None => Self::create(config),
        }
    }

    /// Loads the CA from its directory, or returns `None` when no CA is stored there or the stored
    /// one is expired or does not match the configuration (the reason is logged).
    ///
    /// # Errors
    ///
    /// As for [`Self::load_or_create`], except the errors of creating a CA.
    pub fn load(config: &CaConfig) -> Result<Option<Self>, CaError> {
        let files = CaFiles::new(&config.dir);
        let upstream = load_upstream(config)?;
        let Some(stored) = files.load()? else {
            return Ok(None);
        };
        if let Err(reason) = stored.check(config, upstream.as_ref()) {
            tracing::warn!(
                path = %files.cert_path.display(),
                reason = %reason,
                "Stored CA is not usable"
            );
            return Ok(None);
        }
        tracing::info!(
            path = %files.cert_path.display(),
            expiry = %rfc3339(stored.not_after),
            "Loaded CA"
        );
        Self::from_parts(config, stored.cert, stored.key, upstream).map(Some)
    }

    /// Returns the root certificates to publish in the trust bundle: the self-signed root, or the
    /// upstream root(s) when an upstream CA signs the server's intermediate.
    pub fn x509_authorities(&self) -> Vec<CertificateDer<'static>> {
        self.authorities.clone()
    }

    /// Returns the notAfter time of the CA certificate that signs X509-SVIDs.
    pub fn expires_at(&self) -> SystemTime {
        self.not_after
    }

    /// Returns the notBefore time of the CA certificate that signs X509-SVIDs.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// Returns the ID operators name this CA by: its certificate's subject key identifier in
    /// lower-case hex, as X509-SVIDs it signs carry it in their authority key identifier.
    pub fn authority_id(&self) -> &str {
        &self.authority_id
    }

    /// Creates a new CA and writes its key and certificate to its directory.
    ///
    /// # Errors
    ///
    /// [`CaError::Io`] when the files cannot be written, [`CaError::Upstream`] when the upstream
    /// CA cannot sign, and [`CaError::KeyGeneration`] or [`CaError::Certificate`] when creating
    /// the CA fails.
    pub fn create(config: &CaConfig) -> Result<Self, CaError> {
        let files = CaFiles::new(&config.dir);
        let upstream = load_upstream(config)?;
        let key = config.key_type.generate()?;
        let now = SystemTime::now();
        let params = ca_params(&config.trust_domain, now, config.ca_ttl, upstream.as_ref())?;
        let cert = match &upstream {
            Some(upstream) => params.signed_by(&key, &upstream.issuer),
            None => params.self_signed(&key),
        }
        .map_err(|source| CaError::Certificate { what: "CA", source })?;

        files.save(&key, &cert)?;
        tracing::info!(
            trust_domain = %config.trust_domain,
            key_type = %config.key_type,
            path = %files.cert_path.display(),
            upstream = upstream.is_some(),
            "Created CA"
        );
        Self::from_parts(config, cert.der().clone(), key, upstream)
    }

    fn from_parts(
        config: &CaConfig,
        cert: CertificateDer<'static>,
        key: KeyPair,
        upstream: Option<UpstreamChain>,
    ) -> Result<Self, CaError> {
        let invalid = |reason| CaError::CaCertificate {
            path: CaFiles::new(&config.dir).cert_path,
            reason,
        };
        let (not_before, not_after) = validity(&cert).map_err(invalid)?;
        let authority_id = subject_key_id(&cert).map_err(invalid)?;
        let issuer = Issuer::from_ca_cert_der(&cert, key)
            .map_err(|source| CaError::Certificate { what: "CA", source })?;
        let (intermediates, authorities) = match upstream {
            Some(upstream) => {
                let mut intermediates = vec![cert];
                intermediates.extend(upstream.intermediates);
                (intermediates, upstream.roots)
            }
            None => (Vec::new(), vec![cert]),
        };
        Ok(Self {
            trust_domain: config.trust_domain.clone(),
            issuer,
            intermediates,
            authorities,
            authority_id,
            not_before,
            not_after,
            ttl_cut_logged: AtomicBool::new(false),
        })
    }
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("intermediates", &self.intermediates.len())
            .field("authorities", &self.authorities.len())
            .field("not_after", &rfc3339(self.not_after))
            .finish_non_exhaustive()
    }
}

/// Paths of the stored CA key and certificate.
struct CaFiles {
    dir: PathBuf,
    key_path: PathBuf,
    cert_path: PathBuf,
}

impl CaFiles {
    fn new(dir: &Path) -> Self {
        let dir = dir.to_owned();
        Self {
            key_path: dir.join("ca-key.pem"),
            cert_path: dir.join("ca-cert.pem"),
            dir,
        }
    }

    /// Reads the stored CA, or returns `None` when either file is missing (a first start, or a
    /// crash between writing the key and the certificate).
    fn load(&self) -> Result<Option<StoredCa>, CaError> {
        if !exists(&self.key_path)? || !exists(&self.cert_path)? {
            return Ok(None);
        }
        let key = load_key_pem(&self.key_path)?;
        let cert = CertificateDer::from_pem_file(&self.cert_path).map_err(|error| {
            CaError::CaCertificate {
                path: self.cert_path.clone(),
                reason: format!("no PEM certificate found: {error}"),
            }
        })?;
        let (_, not_after) = validity(&cert).map_err(|reason| CaError::CaCertificate {
            path: self.cert_path.clone(),
            reason,
        })?;
        Ok(Some(StoredCa {
            key,
            cert,
            not_after,
        }))
    }

    /// Writes the key (mode 0600) before the certificate, so a certificate on disk always has its
    /// key next to it.
    fn save(&self, key: &KeyPair, cert: &rcgen::Certificate) -> Result<(), CaError> {
        signet_core::fs::create_private_dir(&self.dir).map_err(|source| CaError::Io {
            action: "create directory",
            path: self.dir.clone(),
            source,
        })?;
        signet_core::fs::write_secret(&self.key_path, key_to_pem(key).as_bytes()).map_err(
            |source| CaError::Io {
                action: "write",
                path: self.key_path.clone(),
                source,
            },
        )?;
        signet_core::fs::write_atomic(&self.cert_path, cert.pem().as_bytes(), CERT_FILE_MODE)
            .map_err(|source| CaError::Io {
                action: "write",
                path: self.cert_path.clone(),
                source,
            })
    }
}

/// A CA key and certificate read from the data directory, not yet checked against the config.
struct StoredCa {
    key: KeyPair,
    cert: CertificateDer<'static>,
    not_after: SystemTime,
}

impl StoredCa {
    /// Returns why the stored CA cannot serve `config`, if it cannot.
    fn check(&self, config: &CaConfig, upstream: Option<&UpstreamChain>) -> Result<(), String> {
        let (_, cert) = X509Certificate::from_der(&self.cert)
            .map_err(|error| format!("unparsable certificate: {error}"))?;

        if SystemTime::now() >= self.not_after {
            return Err(format!("expired at {}", rfc3339(self.not_after)));
        }
        let expected_id = config.trust_domain.id_string();
        if uri_sans(&cert) != [expected_id.as_str()] {
            return Err(format!("not a CA for trust domain {}", config.trust_domain));
        }
        if cert.public_key().subject_public_key.data.as_ref() != self.key.public_key_raw() {
            return Err("the key does not match the certificate".to_owned());
        }
        if KeyType::of(&self.key) != Some(config.key_type) {
            return Err(format!(
                "key type is not the configured {}",
                config.key_type
            ));
        }
        if upstream.is_some_and(|upstream| self.not_after > upstream.not_after) {
            return Err("valid for longer than the upstream CA".to_owned());
        }
        check_issuer(&cert, upstream)
    }
}

/// Checks that a stored CA certificate was issued the way the configuration requires: self-signed
/// without an upstream CA, or signed by the configured upstream CA.
fn check_issuer(
    cert: &X509Certificate<'_>,
    upstream: Option<&UpstreamChain>,
) -> Result<(), String> {
    match upstream {
        Some(upstream) => {
            let (_, upstream_cert) = X509Certificate::from_der(&upstream.signing_cert)
                .map_err(|error| format!("unparsable upstream certificate: {error}"))?;
            cert.verify_signature(Some(upstream_cert.public_key()))
                .map_err(|_| "not signed by the configured upstream CA".to_owned())
        }
        None => cert
            .verify_signature(None)
            .map_err(|_| "not self-signed, but no upstream CA is configured".to_owned()),
    }
}

/// Returns the parameters of the server's CA certificate: a self-signed root, or an intermediate
/// whose validity ends no later than the upstream CA's.
fn ca_params(
    trust_domain: &TrustDomain,
    now: SystemTime,
    ttl: Duration,
    upstream: Option<&UpstreamChain>,
) -> Result<CertificateParams, CaError> {
    let mut not_after = now.checked_add(ttl).ok_or(CaError::InvalidTtl {
        ttl_seconds: ttl.as_secs(),
    })?;
    if let Some(upstream) = upstream {
        not_after = not_after.min(upstream.not_after);
    }
    let trust_domain_id = trust_domain.id_string();
    let uri = trust_domain_id
        .as_str()
        .try_into()
        .map_err(|source| CaError::Certificate { what: "CA", source })?;

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params
        .distinguished_name
        .push(DnType::OrganizationName, trust_domain.as_str());
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(super::signer::random_serial_number());
    params.not_before = to_offset(backdate(now));
    params.not_after = to_offset(not_after);
    params.use_authority_key_identifier_extension = upstream.is_some();
    Ok(params)
}

fn load_upstream(config: &CaConfig) -> Result<Option<UpstreamChain>, CaError> {
    config
        .upstream
        .as_ref()
        .map(UpstreamChain::load)
        .transpose()
}

/// Returns the subject key identifier of a DER certificate in lower-case hex.
fn subject_key_id(cert: &[u8]) -> Result<String, String> {
    use x509_parser::extensions::ParsedExtension;

    let (_, cert) = X509Certificate::from_der(cert)
        .map_err(|error| format!("unparsable certificate: {error}"))?;
    cert.extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(hex::encode(id.0)),
            _ => None,
        })
        .ok_or_else(|| "no subject key identifier".to_owned())
}

fn exists(path: &Path) -> Result<bool, CaError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CaError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Returns `time` moved back by [`CLOCK_SKEW`].
pub(super) fn backdate(time: SystemTime) -> SystemTime {
    time.checked_sub(CLOCK_SKEW).unwrap_or(time)
}

/// Returns the URI SANs of `cert`.
pub(super) fn uri_sans<'a>(cert: &'a X509Certificate<'_>) -> Vec<&'a str> {
    use x509_parser::extensions::GeneralName;

    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect()
}

/// Returns the notBefore and notAfter times of a DER certificate.
pub(super) fn validity(cert: &[u8]) -> Result<(SystemTime, SystemTime), String> {
    let (_, cert) = X509Certificate::from_der(cert)
        .map_err(|error| format!("unparsable certificate: {error}"))?;
    let validity = cert.validity();
    Ok((
        validity.not_before.to_datetime().into(),
        validity.not_after.to_datetime().into(),
    ))
}

/// Converts to the certificate library's time, dropping sub-second precision because X.509
/// times are whole seconds.
pub(super) fn to_offset(time: SystemTime) -> time::OffsetDateTime {
    let time = time::OffsetDateTime::from(time);
    time.replace_nanosecond(0).unwrap_or(time)
}

pub(super) fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{time:?}"))
}

/// How far notBefore is moved into the past, so that peers whose clocks run slightly behind
/// accept a certificate as soon as it is issued.
pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(10);

const CA_COMMON_NAME: &str = "Signet CA";

/// The CA certificate is public, so other local users may read it.
const CERT_FILE_MODE: u32 = 0o644;
