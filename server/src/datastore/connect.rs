//! Connection pools for SQLite and PostgreSQL, with the SQLite file and pragmas set up safely.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, Connection};

use super::DatastoreError;

/// Connections per pool. SQLite serialises writers anyway, and PostgreSQL allows 100 connections
/// by default.
const MAX_CONNECTIONS: u32 = 8;

/// How long a query waits for a connection from the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the first PostgreSQL connection may take. The pool itself would retry an unreachable
/// server until `ACQUIRE_TIMEOUT` and then report only that it timed out.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings applied to every SQLite connection. WAL lets readers run during a write, and the busy
/// timeout makes concurrent writers wait for the lock instead of failing at once.
///
/// In WAL mode, `synchronous=NORMAL` would already keep every committed transaction across a
/// killed process, but a power loss could undo the last ones. `synchronous=FULL` syncs the WAL at
/// every commit, so an entry, agent or join token the API acknowledged also survives a power loss,
/// at the cost of one fsync per write.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
];

/// Opens a pool for `url`, creating the SQLite file first when needed.
pub(super) async fn open_pool(url: &str) -> Result<AnyPool, DatastoreError> {
    sqlx::any::install_default_drivers();

    let options = AnyPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT);
    if is_sqlite(url) {
        create_sqlite_file(url)?;
        let options = options.after_connect(|connection, _| {
            Box::pin(async move {
                for pragma in SQLITE_PRAGMAS {
                    sqlx::query(*pragma).execute(&mut *connection).await?;
                }
                Ok(())
            })
        });
        Ok(options.connect(url).await?)
    } else if is_postgres(url) {
        check_postgres_connection(url, POSTGRES_CONNECT_TIMEOUT).await?;
        Ok(options.connect(url).await?)
    } else {
        Err(invalid_url(url))
    }
}

/// Opens and closes one connection, so that an unreachable server fails within `timeout` with its
/// address and the cause.
pub(super) async fn check_postgres_connection(
    url: &str,
    timeout: Duration,
) -> Result<(), DatastoreError> {
    let address = postgres_address(url);
    match tokio::time::timeout(timeout, AnyConnection::connect(url)).await {
        Ok(Ok(connection)) => {
            // The check succeeded. A failure to say goodbye to the server changes nothing.
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(error)) => Err(DatastoreError::Connect {
            address,
            source: connect_cause(error),
        }),
        Err(_) => Err(DatastoreError::ConnectTimeout { address, timeout }),
    }
}

/// Returns the I/O error that sqlx wraps, if any, because sqlx's own message repeats it.
fn connect_cause(error: sqlx::Error) -> Box<dyn std::error::Error + Send + Sync> {
    match error {
        sqlx::Error::Io(io) => Box::new(io),
        error => Box::new(error),
    }
}

/// Returns `host:port` of a PostgreSQL URL, or the URL without user info when it does not parse.
fn postgres_address(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) if options.get_host().contains(':') => {
            format!("[{}]:{}", options.get_host(), options.get_port())
        }
        Ok(options) => format!("{}:{}", options.get_host(), options.get_port()),
        Err(_) => redacted_url(url),
    }
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Creates the database file with mode 0600, and its missing directories with mode 0700, before
/// SQLite opens it. SQLite itself would create the file with the process umask, and it gives its
/// WAL and shared-memory files the mode of the database file.
fn create_sqlite_file(url: &str) -> Result<(), DatastoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(|_| invalid_url(url))?;
    let path = options.get_filename();
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Err(invalid_url(url));
    }
    let create_error = |source| DatastoreError::CreateFile {
        path: path.display().to_string(),
        source,
    };

    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        signet_core::fs::create_private_dir(parent).map_err(create_error)?;
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(create_error)?;
    std::fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(create_error)
}

/// Builds the URL error, keeping only the scheme and host part so that no password is shown.
fn invalid_url(url: &str) -> DatastoreError {
    DatastoreError::InvalidUrl {
        url: redacted_url(url),
    }
}

/// Returns the URL without its user info, which may hold a password.
fn redacted_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://…@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
