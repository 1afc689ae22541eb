//! The agent's state on disk: its X509-SVID, private key and trust bundle, so a restarted agent
//! resumes without a new join token.
//!
//! Chains and bundles are stored as concatenated DER certificates. The key file is PKCS#8 DER
//! with mode 0600. Every file is replaced atomically (temporary file, fsync, rename).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use signet_core::fs::{PUBLIC_FILE_MODE, write_atomic, write_secret};
use spiffe::SpiffeId;
use x509_parser::parse_x509_certificate;
use zeroize::Zeroizing;

use super::NodeError;
use crate::cache::X509SvidMaterial;
use crate::svid;

const SVID_FILE: &str = "agent_svid.der";
const KEY_FILE: &str = "agent_svid.key";
/// The key of a renewal whose chain may not be written yet; see [`save_svid`].
const NEXT_KEY_FILE: &str = "agent_svid.next.key";
const BUNDLE_FILE: &str = "bundle.der";
const PERMISSION_BITS: u32 = 0o7777;
const GROUP_AND_OTHER_BITS: u32 = 0o077;

/// State an earlier run of the agent left in its data directory.
#[derive(Debug)]
pub(crate) struct StoredState {
    pub(crate) agent_id: SpiffeId,
    pub(crate) svid: X509SvidMaterial,
    pub(crate) bundle: Vec<CertificateDer<'static>>,
}

/// Reads the stored SVID, key and bundle, or returns None when the directory contains none of them.
///
/// # Errors
///
/// [`NodeError::Store`] when a file cannot be read, [`NodeError::InvalidStore`] when only some
/// files exist or their content is unusable.
pub(crate) fn load(data_dir: &Path) -> Result<Option<StoredState>, NodeError> {
    let svid_path = data_dir.join(SVID_FILE);
    let key_path = data_dir.join(KEY_FILE);
    let bundle_path = data_dir.join(BUNDLE_FILE);

    let chain = read_optional(&svid_path)?;
    let key = read_optional(&key_path)?.map(Zeroizing::new);
    if key.is_some() {
        check_private(&key_path)?;
    }
    let bundle = read_optional(&bundle_path)?;
    let (chain, key, bundle) = match (chain, key, bundle) {
        (None, None, None) => return Ok(None),
        (Some(chain), Some(key), Some(bundle)) => (chain, key, bundle),
        _ => {
            return Err(invalid(
                data_dir,
                format!("one of {SVID_FILE}, {KEY_FILE} and {BUNDLE_FILE} is missing"),
            ));
        }
    };

    let chain = split_certificates(&chain).ok_or_else(|| invalid(&svid_path, "malformed DER"))?;
    let bundle =
        split_certificates(&bundle).ok_or_else(|| invalid(&bundle_path, "malformed DER"))?;
    if bundle.is_empty() {
        return Err(invalid(&bundle_path, "no certificate"));
    }
    let (agent_id, svid) = match svid::from_parts(chain.clone(), key) {
        Ok(parts) => parts,
        Err(error) => finish_renewal(data_dir, chain)?.ok_or_else(|| invalid(&svid_path, error))?,
    };
    Ok(Some(StoredState {
        agent_id,
        svid,
        bundle,
    }))
}

/// Writes the agent's X509-SVID chain and its private key (mode 0600).
///
/// The new key is written beside the current one first, then the chain, then the new key
/// replaces the current one. A crash at any point leaves a chain whose key is either the
/// current key or the new one, and [`load`] finds it.
///
/// # Errors
///
/// [`NodeError::Store`] when a file cannot be written.
pub(crate) fn save_svid(data_dir: &Path, svid: &X509SvidMaterial) -> Result<(), NodeError> {
    let next_key_path = data_dir.join(NEXT_KEY_FILE);
    write_secret(&next_key_path, &svid.private_key_pkcs8).map_err(store_error(&next_key_path))?;
    let svid_path = data_dir.join(SVID_FILE);
    write_atomic(&svid_path, &concatenate(&svid.chain), PUBLIC_FILE_MODE)
        .map_err(store_error(&svid_path))?;
    promote_next_key(data_dir)
}

/// Completes a renewal that a crash interrupted after the chain was written: returns the stored
/// chain with the next key when they match, and makes that key the current one.
fn finish_renewal(
    data_dir: &Path,
    chain: Vec<CertificateDer<'static>>,
) -> Result<Option<(SpiffeId, X509SvidMaterial)>, NodeError> {
    let next_key_path = data_dir.join(NEXT_KEY_FILE);
    let Some(next_key) = read_optional(&next_key_path)?.map(Zeroizing::new) else {
        return Ok(None);
    };
    check_private(&next_key_path)?;
    let Ok(parts) = svid::from_parts(chain, next_key) else {
        return Ok(None);
    };
    promote_next_key(data_dir)?;
    tracing::info!("Completed an agent SVID renewal that was interrupted");
    Ok(Some(parts))
}

fn promote_next_key(data_dir: &Path) -> Result<(), NodeError> {
    let next_key_path = data_dir.join(NEXT_KEY_FILE);
    std::fs::rename(&next_key_path, data_dir.join(KEY_FILE))
        .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
        .map_err(store_error(&next_key_path))
}

/// Writes the trust bundle.
///
/// # Errors
///
/// [`NodeError::Store`] when the file cannot be written.
pub(crate) fn save_bundle(
    data_dir: &Path,
    bundle: &[CertificateDer<'static>],
) -> Result<(), NodeError> {
    let path = data_dir.join(BUNDLE_FILE);
    write_atomic(&path, &concatenate(bundle), PUBLIC_FILE_MODE).map_err(store_error(&path))
}

/// Fails unless only the owner may access the key file at `path`.
fn check_private(path: &Path) -> Result<(), NodeError> {
    let mode = std::fs::metadata(path)
        .map_err(store_error(path))?
        .permissions()
        .mode()
        & PERMISSION_BITS;
    if mode & GROUP_AND_OTHER_BITS != 0 {
        return Err(NodeError::InsecureKeyFile {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, NodeError> {
    match std::fs::read(path) {
        Ok(contents) => Ok(Some(contents)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(store_error(path)(error)),
    }
}

/// Splits concatenated DER certificates, or returns None when a certificate is malformed.
fn split_certificates(mut der: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let mut certificates = Vec::new();
    while !der.is_empty() {
        let (rest, _) = parse_x509_certificate(der).ok()?;
        let length = der.len() - rest.len();
        certificates.push(CertificateDer::from(der.get(..length)?.to_vec()));
        der = rest;
    }
    Some(certificates)
}

fn concatenate(certificates: &[CertificateDer<'static>]) -> Vec<u8> {
    certificates
        .iter()
        .flat_map(|certificate| certificate.iter().copied())
        .collect()
}

fn store_error(path: &Path) -> impl FnOnce(io::Error) -> NodeError {
    let path = path.to_owned();
    move |source| NodeError::Store { path, source }
}

fn invalid(path: &Path, reason: impl ToString) -> NodeError {
    NodeError::InvalidStore {
        path: PathBuf::from(path),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
