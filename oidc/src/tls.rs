//! The TLS certificate, read from PEM files and reloaded when they change.
//!
//! Each handshake compares the files' modification time, size and inode with those of the last
//! load, so a renewed certificate is served from the next connection on, whether the files are
//! rewritten in place or replaced by rename. A change that does not load (a key that no longer
//! matches, a file half written) keeps the previous certificate in service and is retried at
//! the next change of either file.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

/// Error from loading the certificate and key files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFilesError {
    /// A file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error, which includes PEM syntax errors.
        #[source]
        source: io::Error,
    },
    /// The certificate file contains no PEM certificate.
    #[error("{0} contains no PEM certificate")]
    NoCertificate(PathBuf),
    /// The key file contains no PEM private key.
    #[error("{0} contains no PEM private key (PKCS#8, PKCS#1 or SEC 1)")]
    NoKey(PathBuf),
    /// The key cannot be used, or does not belong to the certificate.
    #[error("private key {key} cannot be used with certificate {cert}")]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The TLS settings could not be built.
    #[error("failed to build the TLS settings")]
    Config(#[source] rustls::Error),
}

/// Serves the certificate from two PEM files, reloading them when they change.
pub struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<LoadedState>,
}

struct LoadedState {
    certified_key: Arc<CertifiedKey>,
    /// Stamps of the last load attempt, successful or not.
    stamps: Option<FileStamps>,
}

/// Identity of one version of the two files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamps {
    cert: FileStamp,
    key: FileStamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl ReloadingCertificate {
    /// Loads the certificate chain and key.
    ///
    /// # Errors
    ///
    /// [`TlsFilesError`] when a file is unreadable, contains no certificate or key, or the key does
    /// not match the certificate.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsFilesError> {
        let stamps = FileStamps::read(cert_path, key_path);
        let certified_key = load_certified_key(cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            state: Mutex::new(LoadedState {
                certified_key: Arc::new(certified_key),
                stamps,
            }),
        })
    }

    /// Returns TLS server settings that take their certificate from `self` at each handshake
    /// and offer HTTP/1.1 only.
    ///
    /// # Errors
    ///
    /// [`TlsFilesError::Config`] when the provider supports neither TLS 1.3 nor 1.2.
    pub fn server_config(self) -> Result<ServerConfig, TlsFilesError> {
        let provider = Arc::clone(&self.provider);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(TlsFilesError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(self));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Returns the certificate to serve, reloading the files first if they changed.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let stamps = FileStamps::read(&self.cert_path, &self.key_path);
        if stamps.is_some() && stamps != state.stamps {
            state.stamps = stamps;
            match load_certified_key(&self.cert_path, &self.key_path, &self.provider) {
                Ok(certified_key) => {
                    tracing::info!(cert = %self.cert_path.display(), "Reloaded TLS certificate");
                    state.certified_key = Arc::new(certified_key);
                }
                Err(error) => tracing::warn!(
                    error = %error_chain(&error),
                    "Failed to reload TLS certificate; serving the previous one"
                ),
            }
        }
        Arc::clone(&state.certified_key)
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl FileStamps {
    /// Returns the stamps, or `None` while either file is missing (during a replacement).
    fn read(cert: &Path, key: &Path) -> Option<Self> {
        Some(Self {
            cert: FileStamp::read(cert)?,
            key: FileStamp::read(key)?,
        })
    }
}

impl FileStamp {
    fn read(path: &Path) -> Option<Self> {
        let metadata = fs::metadata(path).ok()?;
        Some(Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
        })
    }
}

fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsFilesError> {
    let chain = read_chain(cert_path)?;
    let key = read_key(key_path)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsFilesError::Unusable {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFilesError> {
    let read_error = |source| TlsFilesError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(read_error)?);
    let chain = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if chain.is_empty() {
        return Err(TlsFilesError::NoCertificate(path.to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, TlsFilesError> {
    let read_error = |source| TlsFilesError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(read_error)?);
    rustls_pemfile::private_key(&mut reader)
        .map_err(read_error)?
        .ok_or_else(|| TlsFilesError::NoKey(path.to_owned()))
}

/// Joins an error with its sources, for one log field.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
