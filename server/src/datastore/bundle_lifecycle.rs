//! Changes of bundle authorities after they were published: tainting, removal by an operator and
//! removal once expired.

use std::time::SystemTime;

use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use super::rows::column;
use super::{Datastore, DatastoreError};

impl Datastore {
    /// Marks the X.509 authority `der` as tainted. Returns whether the bundle changed (false when
    /// the authority is absent or tainted already).
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when a query fails.
    pub async fn taint_bundle_authority(&self, der: &[u8]) -> Result<bool, DatastoreError> {
        let query = sqlx::query(
            "UPDATE bundle_authorities SET tainted = 1 WHERE sha256 = $1 AND tainted = 0",
        )
        .bind(certificate_digest(der));
        self.change_bundle(query).await
    }

    /// Marks the JWT authority `key_id` as tainted. Returns whether the bundle changed.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when a query fails.
    pub async fn taint_jwt_authority(&self, key_id: &str) -> Result<bool, DatastoreError> {
        let query = sqlx::query(
            "UPDATE bundle_jwt_authorities SET tainted = 1 WHERE key_id = $1 AND tainted = 0",
        )
        .bind(key_id.to_owned());
        self.change_bundle(query).await
    }

    /// Removes the X.509 authority `der` from the bundle. Returns whether the bundle changed.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when a query fails.
    pub async fn remove_bundle_authority(&self, der: &[u8]) -> Result<bool, DatastoreError> {
        let query = sqlx::query("DELETE FROM bundle_authorities WHERE sha256 = $1")
            .bind(certificate_digest(der));
        self.change_bundle(query).await
    }

    /// Removes the JWT authority `key_id` from the bundle. Returns whether the bundle changed.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when a query fails.
    pub async fn remove_jwt_authority(&self, key_id: &str) -> Result<bool, DatastoreError> {
        let query = sqlx::query("DELETE FROM bundle_jwt_authorities WHERE key_id = $1")
            .bind(key_id.to_owned());
        self.change_bundle(query).await
    }

    /// Removes every authority that expired before `now`: nothing it signed can still be valid,
    /// because no SVID outlives the authority that signed it. Returns whether the bundle changed.
    ///
    /// An X.509 authority whose certificate cannot be parsed is kept, so that a damaged row is
    /// reported by the readers rather than silently dropped.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when a query fails.
    pub async fn prune_bundle(&self, now: SystemTime) -> Result<bool, DatastoreError> {
        let now_seconds = crate::api::unix_seconds(now);
        let mut transaction = self.pool.begin().await?;
        let mut removed = sqlx::query("DELETE FROM bundle_jwt_authorities WHERE expires_at < $1")
            .bind(now_seconds)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        for digest in expired_certificates(&mut transaction, now).await? {
            removed += sqlx::query("DELETE FROM bundle_authorities WHERE sha256 = $1")
                .bind(digest)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
        }
        if removed == 0 {
            transaction.rollback().await?;
            return Ok(false);
        }
        bump_sequence_number(&mut transaction).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Runs `query` and, when it changed a row, bumps the bundle's sequence number in the same
    /// transaction.
    async fn change_bundle(
        &self,
        query: Query<'_, sqlx::Any, AnyArguments>,
    ) -> Result<bool, DatastoreError> {
        let mut transaction = self.pool.begin().await?;
        // The bump comes first to take the write lock, as in the appends.
        bump_sequence_number(&mut transaction).await?;
        if query.execute(&mut *transaction).await?.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(false);
        }
        transaction.commit().await?;
        Ok(true)
    }
}

async fn bump_sequence_number(connection: &mut AnyConnection) -> Result<(), DatastoreError> {
    sqlx::query("UPDATE bundle_state SET sequence_number = sequence_number + 1 WHERE id = 1")
        .execute(connection)
        .await?;
    Ok(())
}

/// Returns the digests of the stored X.509 authorities whose notAfter is before `now`.
async fn expired_certificates(
    connection: &mut AnyConnection,
    now: SystemTime,
) -> Result<Vec<String>, DatastoreError> {
    let rows = sqlx::query("SELECT sha256, der_hex FROM bundle_authorities")
        .fetch_all(connection)
        .await?;
    let mut expired = Vec::new();
    for row in &rows {
        let der_hex: String = column(row, "der_hex")?;
        let Some(not_after) = hex::decode(der_hex).ok().and_then(|der| not_after(&der)) else {
            continue;
        };
        if not_after < now {
            expired.push(column(row, "sha256")?);
        }
    }
    Ok(expired)
}

fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.to_datetime().into())
}

/// Returns the key of an X.509 authority row: SHA-256 of its DER, in hex.
pub(super) fn certificate_digest(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}
