//! Errors of the datastore.

/// Error of a datastore operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatastoreError {
    /// No record has the given key.
    #[error("{what} not found")]
    NotFound {
        /// The missing record, for example `registration entry 1b4e…`.
        what: String,
    },
    /// A record with the same key, or an entry with the same SPIFFE ID, parent ID and selectors,
    /// already exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// The conflicting record.
        what: String,
    },
    /// The join token existed but had expired. It was deleted all the same.
    #[error("join token expired at {}", crate::model::unix_time_text(*expired_at))]
    JoinTokenExpired {
        /// Unix time in seconds at which the token expired.
        expired_at: i64,
    },
    /// The database URL is neither `sqlite://` nor `postgres://`, or names no file.
    #[error("invalid database URL {url:?}: use sqlite:///absolute/path or postgres://...")]
    InvalidUrl {
        /// The URL with any password removed.
        url: String,
    },
    /// The SQLite file or its directory could not be created.
    #[error("failed to create the SQLite database file {path}")]
    CreateFile {
        /// Path of the database file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The first connection to PostgreSQL failed, for example because nothing listens at the
    /// address or the credentials are wrong.
    #[error("failed to connect to PostgreSQL at {address}")]
    Connect {
        /// Host and port (or socket directory) of the database server.
        address: String,
        /// The I/O error, or the driver's error when the failure is not one of I/O.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The first connection to PostgreSQL did not complete in time.
    #[error(
        "connecting to PostgreSQL at {address} timed out after {} s: check that the database \
         server is running and that no firewall drops the connection",
        timeout.as_secs()
    )]
    ConnectTimeout {
        /// Host and port (or socket directory) of the database server.
        address: String,
        /// The time allowed.
        timeout: std::time::Duration,
    },
    /// The database rejected a query or could not be reached.
    #[error("database operation failed")]
    Database(#[source] sqlx::Error),
    /// The schema migrations failed.
    #[error("database schema migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// A stored row does not form a valid record, for example after a manual edit.
    #[error("invalid stored {what}: {reason}")]
    InvalidRecord {
        /// The kind of record and its key.
        what: String,
        /// Description of the defect.
        reason: String,
    },
    /// A value passed to the datastore cannot be stored, for example a bundle authority that is
    /// not a DER X.509 certificate.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The rejected value.
        what: String,
        /// Reason for the rejection.
        reason: String,
    },
}

impl DatastoreError {
    /// Returns whether the record was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Returns whether a conflicting record already exists.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }

    /// Returns whether a join token was found but had expired.
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::JoinTokenExpired { .. })
    }

    /// Maps a query error, turning a unique-constraint violation into `AlreadyExists { what }`.
    pub(crate) fn from_write(error: sqlx::Error, what: impl FnOnce() -> String) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::AlreadyExists { what: what() }
            }
            _ => Self::Database(error),
        }
    }
}

impl From<sqlx::Error> for DatastoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}
