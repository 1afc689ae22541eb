//! The slots of one kind of authority, restored from the data directory, moved through prepared,
//! active and old, and published in the trust bundle.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use anyhow::Context;
use tokio::sync::Mutex;

use super::AuthorityKind;
use super::journal::{Journal, SlotRecord, generation_dir};
use super::schedule::{activation_time, earliest_activation, preparation_time};
use crate::api::ChangeFeed;
use crate::datastore::Datastore;

/// The authorities of one kind and the lock that serializes every change of them.
pub struct Rotation<K: AuthorityKind> {
    kind: K,
    dir: PathBuf,
    datastore: Datastore,
    changes: ChangeFeed,
    /// The active authority, read on every signature without waiting for a change in progress.
    active: RwLock<Arc<K::Authority>>,
    slots: Mutex<Slots<K::Authority>>,
}

/// The operator's view of one authority.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AuthorityInfo {
    /// The ID operators name the authority by.
    pub authority_id: String,
    /// When the authority stops signing, and so when everything it signed has expired.
    pub expires_at: SystemTime,
    /// Whether agents replace what it signed at once (an operator tainted it).
    pub tainted: bool,
}

/// The authorities in each slot.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AuthorityStatus {
    /// The authority that signs.
    pub active: AuthorityInfo,
    /// The next authority, published but not signing yet.
    pub prepared: Option<AuthorityInfo>,
    /// The previous authority, still published.
    pub old: Option<AuthorityInfo>,
}

/// Error of a change of the authorities: rejected, or failed.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The request names no authority of this server.
    #[error("{0}")]
    NotFound(String),
    /// The authorities are not in a state that allows the change.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Storing or publishing an authority failed.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

/// The loaded authorities, in step with the journal that names them.
struct Slots<A> {
    journal: Journal,
    active: Arc<A>,
    prepared: Option<Arc<A>>,
    /// When the prepared authority entered the bundle, or its creation time after a restart.
    prepared_since: Option<SystemTime>,
    old: Option<Arc<A>>,
}

impl<K: AuthorityKind> Rotation<K> {
    /// Restores the authorities stored under `<data_dir>/authorities/<kind>/`, replaces an active
    /// authority that is missing or expired (by the prepared one when there is one), and publishes
    /// every authority in the bundle.
    ///
    /// # Errors
    ///
    /// A journal or key file that cannot be read, a failure to create an authority, or a
    /// datastore failure.
    pub async fn open(
        kind: K,
        data_dir: &Path,
        datastore: Datastore,
        changes: ChangeFeed,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("authorities").join(K::COMMAND);
        let slots = {
            let (kind, dir) = (kind.clone(), dir.clone());
            // Key generation and file I/O block, so they run off the async workers.
            tokio::task::spawn_blocking(move || restore(&kind, &dir, SystemTime::now()))
                .await
                .context("the authority task failed")??
        };
        for authority in [
            Some(&slots.active),
            slots.prepared.as_ref(),
            slots.old.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            kind.publish(&datastore, authority).await?;
        }
        if let (Some(old), Some(SlotRecord { tainted: true, .. })) = (&slots.old, slots.journal.old)
        {
            kind.taint(&datastore, old).await?;
        }
        tracing::info!(
            kind = K::NAME,
            authority_id = %K::authority_id(&slots.active),
            expiry = %rfc3339(K::validity(&slots.active).1),
            "Active authority ready"
        );
        Ok(Self {
            active: RwLock::new(Arc::clone(&slots.active)),
            kind,
            dir,
            datastore,
            changes,
            slots: Mutex::new(slots),
        })
    }

    /// Returns the authority that signs now.
    pub fn active(&self) -> Arc<K::Authority> {
        Arc::clone(&self.active.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Returns the authority that peers have trusted longest: the old one while it is untainted
    /// and has more than a twelfth of its lifetime left, else the active one.
    ///
    /// The server's own TLS identity comes from it, so an agent that missed the bundle update
    /// with the active authority (it was offline, or the server was) still trusts the server
    /// and can fetch that update.
    pub async fn established(&self, now: SystemTime) -> Arc<K::Authority> {
        let slots = self.slots.lock().await;
        match (&slots.old, slots.journal.old) {
            (Some(old), Some(record)) if !record.tainted && has_margin::<K>(old, now) => {
                Arc::clone(old)
            }
            _ => Arc::clone(&slots.active),
        }
    }

    /// Returns the authorities in each slot.
    pub async fn status(&self) -> AuthorityStatus {
        let slots = self.slots.lock().await;
        AuthorityStatus {
            active: info::<K>(&slots.active, slots.journal.active),
            prepared: slots
                .prepared
                .as_ref()
                .map(|prepared| info::<K>(prepared, slots.journal.prepared)),
            old: slots
                .old
                .as_ref()
                .map(|old| info::<K>(old, slots.journal.old)),
        }
    }

    /// Creates a new authority, publishes it in the bundle and puts it in the prepared slot,
    /// replacing an earlier prepared one.
    ///
    /// # Errors
    ///
    /// [`RotationError::Internal`] when creating, storing or publishing it fails.
    pub async fn prepare(&self) -> Result<AuthorityInfo, RotationError> {
        let mut slots = self.slots.lock().await;
        self.prepare_locked(&mut slots).await
    }

    /// Makes the prepared authority `authority_id` the active one. The active one becomes old,
    /// and an earlier old one leaves the journal (it stays in the bundle until it expires).
    ///
    /// # Errors
    ///
    /// [`RotationError::FailedPrecondition`] when no authority is prepared or `authority_id` is
    /// not the prepared one, [`RotationError::Internal`] when the journal cannot be written.
    pub async fn activate(&self, authority_id: &str) -> Result<AuthorityInfo, RotationError> {
        let mut slots = self.slots.lock().await;
        self.activate_locked(&mut slots, authority_id).await
    }

    /// Taints the old authority `authority_id`: it stays in the bundle, and agents replace every
    /// SVID it signed at once.
    ///
    /// # Errors
    ///
    /// [`RotationError::FailedPrecondition`] when `authority_id` is not the old authority, is
    /// tainted already, or this kind cannot be tainted here; [`RotationError::Internal`] when the
    /// bundle or the journal cannot be written.
    pub async fn taint(&self, authority_id: &str) -> Result<AuthorityInfo, RotationError> {
        let mut slots = self.slots.lock().await;
        let (old, record) = self.old_slot(&slots, authority_id, "tainted")?;
        if record.tainted {
            return Err(RotationError::FailedPrecondition(format!(
                "{} {authority_id} is tainted already",
                K::NAME
            )));
        }
        self.kind.taint(&self.datastore, &old).await?;
        slots.journal.old = Some(SlotRecord {
            tainted: true,
            ..record
        });
        self.save(&slots.journal)?;
        self.bundle_changed().await;
        tracing::warn!(kind = K::NAME, authority_id, "Authority tainted");
        Ok(info::<K>(&old, slots.journal.old))
    }

    /// Removes the tainted old authority `authority_id` from the bundle and the journal.
    ///
    /// # Errors
    ///
    /// [`RotationError::FailedPrecondition`] when `authority_id` is not the old authority, is not
    /// tainted, or something still depends on it; [`RotationError::Internal`] when the bundle or
    /// the journal cannot be written.
    pub async fn revoke(&self, authority_id: &str) -> Result<AuthorityInfo, RotationError> {
        let mut slots = self.slots.lock().await;
        let (old, record) = self.old_slot(&slots, authority_id, "revoked")?;
        if !record.tainted {
            return Err(RotationError::FailedPrecondition(format!(
                "{} {authority_id} is not tainted: taint it first (`signet-server localauthority \
                 {} taint --authority-id {authority_id}`) so that agents replace what it signed, \
                 then revoke it",
                K::NAME,
                K::COMMAND
            )));
        }
        if let Some(reason) = self.kind.still_in_use(&self.datastore, &old).await? {
            return Err(RotationError::FailedPrecondition(format!(
                "{} {authority_id} is still in use: {reason}",
                K::NAME
            )));
        }
        self.kind.remove(&self.datastore, &old).await?;
        slots.journal.old = None;
        slots.old = None;
        self.save(&slots.journal)?;
        self.remove_generation(record.generation);
        self.bundle_changed().await;
        tracing::warn!(kind = K::NAME, authority_id, "Authority revoked");
        Ok(info::<K>(&old, Some(record)))
    }

    /// Takes the automatic steps that are due at `now`: drops an expired old authority,
    /// prepares at half of the active authority's lifetime and activates at five sixths of it.
    /// Returns when the next step is due.
    ///
    /// # Errors
    ///
    /// [`RotationError::Internal`] when a step fails; it is tried again at the next call.
    pub async fn advance(&self, now: SystemTime) -> Result<SystemTime, RotationError> {
        let mut slots = self.slots.lock().await;
        if let Some(old) = &slots.old
            && K::validity(old).1 <= now
            && let Some(record) = slots.journal.old.take()
        {
            slots.old = None;
            self.save(&slots.journal)?;
            self.remove_generation(record.generation);
        }
        let validity = K::validity(&slots.active);
        if slots.prepared.is_none() && now >= preparation_time(validity) {
            self.prepare_locked(&mut slots).await?;
        }
        if let Some(prepared) = &slots.prepared
            && now >= activation_time(validity)
            && now >= earliest_activation(validity, slots.prepared_since.unwrap_or(now))
        {
            let authority_id = K::authority_id(prepared);
            self.activate_locked(&mut slots, &authority_id).await?;
        }

        let validity = K::validity(&slots.active);
        let next = match slots.prepared_since {
            None => preparation_time(validity),
            Some(since) => activation_time(validity).max(earliest_activation(validity, since)),
        };
        let old_expiry = slots.old.as_ref().map(|old| K::validity(old).1);
        Ok(old_expiry.map_or(next, |expiry| expiry.min(next)))
    }

    async fn prepare_locked(
        &self,
        slots: &mut Slots<K::Authority>,
    ) -> Result<AuthorityInfo, RotationError> {
        let generation = slots.journal.allocate_generation();
        let prepared = {
            let (kind, dir) = (self.kind.clone(), generation_dir(&self.dir, generation));
            tokio::task::spawn_blocking(move || kind.create(&dir))
                .await
                .context("the authority task failed")??
        };

        // Published before the journal names it, so a prepared authority is always in the bundle.
        self.kind.publish(&self.datastore, &prepared).await?;
        let replaced_record = slots.journal.prepared.replace(SlotRecord {
            generation,
            tainted: false,
        });
        self.save(&slots.journal)?;
        let prepared = Arc::new(prepared);
        let replaced = slots.prepared.replace(Arc::clone(&prepared));
        slots.prepared_since = Some(SystemTime::now());

        if let (Some(record), Some(authority)) = (replaced_record, replaced) {
            // The replaced authority never signed anything, so nothing needs its root any more.
            if let Err(error) = self.kind.remove(&self.datastore, &authority).await {
                tracing::warn!(
                    kind = K::NAME,
                    authority_id = %K::authority_id(&authority),
                    error = %error,
                    "Failed to remove the replaced prepared authority from the bundle; it leaves \
                     the bundle when it expires"
                );
            }
            self.remove_generation(record.generation);
        }
        self.bundle_changed().await;
        tracing::info!(
            kind = K::NAME,
            authority_id = %K::authority_id(&prepared),
            expiry = %rfc3339(K::validity(&prepared).1),
            "Authority prepared and published in the bundle"
        );
        Ok(info::<K>(&prepared, slots.journal.prepared))
    }

    async fn activate_locked(
        &self,
        slots: &mut Slots<K::Authority>,
        authority_id: &str,
    ) -> Result<AuthorityInfo, RotationError> {
        let (Some(prepared), Some(prepared_record)) = (&slots.prepared, slots.journal.prepared)
        else {
            return Err(RotationError::FailedPrecondition(format!(
                "no {} is prepared: run `signet-server localauthority {} prepare` first",
                K::NAME,
                K::COMMAND
            )));
        };
        let prepared_id = K::authority_id(prepared);
        if prepared_id != authority_id {
            return Err(self.not_in_slot(slots, authority_id, "activated", "prepared"));
        }
        if let (Some(old), Some(SlotRecord { tainted: true, .. })) = (&slots.old, slots.journal.old)
        {
            let old_id = K::authority_id(old);
            return Err(RotationError::FailedPrecondition(format!(
                "the old {} {old_id} is tainted and would leave the old slot, after which it could                  not be revoked: revoke it first (`signet-server localauthority {} revoke                  --authority-id {old_id}`)",
                K::NAME,
                K::COMMAND
            )));
        }

        let prepared = Arc::clone(prepared);
        let forgotten = slots.journal.old.replace(SlotRecord {
            generation: slots.journal.active.map_or(0, |active| active.generation),
            tainted: false,
        });
        slots.journal.active = Some(prepared_record);
        slots.journal.prepared = None;
        self.save(&slots.journal)?;
        if let Some(forgotten) = forgotten {
            self.remove_generation(forgotten.generation);
        }
        slots.old = Some(std::mem::replace(&mut slots.active, Arc::clone(&prepared)));
        slots.prepared = None;
        slots.prepared_since = None;
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&prepared);
        tracing::info!(
            kind = K::NAME,
            authority_id,
            expiry = %rfc3339(K::validity(&prepared).1),
            "Authority activated"
        );
        Ok(info::<K>(&prepared, slots.journal.active))
    }

    /// Returns the old authority if it is `authority_id` and this kind allows local changes.
    fn old_slot(
        &self,
        slots: &Slots<K::Authority>,
        authority_id: &str,
        action: &str,
    ) -> Result<(Arc<K::Authority>, SlotRecord), RotationError> {
        if let Some(reason) = self.kind.reject_local_changes() {
            return Err(RotationError::FailedPrecondition(reason));
        }
        match (&slots.old, slots.journal.old) {
            (Some(old), Some(record)) if K::authority_id(old) == authority_id => {
                Ok((Arc::clone(old), record))
            }
            _ => Err(self.not_in_slot(slots, authority_id, action, "old")),
        }
    }

    /// Explains that `authority_id` cannot be `action` because it is not in `slot`.
    fn not_in_slot(
        &self,
        slots: &Slots<K::Authority>,
        authority_id: &str,
        action: &str,
        slot: &str,
    ) -> RotationError {
        let current = [
            ("active", Some(&slots.active)),
            ("prepared", slots.prepared.as_ref()),
            ("old", slots.old.as_ref()),
        ]
        .into_iter()
        .find(|(_, authority)| authority.is_some_and(|a| K::authority_id(a) == authority_id));
        let show = format!("`signet-server localauthority {} show`", K::COMMAND);
        match current {
            Some((current, _)) => RotationError::FailedPrecondition(format!(
                "{} {authority_id} is the {current} authority; only the {slot} authority can be \
                 {action} (see {show})",
                K::NAME
            )),
            None => RotationError::NotFound(format!(
                "no {} {authority_id:?} on this server; {show} lists them",
                K::NAME
            )),
        }
    }

    fn save(&self, journal: &Journal) -> Result<(), RotationError> {
        journal
            .save(&self.dir)
            .with_context(|| format!("failed to write the journal in {}", self.dir.display()))
            .map_err(RotationError::Internal)
    }

    /// Deletes the files of an authority the journal no longer names.
    fn remove_generation(&self, generation: u64) {
        let dir = generation_dir(&self.dir, generation);
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(path = %dir.display(), error = %error, "Failed to delete an authority");
        }
    }

    async fn bundle_changed(&self) {
        match self.datastore.bundle().await {
            Ok(bundle) => self.changes.bundle_changed(bundle.sequence_number),
            Err(error) => {
                tracing::warn!(error = %error, "Failed to read the bundle after a change");
                self.changes.notify();
            }
        }
    }
}

impl<K: AuthorityKind> std::fmt::Debug for Rotation<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("kind", &K::NAME)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Loads the journal and the authorities it names, drops those that are unusable or expired,
/// fills the active slot, writes the journal back and deletes unnamed authority directories.
fn restore<K: AuthorityKind>(
    kind: &K,
    dir: &Path,
    now: SystemTime,
) -> anyhow::Result<Slots<K::Authority>> {
    signet_core::fs::create_private_dir(dir)
        .with_context(|| format!("failed to create {}", dir.display()))?;
    let lost = |reason: String| {
        anyhow::anyhow!(
            "{reason}; restore it from a backup, or move {} aside to start with new authorities \
             of this kind, which agents must then be given as a new trust bundle",
            dir.display()
        )
    };
    let mut journal = Journal::load(dir).map_err(lost)?;
    if journal == Journal::default() && has_generations(dir) {
        return Err(lost(format!(
            "{} has authorities but no journal naming them",
            dir.display()
        )));
    }
    let load = |slot: Option<SlotRecord>| -> anyhow::Result<Option<(SlotRecord, K::Authority)>> {
        let Some(record) = slot else { return Ok(None) };
        let generation = generation_dir(dir, record.generation);
        if !generation.is_dir() {
            return Err(lost(format!(
                "the journal names {} but it is missing",
                generation.display()
            )));
        }
        let loaded = kind.load(&generation)?;
        Ok(loaded
            .filter(|authority| K::validity(authority).1 > now)
            .map(|authority| (record, authority)))
    };
    let active = load(journal.active)?;
    let mut prepared = load(journal.prepared)?;
    let old = load(journal.old)?;

    let (active_record, active) = match active.or_else(|| prepared.take()) {
        Some(active) => active,
        None => {
            let record = SlotRecord {
                generation: journal.allocate_generation(),
                tainted: false,
            };
            let authority = kind.create(&generation_dir(dir, record.generation))?;
            tracing::info!(kind = K::NAME, "Created a new active authority");
            (record, authority)
        }
    };
    journal.active = Some(active_record);
    journal.prepared = prepared.as_ref().map(|(record, _)| *record);
    journal.old = old.as_ref().map(|(record, _)| *record);
    journal
        .save(dir)
        .with_context(|| format!("failed to write the journal in {}", dir.display()))?;
    remove_unnamed(dir, &journal);

    let prepared = prepared.map(|(_, authority)| Arc::new(authority));
    Ok(Slots {
        journal,
        active: Arc::new(active),
        // A restored prepared authority was published no later than its creation.
        prepared_since: prepared.as_ref().map(|prepared| K::validity(prepared).0),
        prepared,
        old: old.map(|(_, authority)| Arc::new(authority)),
    })
}

/// Returns true when `dir` contains an authority directory.
fn has_generations(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            name.to_str()
                .is_some_and(|name| name.parse::<u64>().is_ok())
        })
    })
}

/// Returns true when `authority` has more than a twelfth of its lifetime left at `now`.
fn has_margin<K: AuthorityKind>(authority: &K::Authority, now: SystemTime) -> bool {
    let (not_before, not_after) = K::validity(authority);
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_after
        .duration_since(now)
        .is_ok_and(|left| left > lifetime / 12)
}

/// Deletes authority directories the journal does not name: expired, replaced, or left by a
/// crash between creating an authority and recording it.
fn remove_unnamed(dir: &Path, journal: &Journal) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(generation) = name.to_str().and_then(|name| name.parse::<u64>().ok()) else {
            continue;
        };
        if !journal.generations().any(|named| named == generation)
            && let Err(error) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(path = %entry.path().display(), error = %error, "Failed to delete an authority");
        }
    }
}

fn info<K: AuthorityKind>(authority: &K::Authority, record: Option<SlotRecord>) -> AuthorityInfo {
    AuthorityInfo {
        authority_id: K::authority_id(authority),
        expires_at: K::validity(authority).1,
        tainted: record.is_some_and(|record| record.tainted),
    }
}

fn rfc3339(time: SystemTime) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(time)
}
