//! The entries generation in the `entries_state` table: a datastore-wide counter that every write
//! of registration entries bumps in its own transaction.

use std::time::{SystemTime, UNIX_EPOCH};

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
/// The new generation is at least the current time in microseconds. A generation that was reset
/// (a recreated row, a database restored from a backup) therefore jumps past every value a server
/// may still have cached at its next write, instead of counting up to one of them again.
///
/// A missing `entries_state` row is an error rather than a bump of nothing, because caches would
/// then keep entries that this write changed.
pub(super) async fn bump_entries_generation(
    connection: &mut AnyConnection,
) -> Result<(), DatastoreError> {
    let updated = sqlx::query(
        "UPDATE entries_state SET generation = \
         CASE WHEN generation + 1 > $1 THEN generation + 1 ELSE $1 END WHERE id = 1",
    )
    .bind(unix_now_micros())
    .execute(connection)
    .await?
    .rows_affected();
    if updated != 1 {
        return Err(missing_row());
    }
    Ok(())
}

/// Returns the current Unix time in microseconds, or 0 for a clock before 1970.
fn unix_now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}

fn missing_row() -> DatastoreError {
    DatastoreError::InvalidRecord {
        what: "entries generation".to_owned(),
        reason: "the entries_state row is missing: restore it with \
                 INSERT INTO entries_state (id, generation) VALUES (1, 0)"
            .to_owned(),
    }
}
