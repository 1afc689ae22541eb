//! `entry apply` as one transaction: read the stored entries, plan the changes, write them.

use sqlx::AnyConnection;

use super::entries::{
    delete_entry_at_revision, insert_entry, list_stored_entries, update_entry_at_revision,
};
use super::entries_generation::bump_entries_generation;
use super::entry_plan::{EntryPlan, EntryPlanError, plan_entries};
use super::{Datastore, DatastoreError};
use crate::model::{EntryOwner, RegistrationEntry};

/// Whether [`Datastore::apply_entries`] writes its plan.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ApplyMode {
    /// Computes the plan and changes nothing.
    DryRun,
    /// Computes the plan and writes it.
    Write,
}

/// Error of [`Datastore::apply_entries`]. Whatever the error, the datastore is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyEntriesError {
    /// The request cannot be planned: it lists an entry twice, or touches another owner's entry.
    #[error(transparent)]
    Plan(#[from] EntryPlanError),
    /// Another writer changed or deleted a planned entry between the read and the write.
    #[error("registration entry {id} changed while the request was applied: apply it again")]
    ChangedConcurrently {
        /// ID of the entry.
        id: String,
    },
    /// The datastore rejected or failed a query.
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
}

impl Datastore {
    /// Makes the entries of `owner` equal to `requested` in one transaction and returns the plan
    /// as applied: created entries with their new IDs and updated ones with their new revision
    /// numbers. With `prune`, the owner's entries that `requested` does not list are deleted.
    /// With [`ApplyMode::DryRun`], the plan is computed the same way and nothing is written.
    ///
    /// Updates and deletions only succeed on the revision that was read, so a concurrent change
    /// of a planned entry rolls the whole transaction back instead of being overwritten.
    ///
    /// # Errors
    ///
    /// [`ApplyEntriesError::Plan`] when `requested` lists an entry twice or matches an entry of
    /// another owner, [`ApplyEntriesError::ChangedConcurrently`] when a planned entry changed
    /// meanwhile, and [`ApplyEntriesError::Datastore`] when a query fails, for example because a
    /// concurrent writer created a matching entry.
    pub async fn apply_entries(
        &self,
        owner: &EntryOwner,
        requested: Vec<RegistrationEntry>,
        prune: bool,
        mode: ApplyMode,
    ) -> Result<EntryPlan, ApplyEntriesError> {
        // NOTE: on SQLite the transaction starts as a reader. When another connection commits a
        // write after the read, this one fails with SQLITE_BUSY (an internal error). Nothing is
        // changed then, and applying again succeeds.
        let mut transaction = self.pool.begin().await.map_err(DatastoreError::from)?;
        let stored = list_stored_entries(&mut transaction).await?;
        let plan = plan_entries(owner, requested, stored, prune)?;
        if mode == ApplyMode::DryRun || !plan.has_changes() {
            transaction.rollback().await.map_err(DatastoreError::from)?;
            return Ok(plan);
        }

        // Dropping the transaction on an error rolls it back.
        let plan = write_plan(&mut transaction, owner, plan).await?;
        transaction.commit().await.map_err(DatastoreError::from)?;
        Ok(plan)
    }
}

/// Writes every change of `plan`, bumps the entries generation and returns the plan with the
/// entries as stored.
async fn write_plan(
    connection: &mut AnyConnection,
    owner: &EntryOwner,
    plan: EntryPlan,
) -> Result<EntryPlan, ApplyEntriesError> {
    for entry in &plan.deleted {
        if !delete_entry_at_revision(connection, entry).await? {
            return Err(changed(entry));
        }
    }
    let mut updated = Vec::with_capacity(plan.updated.len());
    for entry in plan.updated {
        let id = entry.id.clone();
        let stored = update_entry_at_revision(connection, entry).await?;
        updated.push(stored.ok_or(ApplyEntriesError::ChangedConcurrently { id })?);
    }
    let mut created = Vec::with_capacity(plan.created.len());
    for entry in plan.created {
        created.push(insert_entry(&mut *connection, entry, owner.as_str()).await?);
    }
    bump_entries_generation(connection).await?;
    Ok(EntryPlan {
        created,
        updated,
        ..plan
    })
}

fn changed(entry: &RegistrationEntry) -> ApplyEntriesError {
    ApplyEntriesError::ChangedConcurrently {
        id: entry.id.clone(),
    }
}
