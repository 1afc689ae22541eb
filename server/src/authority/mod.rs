//! The server's signing authorities, the X.509 CA and the JWT signing key, and their rotation.
//!
//! Each kind keeps up to three authorities in slots. The prepared one is published in the trust
//! bundle but signs nothing yet. The active one signs. The old one signed until the last
//! activation and stays in the bundle, because what it signed is still valid. Automatically, the
//! next authority is prepared at half of the active one's lifetime and activated at five sixths of
//! it, so every agent and workload has the new root long before anything is signed with it.
//! Operators drive the same steps by hand, and taint or revoke the old authority.
//!
//! Each kind lives under `<data_dir>/authorities/<kind>/`: a journal naming the slots, and one
//! directory per authority, named by a generation number that is never reused.

mod journal;
mod jwt;
mod rotation;
mod schedule;
mod x509;

use std::future::Future;
use std::path::Path;
use std::time::SystemTime;

use crate::datastore::Datastore;

pub use jwt::JwtKind;
pub use rotation::{AuthorityInfo, AuthorityStatus, Rotation, RotationError};
pub use schedule::run_schedule;
pub use x509::X509Kind;

/// One kind of signing authority: how it is created, stored and published.
pub trait AuthorityKind: Clone + Send + Sync + 'static {
    /// The loaded authority that signs.
    type Authority: Send + Sync + 'static;

    /// Name in messages, for example "X.509 authority".
    const NAME: &'static str;
    /// Name of the CLI command group and of the directory, for example "x509".
    const COMMAND: &'static str;

    /// Returns the ID operators name the authority by.
    fn authority_id(authority: &Self::Authority) -> String;

    /// Returns when the authority starts and stops signing.
    fn validity(authority: &Self::Authority) -> (SystemTime, SystemTime);

    /// Loads the authority stored in `dir`, or returns `None` (after logging why) when it is
    /// missing or unusable.
    ///
    /// # Errors
    ///
    /// A stored file that cannot be read, or a private key readable by other users.
    fn load(&self, dir: &Path) -> anyhow::Result<Option<Self::Authority>>;

    /// Creates a new authority and stores it in `dir`.
    ///
    /// # Errors
    ///
    /// Key generation, signing or file writes failed.
    fn create(&self, dir: &Path) -> anyhow::Result<Self::Authority>;

    /// Adds the authority to the trust bundle; adding it again changes nothing.
    fn publish(
        &self,
        datastore: &Datastore,
        authority: &Self::Authority,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Marks the authority as tainted in the trust bundle.
    fn taint(
        &self,
        datastore: &Datastore,
        authority: &Self::Authority,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Removes the authority from the trust bundle.
    fn remove(
        &self,
        datastore: &Datastore,
        authority: &Self::Authority,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Returns why authorities of this kind cannot be tainted or revoked here, if they cannot.
    fn reject_local_changes(&self) -> Option<String>;

    /// Returns why the tainted authority cannot leave the bundle yet, if something still depends
    /// on it.
    fn still_in_use(
        &self,
        datastore: &Datastore,
        authority: &Self::Authority,
    ) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;
}

/// Fails, naming the first missing file, unless `dir` contains every one of `files`: an
/// authority the journal names must never be replaced silently.
fn require_files(dir: &Path, files: &[&str]) -> anyhow::Result<()> {
    match files
        .iter()
        .map(|file| dir.join(file))
        .find(|path| !path.exists())
    {
        Some(missing) => Err(anyhow::anyhow!(
            "{} is missing; restore it from a backup, or move {} aside to start with new \
             authorities of this kind, which agents must then be given as a new trust bundle",
            missing.display(),
            dir.parent().unwrap_or(dir).display()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
