//! Tests of connection settings that the public API cannot observe.

use sqlx::Row;

use super::*;

#[tokio::test(flavor = "current_thread")]
async fn sqlite_connections_use_wal_and_full_sync() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}/datastore.sqlite3", dir.path().display());
    let store = Datastore::open(&url).await.unwrap();

    let mut connection = store.pool.acquire().await.unwrap();
    let journal_mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut *connection)
        .await
        .unwrap()
        .get(0);
    let synchronous: i64 = sqlx::query("PRAGMA synchronous")
        .fetch_one(&mut *connection)
        .await
        .unwrap()
        .get(0);
    let busy_timeout: i64 = sqlx::query("PRAGMA busy_timeout")
        .fetch_one(&mut *connection)
        .await
        .unwrap()
        .get(0);

    assert_eq!(journal_mode, "wal");
    assert_eq!(synchronous, 2, "2 is FULL");
    assert_eq!(busy_timeout, 10_000);
    drop(connection);
    store.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn join_tokens_are_stored_as_digests() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}/datastore.sqlite3", dir.path().display());
    let store = Datastore::open(&url).await.unwrap();
    let token = crate::model::JoinToken {
        value: "plain-secret-token".to_owned(),
        expires_at: i64::MAX,
    };
    store.create_join_token(&token).await.unwrap();

    let stored: String = sqlx::query("SELECT token_sha256 FROM join_tokens")
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .get(0);

    assert_ne!(stored, token.value);
    assert_eq!(stored.len(), 64);
    assert!(!stored.contains("plain-secret-token"));
    store.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn refused_postgres_connection_names_address_and_cause() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://signet:secret@127.0.0.1:{port}/signet");
    let started = std::time::Instant::now();

    let error = Datastore::open(&url).await.unwrap_err();

    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        matches!(&error, DatastoreError::Connect { address, .. } if *address == format!("127.0.0.1:{port}")),
        "{error:?}"
    );
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("refused"), "{cause}");
    assert!(!format!("{error:?}").contains("secret"));
}

#[tokio::test(flavor = "current_thread")]
async fn silent_postgres_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts the connection and never replies to the startup message.
    let server = tokio::spawn(async move {
        let connection = listener.accept().await;
        std::future::pending::<()>().await;
        drop(connection);
    });
    let url = format!("postgres://signet@127.0.0.1:{port}/signet");
    let timeout = std::time::Duration::from_millis(300);

    sqlx::any::install_default_drivers();
    let error = connect::check_postgres_connection(&url, timeout)
        .await
        .unwrap_err();

    assert!(
        matches!(&error, DatastoreError::ConnectTimeout { address, .. } if *address == format!("127.0.0.1:{port}")),
        "{error:?}"
    );
    assert!(error.to_string().contains("timed out"), "{error}");
    server.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn reset_entries_generation_jumps_past_earlier_values() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}/datastore.sqlite3", dir.path().display());
    let store = Datastore::open(&url).await.unwrap();
    let mut connection = store.pool.acquire().await.unwrap();
    entries_generation::bump_entries_generation(&mut connection)
        .await
        .unwrap();
    let before_reset = store.entries_generation().await.unwrap();

    // A restored backup or a recreated row brings the generation back to an earlier value.
    sqlx::query("UPDATE entries_state SET generation = 0 WHERE id = 1")
        .execute(&mut *connection)
        .await
        .unwrap();
    entries_generation::bump_entries_generation(&mut connection)
        .await
        .unwrap();

    assert!(store.entries_generation().await.unwrap() > before_reset);
    drop(connection);
    store.close().await;
}
