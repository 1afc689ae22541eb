//! The trust bundle of the server's own trust domain: X.509 authorities and a sequence number.

use std::fmt;

use sha2::{Digest, Sha256};

use super::rows::{self, column};
use super::{Datastore, DatastoreError};

/// The X.509 authorities of the server's trust domain, in the order they were added.
#[derive(Clone, Default, Eq, PartialEq)]
pub struct BundleRecord {
    /// DER certificates of the authorities.
    pub authorities: Vec<Vec<u8>>,
    /// Number bumped on every change of the authorities, 0 while there are none.
    pub sequence_number: u64,
}

impl Datastore {
    /// Adds `der` to the bundle's authorities and returns the bundle.
    ///
    /// Adding a certificate that is already present changes nothing, not even the sequence
    /// number, so servers may add their CA certificates at every start.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::InvalidArgument`] when `der` is not one DER X.509 certificate,
    /// [`DatastoreError::Database`] when a query fails.
    pub async fn append_bundle_authority(
        &self,
        der: &[u8],
    ) -> Result<BundleRecord, DatastoreError> {
        check_certificate(der)?;

        // Bumping the sequence number first takes the write lock (the row lock on PostgreSQL), so
        // concurrent appends queue up, and the new number gives the certificate its position.
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE bundle_state SET sequence_number = sequence_number + 1 WHERE id = 1 \
             RETURNING sequence_number",
        )
        .fetch_one(&mut *transaction)
        .await?;
        let position: i64 = column(&row, "sequence_number")?;
        let inserted = sqlx::query(
            "INSERT INTO bundle_authorities (sha256, der_hex, position) VALUES ($1, $2, $3) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(hex::encode(Sha256::digest(der)))
        .bind(hex::encode(der))
        .bind(position)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            transaction.rollback().await?;
        } else {
            transaction.commit().await?;
        }

        self.bundle().await
    }

    /// Returns the bundle's authorities and sequence number, read in one statement so that both
    /// come from the same state.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails, [`DatastoreError::InvalidRecord`] when a
    /// stored authority is not hex.
    pub async fn bundle(&self) -> Result<BundleRecord, DatastoreError> {
        let rows = sqlx::query(
            "SELECT s.sequence_number, a.der_hex FROM bundle_state s \
             LEFT JOIN bundle_authorities a ON TRUE WHERE s.id = 1 ORDER BY a.position",
        )
        .fetch_all(&self.pool)
        .await?;

        let mut bundle = BundleRecord::default();
        for row in &rows {
            let sequence_number: i64 = column(row, "sequence_number")?;
            bundle.sequence_number = u64::try_from(sequence_number).unwrap_or(0);
            if let Some(der_hex) = column::<Option<String>>(row, "der_hex")? {
                let der = hex::decode(der_hex)
                    .map_err(|e| rows::invalid("bundle authority", e.to_string()))?;
                bundle.authorities.push(der);
            }
        }
        Ok(bundle)
    }
}

impl fmt::Debug for BundleRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleRecord")
            .field("authorities", &self.authorities.len())
            .field("sequence_number", &self.sequence_number)
            .finish()
    }
}

/// Checks that `der` is exactly one X.509 certificate, so that the bundle never publishes bytes a
/// relying party cannot parse.
fn check_certificate(der: &[u8]) -> Result<(), DatastoreError> {
    let invalid = |reason: String| DatastoreError::InvalidArgument {
        what: "bundle authority".to_owned(),
        reason,
    };
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err(invalid(
            "trailing bytes after the DER certificate".to_owned(),
        )),
        Err(e) => Err(invalid(format!("not a DER X.509 certificate: {e}"))),
    }
}
