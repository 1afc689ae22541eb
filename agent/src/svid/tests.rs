use super::*;
use crate::test_util::TestCa;

const HOUR: Duration = Duration::from_secs(3600);

fn workload_id() -> SpiffeId {
    SpiffeId::new("spiffe://example.org/workload").unwrap()
}

/// Returns a whole second so certificate times compare exactly.
fn start() -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs()) - Duration::from_secs(60)
}

#[test]
fn complete_accepts_chain_for_own_key() {
    let ca = TestCa::new();
    let pending = PendingSvid::generate(&workload_id()).unwrap();
    let chain = ca.sign_csr(pending.csr_der(), &workload_id(), start(), HOUR);

    let material = pending.complete(chain.clone()).unwrap();

    assert_eq!(material.chain.len(), 1);
    assert_eq!(material.chain[0].as_ref(), chain[0].as_slice());
    assert_eq!(material.expires_at, start() + HOUR);
    assert!(KeyPair::try_from(material.private_key_pkcs8.as_slice()).is_ok());
}

#[test]
fn complete_keeps_no_spare_chain_capacity() {
    let ca = TestCa::new();
    let pending = PendingSvid::generate(&workload_id()).unwrap();
    let mut chain = Vec::with_capacity(4);
    chain.extend(ca.sign_csr(pending.csr_der(), &workload_id(), start(), HOUR));

    let material = pending.complete(chain).unwrap();

    assert_eq!(material.chain.capacity(), material.chain.len());
}

#[test]
fn complete_rejects_other_spiffe_id() {
    let ca = TestCa::new();
    let pending = PendingSvid::generate(&workload_id()).unwrap();
    let other = SpiffeId::new("spiffe://example.org/other").unwrap();
    let chain = ca.sign_csr(pending.csr_der(), &other, start(), HOUR);

    let result = pending.complete(chain);

    assert!(
        matches!(
            result,
            Err(SvidError::WrongIdentity(
                SpiffeIdCheckError::Mismatch { .. }
            ))
        ),
        "{result:?}"
    );
}

#[test]
fn complete_rejects_other_key() {
    let ca = TestCa::new();
    let pending = PendingSvid::generate(&workload_id()).unwrap();
    let stranger = PendingSvid::generate(&workload_id()).unwrap();
    let chain = ca.sign_csr(stranger.csr_der(), &workload_id(), start(), HOUR);

    let result = pending.complete(chain);

    assert!(
        matches!(result, Err(SvidError::KeyMismatch(_))),
        "{result:?}"
    );
}

#[test]
fn complete_rejects_empty_chain() {
    let pending = PendingSvid::generate(&workload_id()).unwrap();
    assert!(matches!(
        pending.complete(Vec::new()),
        Err(SvidError::EmptyChain(_))
    ));
}

#[test]
fn complete_rejects_garbage_leaf() {
    let pending = PendingSvid::generate(&workload_id()).unwrap();
    let result = pending.complete(vec![vec![0x30, 0x01, 0x00]]);
    assert!(
        matches!(
            result,
            Err(SvidError::WrongIdentity(SpiffeIdCheckError::Malformed))
        ),
        "{result:?}"
    );
}

#[test]
fn refresh_at_is_within_a_tenth_before_half_life() {
    let ca = TestCa::new();
    let pending = PendingSvid::generate(&workload_id()).unwrap();
    let chain = ca.sign_csr(pending.csr_der(), &workload_id(), start(), HOUR);
    let material = pending.complete(chain).unwrap();
    let earliest = start() + HOUR * 2 / 5;
    let latest = start() + HOUR / 2;
    let later = start() + Duration::from_secs(60);

    let mut times = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let plain = refresh_at(&material);
        let not_cut = refresh_at_after_renewal(&material, None, later);
        let other_expiry = refresh_at_after_renewal(&material, Some(start()), later);
        for time in [plain, not_cut, other_expiry] {
            assert!(time >= earliest, "{time:?} is before 40 % of the lifetime");
            assert!(time <= latest, "{time:?} is after half the lifetime");
        }
        times.insert(plain);
    }
    // SVIDs signed together must not all renew at the same instant.
    assert!(times.len() > 100, "only {} distinct times", times.len());
}

#[test]
fn renewal_cut_at_ca_expiry_waits_for_half_the_remaining_time_or_30_seconds() {
    let ca = TestCa::new();
    let pending = PendingSvid::generate(&workload_id()).unwrap();
    let chain = ca.sign_csr(pending.csr_der(), &workload_id(), start(), HOUR);
    let material = pending.complete(chain).unwrap();
    let expiry = Some(material.expires_at);
    let seconds_before_expiry = |seconds| material.expires_at - Duration::from_secs(seconds);

    // 20 minutes left: renew after 10 minutes, the midpoint of the remaining time.
    let now = seconds_before_expiry(1200);
    assert_eq!(
        refresh_at_after_renewal(&material, expiry, now),
        now + Duration::from_secs(600)
    );
    // 40 seconds left: the midpoint is 20 s away, so wait the minimum of 30 s.
    let now = seconds_before_expiry(40);
    assert_eq!(
        refresh_at_after_renewal(&material, expiry, now),
        now + CUT_RENEWAL_MIN_WAIT
    );
    // 10 seconds left: renew just before expiry instead of every second.
    let now = seconds_before_expiry(10);
    assert_eq!(
        refresh_at_after_renewal(&material, expiry, now),
        seconds_before_expiry(1)
    );
}

#[test]
fn pending_svid_debug_hides_key() {
    let pending = PendingSvid::generate(&workload_id()).unwrap();
    let printed = format!("{pending:?}");
    assert!(printed.contains("spiffe://example.org/workload"));
    assert!(!printed.contains("key"));
}

#[test]
fn pending_agent_svid_debug_hides_join_token() {
    let agent_id = SpiffeId::new("spiffe://example.org/spire/agent/join_token/s3cr3t").unwrap();
    let pending = PendingSvid::generate(&agent_id).unwrap();
    assert!(!format!("{pending:?}").contains("s3cr3t"));
}

#[test]
fn wrong_agent_svid_error_hides_join_token() {
    let ca = TestCa::new();
    let agent_id = SpiffeId::new("spiffe://example.org/spire/agent/join_token/s3cr3t").unwrap();
    let pending = PendingSvid::generate(&agent_id).unwrap();
    let chain = ca.sign_csr(pending.csr_der(), &workload_id(), start(), HOUR);

    let error = pending.complete(chain).unwrap_err();

    let chain_text = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(!chain_text.contains("s3cr3t"), "{chain_text}");
}
