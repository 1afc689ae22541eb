//! A fresh PostgreSQL database per test, on the server named by `SIGNET_TEST_POSTGRES_URL`.

use std::env;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Environment variable with the PostgreSQL base URL, without a database name.
pub const POSTGRES_URL_ENV: &str = "SIGNET_TEST_POSTGRES_URL";

/// Base URL used when `SIGNET_TEST_POSTGRES_URL` is unset: the local server with trust auth.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// A database created for one test. Call [`TestDatabase::remove`] at the end; a failed test
/// leaves its database behind for inspection.
#[derive(Debug)]
pub struct TestDatabase {
    base_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique `signet_e2e_` name.
    ///
    /// # Errors
    ///
    /// Fails when PostgreSQL is unreachable, telling how to start it.
    pub async fn create() -> anyhow::Result<Self> {
        let base_url =
            env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = unique_name();
        let mut admin = connect(&base_url).await?;
        // The name is generated here from digits and underscores only, so it is safe in SQL.
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(Self { base_url, name })
    }

    /// Returns the URL of this database, for `--database`.
    pub fn url(&self) -> String {
        format!("{}/{}", self.base_url, self.name)
    }

    /// Drops the database, closing any connection still open to it.
    ///
    /// # Errors
    ///
    /// Fails when PostgreSQL is unreachable or refuses.
    pub async fn remove(self) -> anyhow::Result<()> {
        let mut admin = connect(&self.base_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .with_context(|| format!("dropping database {}", self.name))?;
        Ok(())
    }
}

async fn connect(base_url: &str) -> anyhow::Result<PgConnection> {
    let url = format!("{base_url}/postgres");
    PgConnection::connect(&url).await.with_context(|| {
        format!(
            "connecting to PostgreSQL at {base_url}: start it (scripts/test does) or set \
             {POSTGRES_URL_ENV}"
        )
    })
}

fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("signet_e2e_{}_{nanos}", std::process::id())
}
