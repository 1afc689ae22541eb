//! Attested agents in the `attested_agents` table.

use spiffe::SpiffeId;
use sqlx::any::AnyRow;

use super::rows::{self, column, flag, json_list};
use super::{Datastore, DatastoreError};
use crate::model::AttestedAgent;

/// Expands to the columns of an agent, as read by `agent_from_row`. It is a macro so that queries
/// stay string literals.
macro_rules! columns {
    () => {
        "spiffe_id, attestation_type, serial_number, expires_at, selectors, banned, can_reattest, \
         x509_authority_id"
    };
}

impl Datastore {
    /// Stores a newly attested agent.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::AlreadyExists`] when an agent with the same SPIFFE ID exists,
    /// [`DatastoreError::Database`] on other failures.
    pub async fn create_agent(&self, agent: &AttestedAgent) -> Result<(), DatastoreError> {
        let sql = concat!(
            "INSERT INTO attested_agents (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        sqlx::query(sql)
            .bind(agent.spiffe_id.to_string())
            .bind(agent.attestation_type.clone())
            .bind(agent.serial_number.clone())
            .bind(agent.expires_at)
            .bind(json_list(&agent.selectors))
            .bind(flag(agent.banned))
            .bind(flag(agent.can_reattest))
            .bind(agent.x509_authority_id.clone())
            .execute(&self.pool)
            .await
            .map_err(|e| DatastoreError::from_write(e, || format!("agent {}", agent.spiffe_id)))?;
        Ok(())
    }

    /// Replaces every field of the agent with the SPIFFE ID `agent.spiffe_id`.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::NotFound`] when no agent has the SPIFFE ID, [`DatastoreError::Database`]
    /// on other failures.
    pub async fn update_agent(&self, agent: &AttestedAgent) -> Result<(), DatastoreError> {
        let result = sqlx::query(
            "UPDATE attested_agents SET attestation_type = $2, serial_number = $3, \
             expires_at = $4, selectors = $5, banned = $6, can_reattest = $7, \
             x509_authority_id = $8 WHERE spiffe_id = $1",
        )
        .bind(agent.spiffe_id.to_string())
        .bind(agent.attestation_type.clone())
        .bind(agent.serial_number.clone())
        .bind(agent.expires_at)
        .bind(json_list(&agent.selectors))
        .bind(flag(agent.banned))
        .bind(flag(agent.can_reattest))
        .bind(agent.x509_authority_id.clone())
        .execute(&self.pool)
        .await?;
        ensure_found(result.rows_affected(), &agent.spiffe_id)
    }

    /// Returns the SPIFFE IDs of the agents whose X509-SVID, unexpired at `now` (Unix seconds), was
    /// signed by the CA `authority_id`.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails.
    pub async fn agents_signed_by(
        &self,
        authority_id: &str,
        now: i64,
    ) -> Result<Vec<String>, DatastoreError> {
        let rows = sqlx::query(
            "SELECT spiffe_id FROM attested_agents \
             WHERE x509_authority_id = $1 AND expires_at > $2 ORDER BY spiffe_id",
        )
        .bind(authority_id.to_owned())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| column(row, "spiffe_id")).collect()
    }

    /// Returns the agent with the SPIFFE ID `id`, if any.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails, [`DatastoreError::InvalidRecord`] when the
    /// stored row is not a valid agent.
    pub async fn fetch_agent(
        &self,
        id: &SpiffeId,
    ) -> Result<Option<AttestedAgent>, DatastoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM attested_agents WHERE spiffe_id = $1"
        );
        let row = sqlx::query(sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Returns every agent, ordered by SPIFFE ID.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails, [`DatastoreError::InvalidRecord`] when a
    /// stored row is not a valid agent.
    pub async fn list_agents(&self) -> Result<Vec<AttestedAgent>, DatastoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM attested_agents ORDER BY spiffe_id"
        );
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(agent_from_row).collect()
    }

    /// Returns the number of agents.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails.
    pub async fn count_agents(&self) -> Result<u64, DatastoreError> {
        self.count("SELECT COUNT(*) AS n FROM attested_agents")
            .await
    }

    /// Deletes the agent with the SPIFFE ID `id` (SPIRE calls this eviction), after which the agent
    /// may attest again.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::NotFound`] when no agent has the SPIFFE ID, [`DatastoreError::Database`]
    /// on other failures.
    pub async fn delete_agent(&self, id: &SpiffeId) -> Result<(), DatastoreError> {
        let result = sqlx::query("DELETE FROM attested_agents WHERE spiffe_id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        ensure_found(result.rows_affected(), id)
    }

    /// Marks the agent with the SPIFFE ID `id` as banned, so it can neither renew nor attest again
    /// until an operator deletes it.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::NotFound`] when no agent has the SPIFFE ID, [`DatastoreError::Database`]
    /// on other failures.
    pub async fn ban_agent(&self, id: &SpiffeId) -> Result<(), DatastoreError> {
        let result = sqlx::query("UPDATE attested_agents SET banned = 1 WHERE spiffe_id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        ensure_found(result.rows_affected(), id)
    }
}

fn ensure_found(rows_affected: u64, id: &SpiffeId) -> Result<(), DatastoreError> {
    if rows_affected == 0 {
        return Err(DatastoreError::NotFound {
            what: format!("agent {id}"),
        });
    }
    Ok(())
}

fn agent_from_row(row: &AnyRow) -> Result<AttestedAgent, DatastoreError> {
    let id: String = column(row, "spiffe_id")?;
    let what = format!("agent {id}");
    Ok(AttestedAgent {
        spiffe_id: rows::parse_spiffe_id(&id, &what)?,
        attestation_type: column(row, "attestation_type")?,
        serial_number: column(row, "serial_number")?,
        expires_at: column(row, "expires_at")?,
        selectors: rows::parse_selectors(&column::<String>(row, "selectors")?, &what)?,
        banned: column::<i64>(row, "banned")? != 0,
        can_reattest: column::<i64>(row, "can_reattest")? != 0,
        x509_authority_id: column(row, "x509_authority_id")?,
    })
}
