//! Turns an X.509 context into the helper's files and writes them atomically, key first.

use std::fmt;
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::Context;
use signet_core::fs::write_atomic;
use spiffe::{Certificate, X509Context};
use zeroize::Zeroizing;

use super::config::FilePlan;

/// Mode of `cert_dir` when the helper creates it.
const CERT_DIR_MODE: u32 = 0o755;

/// The default SVID and the bundles the helper writes, as DER.
pub struct Material {
    /// SPIFFE ID of the SVID, for logs.
    pub spiffe_id: String,
    /// Certificate chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 private key.
    pub key: Zeroizing<Vec<u8>>,
    /// Authorities of the SVID's own trust domain.
    pub bundle: Vec<Vec<u8>>,
    /// Authorities of every other trust domain, by trust domain name, sorted.
    pub federated: Vec<(String, Vec<Vec<u8>>)>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain", &self.chain.len())
            .field("bundle", &self.bundle.len())
            .field("federated", &self.federated.len())
            .finish_non_exhaustive()
    }
}

/// One file to write.
pub struct PlannedFile {
    /// Target path.
    pub path: PathBuf,
    /// PEM contents; wiped on drop because it may hold the key.
    pub contents: Zeroizing<String>,
    /// Mode applied on every write.
    pub mode: u32,
}

impl fmt::Debug for PlannedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlannedFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:#o}", self.mode))
            .finish_non_exhaustive()
    }
}

// === impl Material ===

impl Material {
    /// Takes the default SVID of `context` and the bundles.
    ///
    /// # Errors
    ///
    /// When the context contains no SVID.
    pub fn from_context(context: &X509Context) -> anyhow::Result<Self> {
        let svid = context
            .default_svid()
            .context("the agent returned no X509-SVID for this process")?;
        let own = svid.spiffe_id().trust_domain();
        let mut bundle = Vec::new();
        let mut federated = Vec::new();
        for (trust_domain, authorities) in context.bundle_set().iter() {
            let der = to_der(authorities.authorities());
            if trust_domain == own {
                bundle = der;
            } else {
                federated.push((trust_domain.to_string(), der));
            }
        }
        federated.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            spiffe_id: svid.spiffe_id().to_string(),
            chain: to_der(svid.cert_chain()),
            key: Zeroizing::new(svid.private_key().as_bytes().to_vec()),
            bundle,
            federated,
        })
    }
}

/// Lists the files to write, in write order: the key first, so a reader that sees a new
/// certificate always finds its key already in place.
#[must_use]
pub fn plan(files: &FilePlan, material: &Material) -> Vec<PlannedFile> {
    let key_block = pem::Pem::new("PRIVATE KEY", material.key.to_vec());
    let key_pem = Zeroizing::new(pem::encode(&key_block));
    drop(Zeroizing::new(key_block.into_contents()));

    let mut chain: Vec<&[u8]> = material.chain.iter().map(Vec::as_slice).collect();
    let mut bundle: Vec<&[u8]> = material.bundle.iter().map(Vec::as_slice).collect();
    if files.add_intermediates_to_bundle {
        // As in spiffe-helper, the intermediates move: the SVID file keeps only the leaf.
        bundle.extend(chain.drain(1..));
    }
    let mut planned = vec![
        PlannedFile {
            path: files.key_file.clone(),
            contents: key_pem,
            mode: files.key_file_mode,
        },
        public(files.svid_file.clone(), &chain, files.cert_file_mode),
        public(files.bundle_file.clone(), &bundle, files.cert_file_mode),
    ];
    // Trust domain names contain only [a-z0-9._-], so each name stays a file in cert_dir.
    for (trust_domain, authorities) in &material.federated {
        let path = files
            .cert_dir
            .join(format!("federated_bundle.{trust_domain}.pem"));
        planned.push(public(path, authorities, files.cert_file_mode));
    }
    planned
}

/// Creates `cert_dir` if missing (mode 0755; an existing directory keeps its mode).
///
/// # Errors
///
/// When the directory cannot be created.
pub fn create_cert_dir(files: &FilePlan) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(CERT_DIR_MODE)
        .create(&files.cert_dir)
        .with_context(|| format!("creating cert_dir {} failed", files.cert_dir.display()))
}

/// Writes the planned files in order, each atomically with its mode.
///
/// # Errors
///
/// On the first write that fails; files written before it stay.
pub fn write_all(planned: &[PlannedFile]) -> anyhow::Result<()> {
    for file in planned.iter().filter(|file| !is_current(file)) {
        write_atomic(&file.path, file.contents.as_bytes(), file.mode)
            .with_context(|| format!("writing {} failed", file.path.display()))?;
    }
    Ok(())
}

/// Returns true when the file already has the planned contents and mode, so rewriting it would
/// only wake software that watches its modification time.
fn is_current(file: &PlannedFile) -> bool {
    let Ok(metadata) = std::fs::metadata(&file.path) else {
        return false;
    };
    let same_mode = metadata.permissions().mode() & 0o7777 == file.mode;
    let same_size = usize::try_from(metadata.len()).is_ok_and(|len| len == file.contents.len());
    same_mode
        && same_size
        && std::fs::read(&file.path)
            .map(Zeroizing::new)
            .is_ok_and(|existing| existing.as_slice() == file.contents.as_bytes())
}

fn public<D: AsRef<[u8]>>(path: PathBuf, certificates: &[D], mode: u32) -> PlannedFile {
    let blocks: Vec<pem::Pem> = certificates
        .iter()
        .map(|der| pem::Pem::new("CERTIFICATE", der.as_ref()))
        .collect();
    PlannedFile {
        path,
        contents: Zeroizing::new(pem::encode_many(&blocks)),
        mode,
    }
}

fn to_der(certificates: &[Certificate]) -> Vec<Vec<u8>> {
    certificates
        .iter()
        .map(|certificate| certificate.as_bytes().to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs::{self, Permissions};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use super::*;

    fn file_plan(dir: &Path) -> FilePlan {
        FilePlan {
            cert_dir: dir.to_path_buf(),
            svid_file: dir.join("svid.pem"),
            key_file: dir.join("svid_key.pem"),
            bundle_file: dir.join("svid_bundle.pem"),
            cert_file_mode: 0o644,
            key_file_mode: 0o600,
            add_intermediates_to_bundle: false,
        }
    }

    fn material() -> Material {
        Material {
            spiffe_id: "spiffe://example.org/web".to_owned(),
            chain: vec![b"leaf".to_vec(), b"intermediate".to_vec()],
            key: Zeroizing::new(b"key".to_vec()),
            bundle: vec![b"root".to_vec()],
            federated: vec![("other.org".to_owned(), vec![b"other-root".to_vec()])],
        }
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn certificates(path: &Path) -> Vec<Vec<u8>> {
        pem::parse_many(fs::read(path).unwrap())
            .unwrap()
            .into_iter()
            .map(pem::Pem::into_contents)
            .collect()
    }

    #[test]
    fn key_is_planned_before_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = file_plan(dir.path());
        let planned = plan(&files, &material());
        let order: Vec<&Path> = planned.iter().map(|file| file.path.as_path()).collect();
        assert_eq!(
            order,
            [
                files.key_file.as_path(),
                files.svid_file.as_path(),
                files.bundle_file.as_path(),
                dir.path().join("federated_bundle.other.org.pem").as_path(),
            ]
        );
    }

    #[test]
    fn writes_chain_key_and_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let files = file_plan(dir.path());
        write_all(&plan(&files, &material())).unwrap();

        assert_eq!(
            certificates(&files.svid_file),
            [b"leaf".to_vec(), b"intermediate".to_vec()]
        );
        assert_eq!(certificates(&files.bundle_file), [b"root".to_vec()]);
        assert_eq!(
            certificates(&dir.path().join("federated_bundle.other.org.pem")),
            [b"other-root".to_vec()]
        );
        let key = pem::parse(fs::read(&files.key_file).unwrap()).unwrap();
        assert_eq!(key.tag(), "PRIVATE KEY");
        assert_eq!(key.contents(), b"key");
    }

    #[test]
    fn unchanged_files_are_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let files = file_plan(dir.path());
        write_all(&plan(&files, &material())).unwrap();
        let inode = |path: &Path| fs::metadata(path).unwrap().ino();
        let before = inode(&files.svid_file);

        write_all(&plan(&files, &material())).unwrap();
        assert_eq!(inode(&files.svid_file), before, "unchanged file rewritten");

        let mut changed = material();
        changed.chain = vec![b"new-leaf".to_vec()];
        write_all(&plan(&files, &changed)).unwrap();
        assert_ne!(
            inode(&files.svid_file),
            before,
            "changed file not rewritten"
        );
    }

    #[test]
    fn intermediates_move_to_the_bundle_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = file_plan(dir.path());
        files.add_intermediates_to_bundle = true;
        write_all(&plan(&files, &material())).unwrap();
        assert_eq!(certificates(&files.svid_file), [b"leaf".to_vec()]);
        assert_eq!(
            certificates(&files.bundle_file),
            [b"root".to_vec(), b"intermediate".to_vec()]
        );
    }

    #[test]
    fn modes_are_reapplied_over_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = file_plan(dir.path());
        for path in [&files.svid_file, &files.key_file, &files.bundle_file] {
            fs::write(path, b"old").unwrap();
            fs::set_permissions(path, Permissions::from_mode(0o666)).unwrap();
        }
        write_all(&plan(&files, &material())).unwrap();
        assert_eq!(mode_of(&files.key_file), 0o600);
        assert_eq!(mode_of(&files.svid_file), 0o644);
        assert_eq!(mode_of(&files.bundle_file), 0o644);
    }

    #[test]
    fn configured_modes_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = file_plan(dir.path());
        files.cert_file_mode = 0o444;
        files.key_file_mode = 0o400;
        write_all(&plan(&files, &material())).unwrap();
        assert_eq!(mode_of(&files.key_file), 0o400);
        assert_eq!(mode_of(&files.svid_file), 0o444);
    }

    #[test]
    fn debug_output_leaves_out_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let planned = plan(&file_plan(dir.path()), &material());
        let debug_text = format!("{:?} {:?}", material(), planned);
        assert!(!debug_text.contains("PRIVATE KEY"), "{debug_text}");
        assert!(!debug_text.contains("a2V5"), "{debug_text}");
    }
}
