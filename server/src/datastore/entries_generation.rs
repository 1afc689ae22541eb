//! The entries generation in the `entries_state` table: a datastore-wide counter that every write
//! of registration entries bumps in its own transaction.

use sqlx::AnyConnection;

use super::rows::column;
use super::{Datastore, DatastoreError};

/// The value of the entries generation at one point in time.
///
/// Two reads return the same generation only if no write of registration entries committed in
/// between, on this server or on any other server sharing the database.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct EntriesGeneration(i64);

impl EntriesGeneration {
    /// Builds a generation from its number, for tests of code that caches by generation.
    #[cfg(test)]
    pub(crate) fn from_number(number: i64) -> Self {
        Self(number)
    }
}

impl Datastore {
    /// Returns the current entries generation.
    ///
    /// Read it before reading the entries: the entries then contain at least every write that the
    /// generation counts.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails, [`DatastoreError::InvalidRecord`] when
    /// the `entries_state` row is missing.
    pub async fn entries_generation(&self) -> Result<EntriesGeneration, DatastoreError> {
        let row = sqlx::query("SELECT generation FROM entries_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(missing_row)?;
        Ok(EntriesGeneration(column(&row, "generation")?))
    }
}

/// Bumps the entries generation. Call it inside the transaction that writes the entries, so that
/// the write and the bump commit together.
///
/// A missing `entries_state` row is an error rather than a bump of nothing, because caches would
/// then keep entries that this write changed.
pub(super) async fn bump_entries_generation(
    connection: &mut AnyConnection,
) -> Result<(), DatastoreError> {
    let updated = sqlx::query("UPDATE entries_state SET generation = generation + 1 WHERE id = 1")
        .execute(connection)
        .await?
        .rows_affected();
    if updated != 1 {
        return Err(missing_row());
    }
    Ok(())
}

fn missing_row() -> DatastoreError {
    DatastoreError::InvalidRecord {
        what: "entries generation".to_owned(),
        reason: "the entries_state row is missing: restore it with \
                 INSERT INTO entries_state (id, generation) VALUES (1, 0)"
            .to_owned(),
    }
}
