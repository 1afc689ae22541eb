//! Join tokens in the `join_tokens` table, stored as SHA-256 digests.

use sha2::{Digest, Sha256};

use super::rows::column;
use super::{Datastore, DatastoreError};
use crate::model::{JoinToken, unix_now};

impl Datastore {
    /// Stores a new join token.
    ///
    /// Only the SHA-256 digest of the token is stored, so the database never contains a usable token.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::AlreadyExists`] when the same token exists (the message does not contain
    /// it), [`DatastoreError::Database`] on other failures.
    pub async fn create_join_token(&self, token: &JoinToken) -> Result<(), DatastoreError> {
        sqlx::query("INSERT INTO join_tokens (token_sha256, expires_at) VALUES ($1, $2)")
            .bind(token_digest(&token.value))
            .bind(token.expires_at)
            .execute(&self.pool)
            .await
            .map_err(|e| DatastoreError::from_write(e, || "join token".to_owned()))?;
        Ok(())
    }

    /// Deletes the join token `value` and returns it, so that each token is used at most once.
    ///
    /// The lookup and the delete are one `DELETE … RETURNING` statement, so of several concurrent
    /// callers (on one server or on several servers sharing PostgreSQL) exactly one receives the
    /// token. Returns `Ok(None)` when the token does not exist or was already used.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::JoinTokenExpired`] when the token existed but expired (it is deleted all
    /// the same), [`DatastoreError::Database`] when the query fails.
    pub async fn consume_join_token(
        &self,
        value: &str,
    ) -> Result<Option<JoinToken>, DatastoreError> {
        let row =
            sqlx::query("DELETE FROM join_tokens WHERE token_sha256 = $1 RETURNING expires_at")
                .bind(token_digest(value))
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            return Ok(None);
        };

        let token = JoinToken {
            value: value.to_owned(),
            expires_at: column(&row, "expires_at")?,
        };
        if token.is_expired_at(unix_now()) {
            return Err(DatastoreError::JoinTokenExpired {
                expired_at: token.expires_at,
            });
        }
        Ok(Some(token))
    }
}

fn token_digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}
