//! The datastore: registration entries, attested agents, join tokens and the trust bundle, kept in
//! SQLite or PostgreSQL through one schema.
//!
//! Both databases run the same SQL through sqlx's `Any` driver, so they behave alike: uniqueness is
//! enforced by unique constraints (never by a read before a write), and every change of a record is
//! a single statement or one transaction.

mod agents;
mod bundle;
mod bundle_lifecycle;
mod connect;
mod entries;
mod entries_generation;
mod entry_apply;
mod entry_plan;
mod error;
mod join_tokens;
mod rows;

use sqlx::AnyPool;

pub use bundle::{BundleRecord, JwtAuthorityRecord};
pub use entries_generation::EntriesGeneration;
pub use entry_apply::{ApplyEntriesError, ApplyMode};
pub use entry_plan::{EntryPlan, EntryPlanError, StoredEntry, plan_entries};
pub use error::DatastoreError;

/// A handle on the datastore. Clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Datastore {
    pool: AnyPool,
}

impl Datastore {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// `url` is `sqlite:///absolute/path/datastore.sqlite3` or `postgres://user@host:port/db`. A
    /// missing SQLite file is created with mode 0600 (and its missing directories with mode 0700),
    /// and SQLite runs in WAL mode with `synchronous=FULL` and a busy timeout, so concurrent
    /// writers wait for each other instead of failing.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::InvalidUrl`] for another scheme or a SQLite URL without a file,
    /// [`DatastoreError::CreateFile`] when the SQLite file cannot be created,
    /// [`DatastoreError::Database`] when the database cannot be reached and
    /// [`DatastoreError::Migration`] when the schema cannot be updated.
    pub async fn open(url: &str) -> Result<Self, DatastoreError> {
        let pool = connect::open_pool(url).await?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(DatastoreError::Migration)?;
        Ok(Self { pool })
    }

    /// Closes every connection of the pool, waiting for queries in progress.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests;
