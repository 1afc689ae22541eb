//! The trust bundle of the server's own trust domain: X.509 authorities, JWT authorities and a
//! sequence number.

use std::fmt;

use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::rows::{self, column};
use super::{Datastore, DatastoreError};

/// The X.509 and JWT authorities of the server's trust domain, each in the order they were added.
#[derive(Clone, Default, Eq, PartialEq)]
pub struct BundleRecord {
    /// DER certificates of the authorities.
    pub authorities: Vec<Vec<u8>>,
    /// Public keys that verify JWT-SVIDs.
    pub jwt_authorities: Vec<JwtAuthorityRecord>,
    /// DER certificates of the tainted X.509 authorities, a subset of `authorities`.
    pub tainted_authorities: Vec<Vec<u8>>,
    /// Key IDs of the tainted JWT authorities.
    pub tainted_jwt_key_ids: Vec<String>,
    /// Number bumped on every change of the authorities, 0 while there are none.
    pub sequence_number: u64,
}

/// A public key that verifies JWT-SVIDs, published under its key ID.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct JwtAuthorityRecord {
    /// The `kid` that JWT-SVID headers name, never empty.
    pub key_id: String,
    /// PKIX `SubjectPublicKeyInfo` DER.
    pub public_key_der: Vec<u8>,
    /// Unix seconds after which no token the key signed is valid.
    pub expires_at: i64,
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
        .bind(super::bundle_lifecycle::certificate_digest(der))
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

    /// Adds a JWT authority to the bundle and returns the bundle.
    ///
    /// Adding a key that is already present (same key ID, public key and expiry) changes nothing,
    /// not even the sequence number, so servers may add their JWT signing key at every start.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::InvalidArgument`] for an empty key ID or a public key that is not DER,
    /// [`DatastoreError::AlreadyExists`] when the key ID is stored with another key or expiry, and
    /// [`DatastoreError::Database`] when a query fails.
    pub async fn append_jwt_authority(
        &self,
        authority: &JwtAuthorityRecord,
    ) -> Result<BundleRecord, DatastoreError> {
        check_jwt_authority(authority)?;

        // As for X.509 authorities, the bump comes first to take the write lock.
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE bundle_state SET sequence_number = sequence_number + 1 WHERE id = 1 \
             RETURNING sequence_number",
        )
        .fetch_one(&mut *transaction)
        .await?;
        let position: i64 = column(&row, "sequence_number")?;
        let inserted = sqlx::query(
            "INSERT INTO bundle_jwt_authorities (key_id, public_key_hex, expires_at, position) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&authority.key_id)
        .bind(hex::encode(&authority.public_key_der))
        .bind(authority.expires_at)
        .bind(position)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 1 {
            transaction.commit().await?;
            return self.bundle().await;
        }
        transaction.rollback().await?;

        let bundle = self.bundle().await?;
        if bundle.jwt_authorities.contains(authority) {
            return Ok(bundle);
        }
        Err(DatastoreError::AlreadyExists {
            what: format!(
                "JWT authority with key ID {:?} and another key",
                authority.key_id
            ),
        })
    }

    /// Returns the bundle's authorities and sequence number, read in one statement so that all of
    /// them come from the same state.
    ///
    /// # Errors
    ///
    /// [`DatastoreError::Database`] when the query fails, [`DatastoreError::InvalidRecord`] when a
    /// stored authority is not hex.
    pub async fn bundle(&self) -> Result<BundleRecord, DatastoreError> {
        // One row per authority of either kind (or one row of NULLs when there are none), with
        // `kind` 0 for X.509 and 1 for JWT authorities.
        let rows = sqlx::query(
            "SELECT s.sequence_number, a.kind, a.key_id, a.data_hex, a.expires_at, a.tainted \
             FROM bundle_state s LEFT JOIN ( \
                 SELECT CAST(0 AS BIGINT) AS kind, CAST('' AS TEXT) AS key_id, \
                        der_hex AS data_hex, CAST(0 AS BIGINT) AS expires_at, tainted, position \
                 FROM bundle_authorities \
                 UNION ALL \
                 SELECT CAST(1 AS BIGINT), key_id, public_key_hex, expires_at, tainted, position \
                 FROM bundle_jwt_authorities \
             ) a ON TRUE WHERE s.id = 1 ORDER BY a.kind, a.position",
        )
        .fetch_all(&self.pool)
        .await?;

        let mut bundle = BundleRecord::default();
        for row in &rows {
            let sequence_number: i64 = column(row, "sequence_number")?;
            bundle.sequence_number = u64::try_from(sequence_number).unwrap_or(0);
            let Some(data_hex) = column::<Option<String>>(row, "data_hex")? else {
                continue;
            };
            let data = hex::decode(data_hex)
                .map_err(|e| rows::invalid("bundle authority", e.to_string()))?;
            let tainted = column::<Option<i64>>(row, "tainted")? == Some(1);
            match column::<Option<i64>>(row, "kind")? {
                Some(JWT_AUTHORITY_KIND) => {
                    let key_id: String = column(row, "key_id")?;
                    if tainted {
                        bundle.tainted_jwt_key_ids.push(key_id.clone());
                    }
                    bundle.jwt_authorities.push(JwtAuthorityRecord {
                        key_id,
                        public_key_der: data,
                        expires_at: column(row, "expires_at")?,
                    });
                }
                _ => {
                    if tainted {
                        bundle.tainted_authorities.push(data.clone());
                    }
                    bundle.authorities.push(data);
                }
            }
        }
        Ok(bundle)
    }
}

impl fmt::Debug for BundleRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleRecord")
            .field("authorities", &self.authorities.len())
            .field("jwt_authorities", &self.jwt_authorities.len())
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

/// Checks that a JWT authority has a key ID and a DER public key, so that the bundle never
/// publishes a key that verifiers cannot select or parse.
fn check_jwt_authority(authority: &JwtAuthorityRecord) -> Result<(), DatastoreError> {
    let invalid = |reason: &str| DatastoreError::InvalidArgument {
        what: format!("JWT authority {:?}", authority.key_id),
        reason: reason.to_owned(),
    };
    if authority.key_id.is_empty() {
        return Err(invalid("the key ID is empty"));
    }
    match SubjectPublicKeyInfo::from_der(&authority.public_key_der) {
        Ok(([], _)) => Ok(()),
        _ => Err(invalid(
            "the public key is not one DER SubjectPublicKeyInfo",
        )),
    }
}

/// `kind` of JWT authority rows in the bundle query.
const JWT_AUTHORITY_KIND: i64 = 1;
