//! Registration entries in the `registration_entries` table.

use sha2::{Digest, Sha256};
use signet_core::ids;
use signet_core::template::SpiffeIdTemplate;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Executor};

use super::entries_generation::bump_entries_generation;
use super::entry_plan::StoredEntry;
use super::rows::{self, column, flag, json_list};
use super::{Datastore, DatastoreError};
use crate::model::{RegistrationEntry, unix_now};

/// Expands to the columns of an entry, as read by `entry_from_row`. Column lists are macros so
/// that every query stays a string literal, which sqlx accepts as free of injected text.
macro_rules! columns {
    () => {
        "id, spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl, federates_with, admin, \
         downstream, expires_at, dns_names, revision_number, store_svid, hint, created_at"
    };
}

/// Expands to the columns a write sets from the entry's content, bound as `$1`..`$13` by
/// `bind_content`.
macro_rules! content_columns {
    () => {
        "spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl, federates_with, admin, \
         downstream, expires_at, dns_names, store_svid, hint, identity_key"
    };
}

impl Datastore {
    /// Stores a new entry and returns it as stored.
    ///
    /// An empty ID is replaced by a random UUID. `created_at` is set to now and `revision_number`
    /// to 0. The entries generation is bumped in the same transaction.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::AlreadyExists`] when an entry has the same ID, or the same SPIFFE ID,
    /// parent ID and set of selectors, and [`DatastoreError::Database`] on other failures.
    pub async fn create_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, DatastoreError> {
        // Dropping the transaction on an error rolls it back.
        let mut transaction = self.pool.begin().await?;
        let entry = insert_entry(&mut *transaction, entry, "").await?;
        bump_entries_generation(&mut transaction).await?;
        transaction.commit().await?;
        Ok(entry)
    }

    /// Replaces every field of the entry with the ID `entry.id`, except `created_at`, and bumps
    /// its revision number and the entries generation. Returns the entry as stored.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::NotFound`] when no entry has the ID, [`DatastoreError::AlreadyExists`]
    /// when another entry has the same SPIFFE ID, parent ID and set of selectors, and
    /// [`DatastoreError::Database`] on other failures.
    pub async fn update_entry(
        &self,
        mut entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, DatastoreError> {
        let sql = "UPDATE registration_entries SET spiffe_id = $1, parent_id = $2, selectors = $3, \
             x509_svid_ttl = $4, jwt_svid_ttl = $5, federates_with = $6, admin = $7, \
             downstream = $8, expires_at = $9, dns_names = $10, store_svid = $11, hint = $12, \
             identity_key = $13, revision_number = revision_number + 1 \
             WHERE id = $14 \
             RETURNING revision_number, created_at";
        let mut transaction = self.pool.begin().await?;
        let row = bind_content(sqlx::query(sql), &entry)
            .bind(entry.id.clone())
            .fetch_optional(&mut *transaction)
            .await
            .map_err(|e| write_error(e, &entry))?;
        let row = row.ok_or_else(|| not_found(&entry.id))?;
        bump_entries_generation(&mut transaction).await?;
        transaction.commit().await?;

        entry.revision_number = column(&row, "revision_number")?;
        entry.created_at = column(&row, "created_at")?;
        Ok(entry)
    }

    /// Deletes the entry with the ID `id`, bumps the entries generation and returns the entry.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::NotFound`] when no entry has the ID, [`DatastoreError::Database`] on
    /// other failures.
    pub async fn delete_entry(&self, id: &str) -> Result<RegistrationEntry, DatastoreError> {
        let sql = concat!(
            "DELETE FROM registration_entries WHERE id = $1 RETURNING ",
            columns!()
        );
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?;
        let entry = entry_from_row(&row.ok_or_else(|| not_found(id))?)?;
        bump_entries_generation(&mut transaction).await?;
        transaction.commit().await?;
        Ok(entry)
    }

    /// Returns the entry with the ID `id`, if any.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails, [`DatastoreError::InvalidRecord`] when the
    /// stored row is not a valid entry.
    pub async fn fetch_entry(&self, id: &str) -> Result<Option<RegistrationEntry>, DatastoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM registration_entries WHERE id = $1"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// Returns every entry, oldest first (ordered by `created_at`, then ID).
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails, [`DatastoreError::InvalidRecord`] when a
    /// stored row is not a valid entry.
    pub async fn list_entries(&self) -> Result<Vec<RegistrationEntry>, DatastoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM registration_entries ORDER BY created_at, id"
        );
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Returns the number of entries.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails.
    pub async fn count_entries(&self) -> Result<u64, DatastoreError> {
        self.count("SELECT COUNT(*) AS n FROM registration_entries")
            .await
    }

    /// Runs `sql`, a `SELECT COUNT(*) AS n` query, and returns the count.
    pub(super) async fn count(&self, sql: &'static str) -> Result<u64, DatastoreError> {
        let row = sqlx::query(sql).fetch_one(&self.pool).await?;
        let count: i64 = column(&row, "n")?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// Stores a new entry of `owner` (empty for none) and returns it as stored.
///
/// An empty ID is replaced by a random UUID. `created_at` is set to now and `revision_number`
/// to 0.
pub(super) async fn insert_entry<'c, E>(
    executor: E,
    mut entry: RegistrationEntry,
    owner: &str,
) -> Result<RegistrationEntry, DatastoreError>
where
    E: Executor<'c, Database = Any>,
{
    if entry.id.is_empty() {
        entry.id = uuid::Uuid::new_v4().to_string();
    }
    entry.created_at = unix_now();
    entry.revision_number = 0;

    let sql = concat!(
        "INSERT INTO registration_entries (",
        content_columns!(),
        ", id, revision_number, created_at, owner) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    );
    bind_content(sqlx::query(sql), &entry)
        .bind(entry.id.clone())
        .bind(entry.revision_number)
        .bind(entry.created_at)
        .bind(owner.to_owned())
        .execute(executor)
        .await
        .map_err(|e| write_error(e, &entry))?;
    Ok(entry)
}

/// Replaces the content of the entry with the ID `entry.id` if its revision number is still
/// `entry.revision_number`, and bumps the revision number. Returns the entry as stored, or `None`
/// when the entry was changed or deleted since it was read.
pub(super) async fn update_entry_at_revision(
    connection: &mut AnyConnection,
    mut entry: RegistrationEntry,
) -> Result<Option<RegistrationEntry>, DatastoreError> {
    let sql = "UPDATE registration_entries SET spiffe_id = $1, parent_id = $2, selectors = $3, \
         x509_svid_ttl = $4, jwt_svid_ttl = $5, federates_with = $6, admin = $7, \
         downstream = $8, expires_at = $9, dns_names = $10, store_svid = $11, hint = $12, \
         identity_key = $13, revision_number = revision_number + 1 \
         WHERE id = $14 AND revision_number = $15 \
         RETURNING revision_number";
    let row = bind_content(sqlx::query(sql), &entry)
        .bind(entry.id.clone())
        .bind(entry.revision_number)
        .fetch_optional(connection)
        .await
        .map_err(|e| write_error(e, &entry))?;
    let Some(row) = row else {
        return Ok(None);
    };
    entry.revision_number = column(&row, "revision_number")?;
    Ok(Some(entry))
}

/// Deletes the entry with the ID `entry.id` if its revision number is still
/// `entry.revision_number`. Returns whether it did.
pub(super) async fn delete_entry_at_revision(
    connection: &mut AnyConnection,
    entry: &RegistrationEntry,
) -> Result<bool, DatastoreError> {
    let deleted =
        sqlx::query("DELETE FROM registration_entries WHERE id = $1 AND revision_number = $2")
            .bind(entry.id.clone())
            .bind(entry.revision_number)
            .execute(connection)
            .await?
            .rows_affected();
    Ok(deleted == 1)
}

/// Returns every entry with its owner label.
pub(super) async fn list_stored_entries(
    connection: &mut AnyConnection,
) -> Result<Vec<StoredEntry>, DatastoreError> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        ", owner FROM registration_entries ORDER BY created_at, id"
    );
    let rows = sqlx::query(sql).fetch_all(connection).await?;
    rows.iter()
        .map(|row| {
            Ok(StoredEntry {
                entry: entry_from_row(row)?,
                owner: column(row, "owner")?,
            })
        })
        .collect()
}

/// Binds the columns of `content_columns!` as `$1`..`$13`.
fn bind_content<'q>(
    query: Query<'q, Any, AnyArguments>,
    entry: &RegistrationEntry,
) -> Query<'q, Any, AnyArguments> {
    query
        .bind(entry.spiffe_id.to_string())
        .bind(entry.parent_id.to_string())
        .bind(json_list(&entry.selectors))
        .bind(i64::from(entry.x509_svid_ttl))
        .bind(i64::from(entry.jwt_svid_ttl))
        .bind(json_list(&entry.federates_with))
        .bind(flag(entry.admin))
        .bind(flag(entry.downstream))
        .bind(entry.expires_at)
        .bind(json_list(&entry.dns_names))
        .bind(flag(entry.store_svid))
        .bind(entry.hint.clone())
        .bind(identity_key(entry))
}

fn entry_from_row(row: &AnyRow) -> Result<RegistrationEntry, DatastoreError> {
    let id: String = column(row, "id")?;
    let what = format!("registration entry {id}");
    let text = |name: &str| column::<String>(row, name);
    let federates_with = rows::parse_json_list(&text("federates_with")?, &what)?
        .iter()
        .map(|name| ids::parse_trust_domain(name).map_err(|e| rows::invalid(&what, e.to_string())))
        .collect::<Result<_, _>>()?;

    Ok(RegistrationEntry {
        spiffe_id: SpiffeIdTemplate::parse(&text("spiffe_id")?)
            .map_err(|e| rows::invalid(&what, e.to_string()))?,
        parent_id: rows::parse_spiffe_id(&text("parent_id")?, &what)?,
        selectors: rows::parse_selectors(&text("selectors")?, &what)?,
        x509_svid_ttl: rows::parse_ttl(column(row, "x509_svid_ttl")?, &what)?,
        jwt_svid_ttl: rows::parse_ttl(column(row, "jwt_svid_ttl")?, &what)?,
        federates_with,
        admin: column::<i64>(row, "admin")? != 0,
        downstream: column::<i64>(row, "downstream")? != 0,
        expires_at: column(row, "expires_at")?,
        dns_names: rows::parse_json_list(&text("dns_names")?, &what)?,
        revision_number: column(row, "revision_number")?,
        store_svid: column::<i64>(row, "store_svid")? != 0,
        hint: text("hint")?,
        created_at: column(row, "created_at")?,
        id,
    })
}

/// Returns the hex SHA-256 of the SPIFFE ID, the parent ID and the sorted set of selectors, the
/// key that makes two entries duplicates of each other. Hashing keeps the indexed value short
/// however many selectors an entry has, and the JSON encoding keeps the parts apart.
pub(super) fn identity_key(entry: &RegistrationEntry) -> String {
    let mut selectors: Vec<String> = entry.selectors.iter().map(ToString::to_string).collect();
    selectors.sort();
    selectors.dedup();
    let parts = serde_json::json!([
        entry.spiffe_id.to_string(),
        entry.parent_id.to_string(),
        selectors
    ]);
    hex::encode(Sha256::digest(parts.to_string().as_bytes()))
}

/// Maps a failed insert or update, naming the constraint that a conflict violated.
fn write_error(error: sqlx::Error, entry: &RegistrationEntry) -> DatastoreError {
    let what = if violates_identity_key(&error) {
        format!(
            "registration entry with SPIFFE ID {}, parent ID {} and the same selectors",
            entry.spiffe_id, entry.parent_id
        )
    } else {
        format!("registration entry {}", entry.id)
    };
    DatastoreError::from_write(error, || what)
}

/// Returns whether `error` is a violation of the `identity_key` constraint. PostgreSQL reports the
/// constraint by name, but SQLite only names the column in its message.
fn violates_identity_key(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(error) = error else {
        return false;
    };
    match error.constraint() {
        Some(constraint) => constraint.contains("identity_key"),
        None => error.message().contains("identity_key"),
    }
}

fn not_found(id: &str) -> DatastoreError {
    DatastoreError::NotFound {
        what: format!("registration entry {id}"),
    }
}
