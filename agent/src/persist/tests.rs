use std::fs::{self, Permissions};

use signet_core::fs::write_atomic;
use signet_core::selector::Selector;

use super::*;
use crate::cache::{Identity, JwtAuthority, X509SvidMaterial};
use crate::svid::PendingSvid;
use crate::test_util::TestCa;

const AGENT_ID: &str = "spiffe://example.org/spire/agent/join_token/abc";
const WEB_ID: &str = "spiffe://example.org/web";
const HOUR: Duration = Duration::from_secs(3600);

fn agent_id() -> SpiffeId {
    SpiffeId::new(AGENT_ID).unwrap()
}

fn trust_domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

/// Signs an X509-SVID for `spiffe_id` valid from `not_before` for an hour.
fn svid(ca: &TestCa, spiffe_id: &str, not_before: SystemTime) -> Arc<X509SvidMaterial> {
    let spiffe_id = SpiffeId::new(spiffe_id).unwrap();
    let pending = PendingSvid::generate(&spiffe_id).unwrap();
    let chain = ca.sign_csr(pending.csr_der(), &spiffe_id, not_before, HOUR);
    Arc::new(pending.complete(chain).unwrap())
}

fn identity(entry_id: &str, spiffe_id: &str, svid: Option<Arc<X509SvidMaterial>>) -> Identity {
    Identity {
        entry_id: entry_id.to_owned(),
        spiffe_id: SpiffeId::new(spiffe_id).unwrap().into(),
        selectors: vec![Selector::parse("unix:uid:1000").unwrap()],
        hint: "frontend".to_owned(),
        svid,
        expanded_svids: std::collections::BTreeMap::new(),
    }
}

fn snapshot(ca: &TestCa, identities: Vec<Identity>) -> Snapshot {
    Snapshot {
        trust_domain: trust_domain(),
        bundle: ca.bundle(),
        jwt_authorities: vec![JwtAuthority {
            key_id: "key-1".to_owned(),
            public_key_der: vec![1, 2, 3],
            expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)),
            tainted: true,
        }],
        identities,
        revision: 7,
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & PERMISSION_BITS
}

#[test]
fn saved_snapshot_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let now = SystemTime::now();
    let web = svid(&ca, WEB_ID, now - Duration::from_secs(60));
    let identities = vec![
        identity("web", WEB_ID, Some(Arc::clone(&web))),
        identity("db", "spiffe://example.org/db", None),
    ];
    let store = WorkloadStore::new(dir.path(), &agent_id());

    store.save(&snapshot(&ca, identities)).unwrap();
    let loaded = store.load(now).unwrap().unwrap();

    assert_eq!(loaded.trust_domain, trust_domain());
    assert_eq!(loaded.bundle, ca.bundle());
    assert_eq!(
        loaded.jwt_authorities,
        snapshot(&ca, Vec::new()).jwt_authorities
    );
    let entry_ids: Vec<_> = loaded
        .identities
        .iter()
        .map(|identity| identity.entry_id.as_str())
        .collect();
    assert_eq!(entry_ids, ["web", "db"]);
    let loaded_web = &loaded.identities[0];
    assert_eq!(loaded_web.spiffe_id.to_string(), WEB_ID);
    assert_eq!(
        loaded_web.selectors,
        identity("web", WEB_ID, None).selectors
    );
    assert_eq!(loaded_web.hint, "frontend");
    let loaded_svid = loaded_web.svid.as_ref().unwrap();
    assert_eq!(loaded_svid.chain, web.chain);
    assert_eq!(*loaded_svid.private_key_pkcs8, *web.private_key_pkcs8);
    assert_eq!(loaded_svid.expires_at, web.expires_at);
    assert!(loaded.identities[1].svid.is_none());
}

#[test]
fn file_stores_der_as_standard_base64() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    let ca = TestCa::new();
    let web = svid(&ca, WEB_ID, SystemTime::now());
    let identities = vec![identity("web", WEB_ID, Some(Arc::clone(&web)))];

    let contents = format::encode(AGENT_ID, &snapshot(&ca, identities)).unwrap();

    let json: serde_json::Value = serde_json::from_slice(&contents).unwrap();
    let stored = &json["identities"][0]["svid"];
    assert_eq!(stored["chain"][0], STANDARD.encode(&web.chain[0]));
    assert_eq!(
        stored["private_key"],
        STANDARD.encode(web.private_key_pkcs8.as_slice())
    );
    assert_eq!(json["bundle"][0], STANDARD.encode(&ca.bundle()[0]));
    assert_eq!(
        json["jwt_authorities"][0]["public_key"],
        STANDARD.encode([1, 2, 3])
    );
}

#[test]
fn missing_file_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = WorkloadStore::new(dir.path(), &agent_id());
    assert!(store.load(SystemTime::now()).unwrap().is_none());
}

#[test]
fn saved_file_has_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let store = WorkloadStore::new(dir.path(), &agent_id());

    store.save(&snapshot(&ca, Vec::new())).unwrap();

    assert_eq!(mode(&dir.path().join(CACHE_FILE)), 0o600);
}

#[test]
fn file_readable_by_others_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let store = WorkloadStore::new(dir.path(), &agent_id());
    store.save(&snapshot(&ca, Vec::new())).unwrap();
    let path = dir.path().join(CACHE_FILE);

    for shared_mode in [0o640, 0o604, 0o660] {
        fs::set_permissions(&path, Permissions::from_mode(shared_mode)).unwrap();
        let error = store.load(SystemTime::now()).unwrap_err();
        assert!(error.is_insecure(), "mode {shared_mode:o}: {error:?}");
    }
}

#[test]
fn expired_svids_and_jwt_authorities_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let now = SystemTime::now();
    let mut stored = snapshot(
        &ca,
        vec![
            identity("old", WEB_ID, Some(svid(&ca, WEB_ID, now - 2 * HOUR))),
            identity("new", WEB_ID, Some(svid(&ca, WEB_ID, now - HOUR / 2))),
        ],
    );
    stored.jwt_authorities[0].expires_at = Some(now - Duration::from_secs(1));
    let store = WorkloadStore::new(dir.path(), &agent_id());

    store.save(&stored).unwrap();
    let loaded = store.load(now).unwrap().unwrap();

    assert!(loaded.identities[0].svid.is_none(), "expired SVID kept");
    assert!(loaded.identities[1].svid.is_some(), "valid SVID dropped");
    assert!(loaded.jwt_authorities.is_empty(), "expired JWT key kept");
}

#[test]
fn file_of_another_agent_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    WorkloadStore::new(dir.path(), &agent_id())
        .save(&snapshot(&ca, Vec::new()))
        .unwrap();

    let other_agent = SpiffeId::new("spiffe://example.org/spire/agent/join_token/xyz").unwrap();
    let loaded = WorkloadStore::new(dir.path(), &other_agent)
        .load(SystemTime::now())
        .unwrap();

    assert!(loaded.is_none());
}

#[test]
fn svid_with_wrong_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let now = SystemTime::now();
    let web = svid(&ca, WEB_ID, now);
    let other = svid(&ca, WEB_ID, now);
    let mismatched = Arc::new(X509SvidMaterial {
        chain: web.chain.clone(),
        private_key_pkcs8: other.private_key_pkcs8.clone(),
        expires_at: web.expires_at,
    });
    let store = WorkloadStore::new(dir.path(), &agent_id());
    store
        .save(&snapshot(
            &ca,
            vec![identity("web", WEB_ID, Some(mismatched))],
        ))
        .unwrap();

    let error = store.load(now).unwrap_err();

    assert!(matches!(error, PersistError::Invalid { .. }), "{error:?}");
}

#[test]
fn svid_for_another_spiffe_id_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let now = SystemTime::now();
    let db = svid(&ca, "spiffe://example.org/db", now);
    let store = WorkloadStore::new(dir.path(), &agent_id());
    store
        .save(&snapshot(&ca, vec![identity("web", WEB_ID, Some(db))]))
        .unwrap();

    let error = store.load(now).unwrap_err();

    assert!(matches!(error, PersistError::Invalid { .. }), "{error:?}");
}

#[test]
fn malformed_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CACHE_FILE);
    let store = WorkloadStore::new(dir.path(), &agent_id());
    let cases: [(&str, &[u8]); 4] = [
        ("not JSON", b"{"),
        ("unknown key", br#"{"version":1,"surprise":true}"#),
        (
            "other version",
            br#"{"version":2,"agent_id":"a","trust_domain":"example.org","bundle":[],"jwt_authorities":[],"identities":[]}"#,
        ),
        (
            "empty bundle",
            br#"{"version":1,"agent_id":"spiffe://example.org/spire/agent/join_token/sha256:ba7816bf8f01","trust_domain":"example.org","bundle":[],"jwt_authorities":[],"identities":[]}"#,
        ),
    ];
    for (name, contents) in cases {
        write_atomic(&path, contents, 0o600).unwrap();
        let result = store.load(SystemTime::now());
        assert!(
            matches!(result, Err(PersistError::Invalid { .. })),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn store_debug_hides_join_token() {
    let printed = format!("{:?}", WorkloadStore::new(Path::new("/data"), &agent_id()));
    assert!(!printed.contains("/abc"), "join token in {printed}");
    assert!(printed.contains("workload_cache.json"), "{printed}");
}

#[test]
fn remove_reports_whether_a_file_existed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    WorkloadStore::new(dir.path(), &agent_id())
        .save(&snapshot(&ca, Vec::new()))
        .unwrap();

    assert!(WorkloadStore::remove(dir.path()).unwrap());
    assert!(!dir.path().join(CACHE_FILE).exists());
    assert!(!WorkloadStore::remove(dir.path()).unwrap());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn writer_coalesces_changes_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let store = WorkloadStore::new(dir.path(), &agent_id());
    let cache = Cache::new(trust_domain());
    let writer = tokio::spawn({
        let store = store.clone();
        let cache = cache.clone();
        async move { store.keep_saved(&cache).await }
    });
    let with_entries = |count: usize| {
        let identities = (0..count)
            .map(|index| identity(&format!("entry-{index}"), WEB_ID, None))
            .collect();
        snapshot(&ca, identities)
    };

    // Let the writer subscribe before the first change.
    tokio::task::yield_now().await;

    cache.publish(with_entries(1));
    wait_for_stored_entries(&store, 1).await;
    cache.publish(with_entries(2));
    cache.publish(with_entries(3));
    tokio::time::sleep(MIN_WRITE_INTERVAL / 2).await;
    assert_eq!(
        stored_entries(&store),
        Some(1),
        "written before the interval"
    );
    tokio::time::sleep(MIN_WRITE_INTERVAL / 2).await;
    wait_for_stored_entries(&store, 3).await;

    writer.abort();
}

fn stored_entries(store: &WorkloadStore) -> Option<usize> {
    let snapshot = store.load(SystemTime::now()).unwrap()?;
    Some(snapshot.identities.len())
}

/// Polls the file until it contains `count` entries, for at most 10 s of real time.
///
/// The write runs on a blocking thread in real time, so this waits in real time too: paused
/// tokio time would jump ahead instead of letting the write finish.
async fn wait_for_stored_entries(store: &WorkloadStore, count: usize) {
    for _ in 0..1000 {
        if stored_entries(store) == Some(count) {
            return;
        }
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the file never contained {count} entries");
}
