use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::*;
use crate::svid::PendingSvid;
use crate::test_util::TestCa;

const AGENT_ID: &str = "spiffe://example.org/spire/agent/join_token/abc";

fn agent_svid(ca: &TestCa) -> X509SvidMaterial {
    let agent_id = SpiffeId::new(AGENT_ID).unwrap();
    let pending = PendingSvid::generate(&agent_id).unwrap();
    let chain = ca.sign_csr(
        pending.csr_der(),
        &agent_id,
        SystemTime::now() - Duration::from_secs(60),
        Duration::from_secs(3600),
    );
    pending.complete(chain).unwrap()
}

#[test]
fn load_returns_none_for_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load(dir.path()).unwrap().is_none());
}

#[test]
fn saved_state_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let svid = agent_svid(&ca);
    save_bundle(dir.path(), &ca.bundle()).unwrap();
    save_svid(dir.path(), &svid).unwrap();

    let state = load(dir.path()).unwrap().unwrap();

    assert_eq!(state.agent_id.to_string(), AGENT_ID);
    assert_eq!(state.bundle, ca.bundle());
    assert_eq!(state.svid.chain, svid.chain);
    assert_eq!(*state.svid.private_key_pkcs8, *svid.private_key_pkcs8);
    assert_eq!(state.svid.expires_at, svid.expires_at);
}

#[test]
fn key_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    save_svid(dir.path(), &agent_svid(&ca)).unwrap();
    let mode = std::fs::metadata(dir.path().join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn chain_with_two_certificates_round_trips() {
    let ca = TestCa::new();
    let svid = agent_svid(&ca);
    let mut chain = svid.chain.clone();
    chain.extend(ca.bundle());
    assert_eq!(split_certificates(&concatenate(&chain)).unwrap(), chain);
}

#[test]
fn partial_state_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    save_svid(dir.path(), &agent_svid(&ca)).unwrap();
    assert!(matches!(
        load(dir.path()),
        Err(NodeError::InvalidStore { .. })
    ));
}

#[test]
fn key_of_other_svid_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    save_bundle(dir.path(), &ca.bundle()).unwrap();
    save_svid(dir.path(), &agent_svid(&ca)).unwrap();
    let other = agent_svid(&ca);
    std::fs::write(dir.path().join(KEY_FILE), &*other.private_key_pkcs8).unwrap();

    assert!(matches!(
        load(dir.path()),
        Err(NodeError::InvalidStore { .. })
    ));
}

#[test]
fn interrupted_renewal_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    save_bundle(dir.path(), &ca.bundle()).unwrap();
    save_svid(dir.path(), &agent_svid(&ca)).unwrap();
    let renewed = agent_svid(&ca);
    // The state a crash leaves after the chain write and before the key rename.
    write_secret(&dir.path().join(NEXT_KEY_FILE), &renewed.private_key_pkcs8).unwrap();
    std::fs::write(dir.path().join(SVID_FILE), concatenate(&renewed.chain)).unwrap();

    let state = load(dir.path()).unwrap().unwrap();

    assert_eq!(state.svid.chain, renewed.chain);
    assert!(!dir.path().join(NEXT_KEY_FILE).exists());
    let key = std::fs::read(dir.path().join(KEY_FILE)).unwrap();
    assert_eq!(key, *renewed.private_key_pkcs8);
}

#[test]
fn interrupted_renewal_keeps_old_svid() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let current = agent_svid(&ca);
    save_bundle(dir.path(), &ca.bundle()).unwrap();
    save_svid(dir.path(), &current).unwrap();
    let renewed = agent_svid(&ca);
    write_secret(&dir.path().join(NEXT_KEY_FILE), &renewed.private_key_pkcs8).unwrap();

    let state = load(dir.path()).unwrap().unwrap();

    assert_eq!(state.svid.chain, current.chain);
}

#[test]
fn malformed_bundle_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    save_svid(dir.path(), &agent_svid(&ca)).unwrap();
    std::fs::write(dir.path().join(BUNDLE_FILE), b"garbage").unwrap();
    assert!(matches!(
        load(dir.path()),
        Err(NodeError::InvalidStore { .. })
    ));
}

#[test]
fn key_file_open_to_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    save_bundle(dir.path(), &ca.bundle()).unwrap();
    save_svid(dir.path(), &agent_svid(&ca)).unwrap();
    let key_path = dir.path().join(KEY_FILE);
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let error = load(dir.path()).unwrap_err();

    assert!(
        matches!(&error, NodeError::InsecureKeyFile { path, mode: 0o644 } if path == &key_path),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("mode 0644"), "{message}");
    assert!(
        message.contains(&format!("chmod 600 {}", key_path.display())),
        "{message}"
    );
}
