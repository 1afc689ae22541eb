//! Datastore tests. Every case runs against SQLite in a temporary directory and against
//! PostgreSQL, in a fresh database per test.
//!
//! PostgreSQL must listen at `SIGNET_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`)
//! and accept the `postgres` user without a password, or the tests fail.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test failures surface as panics with the error shown"
)]

use std::os::unix::fs::PermissionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

use signet_core::selector::Selector;
use signet_server::datastore::{
    ApplyEntriesError, ApplyMode, Datastore, DatastoreError, EntryPlanError, JwtAuthorityRecord,
};
use signet_server::model::{AttestedAgent, EntryOwner, JoinToken, RegistrationEntry};
use spiffe::{SpiffeId, TrustDomain};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// Generates, for each case function, one test on SQLite and one on PostgreSQL. The runtime has two
/// worker threads so that the concurrency cases really run their tasks in parallel.
macro_rules! datastore_cases {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = super::open_sqlite().await;
                    super::$case(&store).await;
                    store.close().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let database = super::PostgresDatabase::create().await;
                    let store = Datastore::open(&database.url).await.unwrap();
                    super::$case(&store).await;
                    store.close().await;
                }
            )*
            use signet_server::datastore::Datastore;
        }
    };
}

datastore_cases!(
    entry_round_trips_every_field,
    entry_gets_uuid_and_creation_time,
    entry_keeps_chosen_id,
    duplicate_entry_is_rejected,
    duplicate_entry_ignores_selector_order,
    entry_with_other_selectors_is_not_duplicate,
    concurrent_duplicate_entries_store_one,
    update_bumps_revision,
    update_into_duplicate_is_rejected,
    update_missing_entry_is_not_found,
    delete_returns_entry,
    delete_missing_entry_is_not_found,
    entries_list_in_creation_order,
    join_token_is_single_use,
    concurrent_join_token_consumers_one_wins,
    expired_join_token_is_rejected_and_deleted,
    duplicate_join_token_is_rejected,
    agent_round_trips,
    duplicate_agent_is_rejected,
    agent_update_and_ban,
    missing_agent_is_not_found,
    agent_delete,
    bundle_append_is_idempotent,
    bundle_rejects_non_certificate,
    jwt_authority_append_is_idempotent,
    jwt_authority_key_id_conflict_is_rejected,
    jwt_authority_rejects_invalid_key,
    apply_creates_then_changes_nothing,
    apply_updates_and_prunes_own_entries,
    apply_conflict_changes_nothing,
    apply_dry_run_changes_nothing,
);

// === cases ===

async fn entry_round_trips_every_field(store: &Datastore) {
    let mut entry = workload_entry("web");
    entry.id = "custom-id.1".to_owned();
    entry.selectors = vec![selector("unix:uid:1000"), selector("unix:gid:50")];
    entry.x509_svid_ttl = 600;
    entry.jwt_svid_ttl = 300;
    entry.federates_with = vec![trust_domain("partner.test"), trust_domain("other.test")];
    entry.admin = true;
    entry.downstream = true;
    entry.expires_at = 4_000_000_000;
    entry.dns_names = vec!["web.example.org".to_owned(), "*.web.example.org".to_owned()];
    entry.store_svid = true;
    entry.hint = "external \"quoted\" hint".to_owned();

    let created = store.create_entry(entry.clone()).await.unwrap();
    let fetched = store.fetch_entry(&entry.id).await.unwrap().unwrap();

    assert_eq!(fetched, created);
    entry.created_at = created.created_at;
    assert_eq!(fetched, entry);
}

async fn entry_gets_uuid_and_creation_time(store: &Datastore) {
    let before = unix_now();
    let mut entry = workload_entry("web");
    entry.revision_number = 7;

    let created = store.create_entry(entry).await.unwrap();

    assert!(
        uuid::Uuid::parse_str(&created.id).is_ok(),
        "id {:?}",
        created.id
    );
    assert!(created.created_at >= before);
    assert!(created.created_at <= unix_now());
    assert_eq!(created.revision_number, 0);
}

async fn entry_keeps_chosen_id(store: &Datastore) {
    let mut entry = workload_entry("web");
    entry.id = "my-entry".to_owned();
    let created = store.create_entry(entry).await.unwrap();
    assert_eq!(created.id, "my-entry");

    let mut other = workload_entry("db");
    other.id = "my-entry".to_owned();
    let error = store.create_entry(other).await.unwrap_err();
    assert!(error.is_already_exists(), "{error:?}");
    assert_eq!(
        error.to_string(),
        "registration entry my-entry already exists"
    );
}

async fn duplicate_entry_is_rejected(store: &Datastore) {
    store.create_entry(workload_entry("web")).await.unwrap();

    let mut duplicate = workload_entry("web");
    duplicate.x509_svid_ttl = 60;
    let error = store.create_entry(duplicate).await.unwrap_err();

    assert!(error.is_already_exists(), "{error:?}");
    assert!(
        error.to_string().contains("spiffe://example.org/web"),
        "{error}"
    );
    assert_eq!(store.count_entries().await.unwrap(), 1);
}

async fn duplicate_entry_ignores_selector_order(store: &Datastore) {
    let mut first = workload_entry("web");
    first.selectors = vec![selector("unix:uid:1000"), selector("unix:gid:50")];
    store.create_entry(first).await.unwrap();

    let mut reordered = workload_entry("web");
    reordered.selectors = vec![selector("unix:gid:50"), selector("unix:uid:1000")];
    let error = store.create_entry(reordered).await.unwrap_err();

    assert!(error.is_already_exists(), "{error:?}");
}

async fn entry_with_other_selectors_is_not_duplicate(store: &Datastore) {
    store.create_entry(workload_entry("web")).await.unwrap();

    let mut other = workload_entry("web");
    other.selectors = vec![selector("unix:uid:1001")];
    store.create_entry(other).await.unwrap();
    let mut other_parent = workload_entry("web");
    other_parent.parent_id = spiffe_id("spiffe://example.org/spire/agent/join_token/other");
    store.create_entry(other_parent).await.unwrap();

    assert_eq!(store.count_entries().await.unwrap(), 3);
}

async fn concurrent_duplicate_entries_store_one(store: &Datastore) {
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.create_entry(workload_entry("web")).await })
    });
    let results = futures::future::join_all(attempts).await;

    let mut created = 0;
    for result in results {
        match result.unwrap() {
            Ok(_) => created += 1,
            Err(error) => assert!(error.is_already_exists(), "{error:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(store.count_entries().await.unwrap(), 1);
}

async fn update_bumps_revision(store: &Datastore) {
    let created = store.create_entry(workload_entry("web")).await.unwrap();

    let mut changed = created.clone();
    changed.spiffe_id = spiffe_id("spiffe://example.org/web-v2").into();
    changed.selectors = vec![selector("unix:uid:2000")];
    changed.dns_names = vec!["web2.example.org".to_owned()];
    changed.hint = "v2".to_owned();
    changed.created_at = 1;
    let first = store.update_entry(changed.clone()).await.unwrap();
    let second = store.update_entry(changed.clone()).await.unwrap();

    assert_eq!(first.revision_number, 1);
    assert_eq!(second.revision_number, 2);
    assert_eq!(second.created_at, created.created_at);
    let fetched = store.fetch_entry(&created.id).await.unwrap().unwrap();
    assert_eq!(fetched, second);
    assert_eq!(fetched.spiffe_id, changed.spiffe_id);
    assert_eq!(fetched.selectors, changed.selectors);
    assert_eq!(fetched.hint, "v2");
}

async fn update_into_duplicate_is_rejected(store: &Datastore) {
    store.create_entry(workload_entry("web")).await.unwrap();
    let other = store.create_entry(workload_entry("db")).await.unwrap();

    let mut clash = other.clone();
    clash.spiffe_id = spiffe_id("spiffe://example.org/web").into();
    let error = store.update_entry(clash).await.unwrap_err();

    assert!(error.is_already_exists(), "{error:?}");
    let unchanged = store.fetch_entry(&other.id).await.unwrap().unwrap();
    assert_eq!(unchanged, other);
}

async fn update_missing_entry_is_not_found(store: &Datastore) {
    let mut entry = workload_entry("web");
    entry.id = "missing".to_owned();
    let error = store.update_entry(entry).await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    assert_eq!(error.to_string(), "registration entry missing not found");
}

async fn delete_returns_entry(store: &Datastore) {
    let created = store.create_entry(workload_entry("web")).await.unwrap();

    let deleted = store.delete_entry(&created.id).await.unwrap();

    assert_eq!(deleted, created);
    assert_eq!(store.fetch_entry(&created.id).await.unwrap(), None);
    assert_eq!(store.count_entries().await.unwrap(), 0);
    store.create_entry(workload_entry("web")).await.unwrap();
}

async fn delete_missing_entry_is_not_found(store: &Datastore) {
    let error = store.delete_entry("missing").await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
}

async fn entries_list_in_creation_order(store: &Datastore) {
    let mut ids = Vec::new();
    for name in ["c", "a", "b"] {
        ids.push(store.create_entry(workload_entry(name)).await.unwrap().id);
    }

    let listed = store.list_entries().await.unwrap();

    // Entries created within one second share `created_at` and are then ordered by ID.
    let mut expected: Vec<(i64, String)> = listed
        .iter()
        .map(|e| (e.created_at, e.id.clone()))
        .collect();
    expected.sort();
    let actual: Vec<(i64, String)> = listed
        .iter()
        .map(|e| (e.created_at, e.id.clone()))
        .collect();
    assert_eq!(actual, expected);
    assert_eq!(listed.len(), 3);
    assert_eq!(store.count_entries().await.unwrap(), 3);
}

async fn join_token_is_single_use(store: &Datastore) {
    let token = JoinToken {
        value: "5f1e0c2a-token".to_owned(),
        expires_at: unix_now() + 600,
    };
    store.create_join_token(&token).await.unwrap();

    let first = store.consume_join_token(&token.value).await.unwrap();
    let second = store.consume_join_token(&token.value).await.unwrap();

    assert_eq!(first, Some(token));
    assert_eq!(second, None);
    assert_eq!(
        store.consume_join_token("never-created").await.unwrap(),
        None
    );
}

async fn concurrent_join_token_consumers_one_wins(store: &Datastore) {
    for round in 0..5 {
        let value = format!("contended-{round}");
        let token = JoinToken {
            value: value.clone(),
            expires_at: unix_now() + 600,
        };
        store.create_join_token(&token).await.unwrap();

        let consumers = (0..4).map(|_| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move { store.consume_join_token(&value).await })
        });
        let results = futures::future::join_all(consumers).await;

        let winners = results
            .into_iter()
            .map(|result| result.unwrap().unwrap())
            .filter(Option::is_some)
            .count();
        assert_eq!(winners, 1, "round {round}");
    }
}

async fn expired_join_token_is_rejected_and_deleted(store: &Datastore) {
    let token = JoinToken {
        value: "expired-token".to_owned(),
        expires_at: unix_now() - 1,
    };
    store.create_join_token(&token).await.unwrap();

    let error = store.consume_join_token(&token.value).await.unwrap_err();
    let again = store.consume_join_token(&token.value).await.unwrap();

    assert!(error.is_expired(), "{error:?}");
    assert!(!error.to_string().contains("expired-token"), "{error}");
    assert_eq!(again, None);

    // One fact, as RFC 3339: the agent adds the advice to create a new token.
    let message = error.to_string();
    let rfc3339 = message.strip_prefix("join token expired at ").unwrap();
    assert!(humantime::parse_rfc3339(rfc3339).is_ok(), "{message}");
}

async fn duplicate_join_token_is_rejected(store: &Datastore) {
    let token = JoinToken {
        value: "secret-duplicate".to_owned(),
        expires_at: unix_now() + 600,
    };
    store.create_join_token(&token).await.unwrap();

    let error = store.create_join_token(&token).await.unwrap_err();

    assert!(error.is_already_exists(), "{error:?}");
    assert!(!error.to_string().contains("secret-duplicate"), "{error}");
}

async fn agent_round_trips(store: &Datastore) {
    let agent = AttestedAgent {
        selectors: vec![
            selector("unix:uid:0"),
            selector("spiffe_id:spiffe://example.org/x"),
        ],
        can_reattest: true,
        x509_authority_id: "0a1b2c".to_owned(),
        ..join_token_agent("a1")
    };
    store.create_agent(&agent).await.unwrap();

    assert_eq!(
        store.fetch_agent(&agent.spiffe_id).await.unwrap(),
        Some(agent.clone())
    );
    assert_eq!(store.list_agents().await.unwrap(), vec![agent]);
    assert_eq!(store.count_agents().await.unwrap(), 1);
}

async fn duplicate_agent_is_rejected(store: &Datastore) {
    let agent = join_token_agent("a1");
    store.create_agent(&agent).await.unwrap();

    let error = store.create_agent(&agent).await.unwrap_err();

    assert!(error.is_already_exists(), "{error:?}");
}

async fn agent_update_and_ban(store: &Datastore) {
    let mut agent = join_token_agent("a1");
    store.create_agent(&agent).await.unwrap();
    store.create_agent(&join_token_agent("a2")).await.unwrap();

    agent.serial_number = "0abc".to_owned();
    agent.expires_at += 3600;
    store.update_agent(&agent).await.unwrap();
    assert_eq!(
        store.fetch_agent(&agent.spiffe_id).await.unwrap(),
        Some(agent.clone())
    );

    store.ban_agent(&agent.spiffe_id).await.unwrap();
    let banned = store.fetch_agent(&agent.spiffe_id).await.unwrap().unwrap();
    assert!(banned.banned);
    assert_eq!(banned.serial_number, "0abc");
    let other = store
        .fetch_agent(&join_token_agent("a2").spiffe_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!other.banned);
}

async fn missing_agent_is_not_found(store: &Datastore) {
    let agent = join_token_agent("missing");
    assert_eq!(store.fetch_agent(&agent.spiffe_id).await.unwrap(), None);
    let errors = [
        store.update_agent(&agent).await.unwrap_err(),
        store.ban_agent(&agent.spiffe_id).await.unwrap_err(),
        store.delete_agent(&agent.spiffe_id).await.unwrap_err(),
    ];
    for error in errors {
        assert!(error.is_not_found(), "{error:?}");
    }
}

async fn agent_delete(store: &Datastore) {
    let agent = join_token_agent("a1");
    store.create_agent(&agent).await.unwrap();

    store.delete_agent(&agent.spiffe_id).await.unwrap();

    assert_eq!(store.fetch_agent(&agent.spiffe_id).await.unwrap(), None);
    assert_eq!(store.count_agents().await.unwrap(), 0);
    store.create_agent(&agent).await.unwrap();
}

async fn bundle_append_is_idempotent(store: &Datastore) {
    let first = certificate_der("first");
    let second = certificate_der("second");
    let empty = store.bundle().await.unwrap();
    assert_eq!(empty.sequence_number, 0);
    assert!(empty.authorities.is_empty());

    let after_first = store.append_bundle_authority(&first).await.unwrap();
    let repeated = store.append_bundle_authority(&first).await.unwrap();
    let after_second = store.append_bundle_authority(&second).await.unwrap();

    assert_eq!(after_first.authorities, vec![first.clone()]);
    assert_eq!(after_first.sequence_number, 1);
    assert_eq!(repeated, after_first);
    assert_eq!(after_second.authorities, vec![first, second]);
    assert_eq!(after_second.sequence_number, 2);
    assert_eq!(store.bundle().await.unwrap(), after_second);
}

async fn bundle_rejects_non_certificate(store: &Datastore) {
    let mut trailing = certificate_der("trailing");
    trailing.push(0);
    for bad in [b"not a certificate".to_vec(), trailing, Vec::new()] {
        let error = store.append_bundle_authority(&bad).await.unwrap_err();
        assert!(
            matches!(error, DatastoreError::InvalidArgument { .. }),
            "{error:?}"
        );
    }
    assert_eq!(store.bundle().await.unwrap().sequence_number, 0);
}

async fn jwt_authority_append_is_idempotent(store: &Datastore) {
    let certificate = certificate_der("ca");
    store.append_bundle_authority(&certificate).await.unwrap();
    let first = jwt_authority("first");
    let second = jwt_authority("second");

    let after_first = store.append_jwt_authority(&first).await.unwrap();
    let repeated = store.append_jwt_authority(&first).await.unwrap();
    let after_second = store.append_jwt_authority(&second).await.unwrap();

    assert_eq!(after_first.jwt_authorities, vec![first.clone()]);
    assert_eq!(after_first.sequence_number, 2);
    assert_eq!(repeated, after_first);
    assert_eq!(after_second.jwt_authorities, vec![first, second]);
    assert_eq!(after_second.authorities, vec![certificate]);
    assert_eq!(after_second.sequence_number, 3);
    assert_eq!(store.bundle().await.unwrap(), after_second);
}

async fn jwt_authority_key_id_conflict_is_rejected(store: &Datastore) {
    let stored = jwt_authority("kid");
    store.append_jwt_authority(&stored).await.unwrap();
    let other_key = JwtAuthorityRecord {
        public_key_der: jwt_authority("other").public_key_der,
        ..stored.clone()
    };
    let other_expiry = JwtAuthorityRecord {
        expires_at: stored.expires_at + 1,
        ..stored.clone()
    };

    for conflicting in [other_key, other_expiry] {
        let error = store.append_jwt_authority(&conflicting).await.unwrap_err();
        assert!(error.is_already_exists(), "{error:?}");
    }
    let bundle = store.bundle().await.unwrap();
    assert_eq!(bundle.jwt_authorities, vec![stored]);
    assert_eq!(bundle.sequence_number, 1);
}

async fn jwt_authority_rejects_invalid_key(store: &Datastore) {
    let valid = jwt_authority("valid");
    let mut trailing = valid.public_key_der.clone();
    trailing.push(0);
    let cases = [
        JwtAuthorityRecord {
            key_id: String::new(),
            ..valid.clone()
        },
        JwtAuthorityRecord {
            public_key_der: b"not a key".to_vec(),
            ..valid.clone()
        },
        JwtAuthorityRecord {
            public_key_der: trailing,
            ..valid
        },
    ];
    for bad in cases {
        let error = store.append_jwt_authority(&bad).await.unwrap_err();
        assert!(
            matches!(error, DatastoreError::InvalidArgument { .. }),
            "{error:?}"
        );
    }
    assert_eq!(store.bundle().await.unwrap().sequence_number, 0);
}

async fn apply_creates_then_changes_nothing(store: &Datastore) {
    let team = owner("team");
    let file = vec![workload_entry("web"), workload_entry("db")];

    let first = store
        .apply_entries(&team, file.clone(), true, ApplyMode::Write)
        .await
        .unwrap();
    let second = store
        .apply_entries(&team, file, true, ApplyMode::Write)
        .await
        .unwrap();

    assert_eq!(first.created.len(), 2);
    assert!(second.created.is_empty());
    assert!(second.updated.is_empty());
    assert!(second.deleted.is_empty());
    // Entries created in the same second list in ID order, so compare them sorted.
    let sorted = |mut entries: Vec<RegistrationEntry>| {
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries
    };
    assert_eq!(sorted(second.unchanged), sorted(first.created.clone()));
    assert_eq!(
        sorted(store.list_entries().await.unwrap()),
        sorted(first.created)
    );
}

async fn apply_updates_and_prunes_own_entries(store: &Datastore) {
    let team = owner("team");
    let manual = store.create_entry(workload_entry("manual")).await.unwrap();
    let theirs = store
        .apply_entries(
            &owner("other"),
            vec![workload_entry("theirs")],
            true,
            ApplyMode::Write,
        )
        .await
        .unwrap()
        .created;
    let ours = store
        .apply_entries(
            &team,
            vec![workload_entry("web"), workload_entry("db")],
            true,
            ApplyMode::Write,
        )
        .await
        .unwrap()
        .created;

    let mut web = workload_entry("web");
    web.x509_svid_ttl = 120;
    let plan = store
        .apply_entries(&team, vec![web], true, ApplyMode::Write)
        .await
        .unwrap();

    assert_eq!(plan.updated.len(), 1);
    assert_eq!(plan.updated[0].id, ours[0].id);
    assert_eq!(plan.updated[0].revision_number, 1);
    assert_eq!(plan.deleted, vec![ours[1].clone()]);
    let stored = store.fetch_entry(&ours[0].id).await.unwrap().unwrap();
    assert_eq!(stored, plan.updated[0]);
    assert_eq!(stored.x509_svid_ttl, 120);
    assert!(store.fetch_entry(&ours[1].id).await.unwrap().is_none());
    assert_eq!(store.fetch_entry(&manual.id).await.unwrap(), Some(manual));
    assert_eq!(
        store.fetch_entry(&theirs[0].id).await.unwrap(),
        Some(theirs[0].clone())
    );
}

async fn apply_conflict_changes_nothing(store: &Datastore) {
    let manual = store.create_entry(workload_entry("manual")).await.unwrap();

    let error = store
        .apply_entries(
            &owner("team"),
            vec![workload_entry("web"), workload_entry("manual")],
            true,
            ApplyMode::Write,
        )
        .await
        .unwrap_err();

    assert!(
        matches!(
            &error,
            ApplyEntriesError::Plan(EntryPlanError::OwnerConflict { entry_id, .. })
                if *entry_id == manual.id
        ),
        "{error:?}"
    );
    assert_eq!(store.list_entries().await.unwrap(), vec![manual]);
}

async fn apply_dry_run_changes_nothing(store: &Datastore) {
    let team = owner("team");
    let stored = store
        .apply_entries(&team, vec![workload_entry("web")], true, ApplyMode::Write)
        .await
        .unwrap()
        .created;

    let plan = store
        .apply_entries(&team, vec![workload_entry("db")], true, ApplyMode::DryRun)
        .await
        .unwrap();

    assert_eq!(plan.created.len(), 1);
    assert!(plan.created[0].id.is_empty());
    assert_eq!(plan.deleted, stored);
    assert_eq!(store.list_entries().await.unwrap(), stored);
}

// === SQLite-only tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reopen_keeps_data() {
    let dir = TempDir::new().unwrap();
    let url = sqlite_url(&dir);
    let store = Datastore::open(&url).await.unwrap();
    let entry = store.create_entry(workload_entry("web")).await.unwrap();
    store.create_agent(&join_token_agent("a1")).await.unwrap();
    let token = JoinToken {
        value: "kept".to_owned(),
        expires_at: unix_now() + 600,
    };
    store.create_join_token(&token).await.unwrap();
    let bundle = store
        .append_bundle_authority(&certificate_der("ca"))
        .await
        .unwrap();
    store.close().await;

    let reopened = Datastore::open(&url).await.unwrap();

    assert_eq!(reopened.list_entries().await.unwrap(), vec![entry]);
    assert_eq!(reopened.count_agents().await.unwrap(), 1);
    assert_eq!(reopened.bundle().await.unwrap(), bundle);
    assert_eq!(
        reopened.consume_join_token("kept").await.unwrap(),
        Some(token)
    );
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_private() {
    let dir = TempDir::new().unwrap();
    let data_dir = dir.path().join("data");
    let url = format!("sqlite://{}/datastore.sqlite3", data_dir.display());
    let store = Datastore::open(&url).await.unwrap();
    store.create_entry(workload_entry("web")).await.unwrap();

    assert_eq!(mode(&data_dir), 0o700);
    for name in ["datastore.sqlite3", "datastore.sqlite3-wal"] {
        assert_eq!(mode(&data_dir.join(name)), 0o600, "{name}");
    }
    store.close().await;
}

#[tokio::test]
async fn unknown_database_scheme_is_rejected() {
    let error = Datastore::open("mysql://root:hunter2@127.0.0.1/db")
        .await
        .unwrap_err();
    assert!(
        matches!(error, DatastoreError::InvalidUrl { .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

// === helpers ===

async fn open_sqlite() -> (Datastore, TempDir) {
    let dir = TempDir::new().unwrap();
    let store = Datastore::open(&sqlite_url(&dir)).await.unwrap();
    (store, dir)
}

fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}/datastore.sqlite3", dir.path().display())
}

/// A PostgreSQL database created for one test and dropped when the test ends, even on failure.
struct PostgresDatabase {
    base: String,
    name: String,
    url: String,
}

impl PostgresDatabase {
    async fn create() -> Self {
        let base = std::env::var("SIGNET_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("signet_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection(&base).await;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = format!("{base}/{name}");
        Self { base, name, url }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let base = self.base.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside the test's runtime, so the cleanup gets a thread and runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut admin = admin_connection(&base).await;
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            });
        });
        let _ = cleanup.join();
    }
}

async fn admin_connection(base: &str) -> PgConnection {
    let url = format!("{base}/postgres");
    match PgConnection::connect(&url).await {
        Ok(connection) => connection,
        Err(error) => panic!(
            "PostgreSQL is not reachable at {base} ({error}): start PostgreSQL on \
             127.0.0.1:5432 with trust authentication for the user postgres, or set \
             SIGNET_TEST_POSTGRES_URL"
        ),
    }
}

fn workload_entry(name: &str) -> RegistrationEntry {
    RegistrationEntry {
        id: String::new(),
        spiffe_id: spiffe_id(&format!("spiffe://example.org/{name}")).into(),
        parent_id: spiffe_id("spiffe://example.org/spire/agent/join_token/abc"),
        selectors: vec![selector("unix:uid:1000")],
        x509_svid_ttl: 0,
        jwt_svid_ttl: 0,
        federates_with: Vec::new(),
        admin: false,
        downstream: false,
        expires_at: 0,
        dns_names: Vec::new(),
        revision_number: 0,
        store_svid: false,
        hint: String::new(),
        created_at: 0,
    }
}

fn owner(label: &str) -> EntryOwner {
    EntryOwner::new(label).unwrap()
}

fn join_token_agent(token: &str) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: spiffe_id(&format!(
            "spiffe://example.org/spire/agent/join_token/{token}"
        )),
        attestation_type: "join_token".to_owned(),
        serial_number: "01f2".to_owned(),
        expires_at: unix_now() + 3600,
        selectors: Vec::new(),
        banned: false,
        can_reattest: false,
        x509_authority_id: String::new(),
    }
}

fn certificate_der(name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![format!("{name}.example.org")]).unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn jwt_authority(key_id: &str) -> JwtAuthorityRecord {
    use rcgen::PublicKeyData;

    let key = rcgen::KeyPair::generate().unwrap();
    JwtAuthorityRecord {
        key_id: key_id.to_owned(),
        public_key_der: key.subject_public_key_info(),
        expires_at: unix_now() + 3600,
    }
}

fn spiffe_id(text: &str) -> SpiffeId {
    SpiffeId::new(text).unwrap()
}

fn trust_domain(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn selector(text: &str) -> Selector {
    Selector::parse(text).unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn unix_now() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_secs()).unwrap()
}
