//! Tests of the entry cache against real datastore writes on SQLite, and of cached results
//! against time and node selectors.

use signet_core::selector::Selector;
use spiffe::SpiffeId;
use tempfile::TempDir;

use super::*;
use crate::authorization::tests::{AGENT, NOW, SERVER, entry};
use crate::datastore::{ApplyMode, Datastore};
use crate::model::{EntryOwner, RegistrationEntry};

fn selector(text: &str) -> Selector {
    Selector::parse(text).unwrap()
}

fn agent_id() -> SpiffeId {
    SpiffeId::new(AGENT).unwrap()
}

fn ids(authorized: &AuthorizedEntries) -> Vec<&str> {
    authorized.iter().map(|entry| entry.id.as_str()).collect()
}

/// A datastore in a temporary directory with a cache in front of it, read the way the API does.
struct Fixture {
    datastore: Datastore,
    cache: EntryCache,
    _dir: TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}",
            dir.path().join("datastore.sqlite3").display()
        );
        Self {
            datastore: Datastore::open(&url).await.unwrap(),
            cache: EntryCache::default(),
            _dir: dir,
        }
    }

    /// Returns the snapshot of the current generation, reading the entries only on a miss.
    async fn snapshot(&self) -> Arc<EntrySnapshot> {
        let generation = self.datastore.entries_generation().await.unwrap();
        if let Some(snapshot) = self.cache.snapshot(generation) {
            return snapshot;
        }
        let entries = self.datastore.list_entries().await.unwrap();
        self.cache.insert(generation, entries)
    }

    /// Returns the IDs of the entries the test agent, with no node selectors, is authorized for.
    async fn authorized_ids(&self) -> Vec<String> {
        let authorized = self.snapshot().await.authorized(&agent_id(), &[], NOW);
        authorized.iter().map(|entry| entry.id.clone()).collect()
    }

    async fn create(&self, spiffe_id: &str) -> RegistrationEntry {
        let entry = entry("", spiffe_id, AGENT, &["unix:uid:1"], 0);
        self.datastore.create_entry(entry).await.unwrap()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn create_is_seen_by_next_read() {
    let fixture = Fixture::new().await;
    assert!(fixture.authorized_ids().await.is_empty());

    let created = fixture.create("spiffe://example.org/a").await;

    assert_eq!(fixture.authorized_ids().await, [created.id.as_str()]);
}

#[tokio::test(flavor = "current_thread")]
async fn update_is_seen_by_next_read() {
    let fixture = Fixture::new().await;
    let mut created = fixture.create("spiffe://example.org/a").await;
    assert_eq!(fixture.authorized_ids().await, [created.id.as_str()]);

    created.parent_id = SpiffeId::new("spiffe://example.org/spire/agent/other").unwrap();
    fixture.datastore.update_entry(created).await.unwrap();

    assert!(fixture.authorized_ids().await.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn delete_is_seen_by_next_read() {
    let fixture = Fixture::new().await;
    let created = fixture.create("spiffe://example.org/a").await;
    assert_eq!(fixture.authorized_ids().await, [created.id.as_str()]);

    fixture.datastore.delete_entry(&created.id).await.unwrap();

    assert!(fixture.authorized_ids().await.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn apply_is_seen_by_next_read() {
    let fixture = Fixture::new().await;
    let owner = EntryOwner::new("team-a").unwrap();
    let requested = vec![entry(
        "",
        "spiffe://example.org/a",
        AGENT,
        &["unix:uid:1"],
        0,
    )];
    let applied = fixture
        .datastore
        .apply_entries(&owner, requested.clone(), true, ApplyMode::Write)
        .await
        .unwrap();
    assert_eq!(
        fixture.authorized_ids().await,
        [applied.created[0].id.as_str()]
    );

    fixture
        .datastore
        .apply_entries(&owner, Vec::new(), true, ApplyMode::Write)
        .await
        .unwrap();

    assert!(fixture.authorized_ids().await.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn failed_write_keeps_generation() {
    let fixture = Fixture::new().await;
    fixture.create("spiffe://example.org/a").await;
    let before = fixture.datastore.entries_generation().await.unwrap();

    let duplicate = entry("", "spiffe://example.org/a", AGENT, &["unix:uid:1"], 0);
    fixture.datastore.create_entry(duplicate).await.unwrap_err();
    fixture.datastore.delete_entry("missing").await.unwrap_err();

    assert_eq!(
        fixture.datastore.entries_generation().await.unwrap(),
        before
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unchanged_generation_reuses_snapshot() {
    let fixture = Fixture::new().await;
    fixture.create("spiffe://example.org/a").await;

    let first = fixture.snapshot().await;
    let second = fixture.snapshot().await;

    assert!(Arc::ptr_eq(&first, &second));
}

#[test]
fn lower_generation_replaces_cached_snapshot() {
    let cache = EntryCache::default();
    let older = EntriesGeneration::from_number(1);
    let newer = EntriesGeneration::from_number(2);

    cache.insert(newer, Vec::new());
    cache.insert(older, Vec::new());

    assert!(cache.snapshot(older).is_some());
    assert!(cache.snapshot(newer).is_none());
}

#[test]
fn cached_result_drops_entry_at_expiry() {
    let expires_at = NOW + 60;
    let entries = vec![
        entry(
            "parent",
            "spiffe://example.org/p",
            AGENT,
            &["unix:uid:1"],
            expires_at,
        ),
        entry(
            "child",
            "spiffe://example.org/c",
            "spiffe://example.org/p",
            &["unix:uid:2"],
            0,
        ),
        entry("other", "spiffe://example.org/o", AGENT, &["unix:uid:3"], 0),
    ];
    let cache = EntryCache::default();
    let snapshot = cache.insert(EntriesGeneration::from_number(1), entries);

    let before = snapshot.authorized(&agent_id(), &[], NOW);
    let just_before = snapshot.authorized(&agent_id(), &[], expires_at - 1);
    let at_expiry = snapshot.authorized(&agent_id(), &[], expires_at);

    assert_eq!(ids(&before), ["parent", "child", "other"]);
    assert_eq!(ids(&just_before), ["parent", "child", "other"]);
    assert_eq!(ids(&at_expiry), ["other"]);
}

#[test]
fn clock_going_back_recomputes() {
    let entries = vec![entry(
        "old",
        "spiffe://example.org/o",
        AGENT,
        &["unix:uid:1"],
        NOW,
    )];
    let cache = EntryCache::default();
    let snapshot = cache.insert(EntriesGeneration::from_number(1), entries);

    let after_expiry = snapshot.authorized(&agent_id(), &[], NOW);
    let earlier = snapshot.authorized(&agent_id(), &[], NOW - 1);

    assert!(after_expiry.is_empty());
    assert_eq!(ids(&earlier), ["old"]);
}

#[test]
fn changed_node_selectors_recompute() {
    let entries = vec![
        entry(
            "alias",
            "spiffe://example.org/nodes/a",
            SERVER,
            &["unix:gid:7"],
            0,
        ),
        entry(
            "workload",
            "spiffe://example.org/w",
            "spiffe://example.org/nodes/a",
            &["unix:uid:1"],
            0,
        ),
    ];
    let cache = EntryCache::default();
    let snapshot = cache.insert(EntriesGeneration::from_number(1), entries);

    let matching = snapshot.authorized(&agent_id(), &[selector("unix:gid:7")], NOW);
    let reattested = snapshot.authorized(&agent_id(), &[selector("unix:gid:8")], NOW);

    assert_eq!(ids(&matching), ["alias", "workload"]);
    assert!(reattested.is_empty());
}

#[test]
fn find_returns_only_authorized_entries() {
    let entries = vec![
        entry("mine", "spiffe://example.org/m", AGENT, &["unix:uid:1"], 0),
        entry(
            "theirs",
            "spiffe://example.org/t",
            SERVER,
            &["unix:gid:9"],
            0,
        ),
    ];
    let cache = EntryCache::default();
    let snapshot = cache.insert(EntriesGeneration::from_number(1), entries);

    let authorized = snapshot.authorized(&agent_id(), &[], NOW);

    assert_eq!(authorized.find("mine").map(|e| e.id.as_str()), Some("mine"));
    assert!(authorized.find("theirs").is_none());
    assert!(authorized.find("missing").is_none());
    assert_eq!(authorized.len(), 1);
}

#[test]
fn results_stay_within_agent_bound() {
    let entries = vec![entry(
        "mine",
        "spiffe://example.org/m",
        AGENT,
        &["unix:uid:1"],
        0,
    )];
    let cache = EntryCache::default();
    let snapshot = cache.insert(EntriesGeneration::from_number(1), entries);

    for number in 0..=MAX_CACHED_AGENTS {
        let agent = SpiffeId::new(format!("spiffe://example.org/spire/agent/x/{number}")).unwrap();
        snapshot.authorized(&agent, &[], NOW);
    }

    let results = lock(&snapshot.agents);
    assert!(results.by_agent.len() <= MAX_CACHED_AGENTS);
    assert_eq!(results.positions, 0);
}
