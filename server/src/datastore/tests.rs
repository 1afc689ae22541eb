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
