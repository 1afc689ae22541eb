use std::process::{Command, Stdio};

use nix::unistd::{Gid, Group};
use sha2::{Digest, Sha256};
use tokio::net::UnixListener;

use super::*;

/// Environment variable that turns [`connect_and_exit`] into a real helper process.
const CONNECT_TO: &str = "SIGNET_TEST_CONNECT_TO";

fn selector(text: &str) -> Selector {
    Selector::parse(text).unwrap()
}

fn own_peer() -> (PeerProcess, UnixStream) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    theirs.set_nonblocking(true).unwrap();
    let ours = UnixStream::from_std(ours).unwrap();
    let peer = PeerProcess::from_stream(&ours).unwrap();
    (peer, UnixStream::from_std(theirs).unwrap())
}

/// Returns whether the running kernel is Linux 6.5 or later, which added `SO_PEERPIDFD`.
fn kernel_has_peer_pidfd() -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = numbers.next().unwrap().parse().unwrap();
    let minor: u32 = numbers.next().unwrap().parse().unwrap();
    (major, minor) >= (6, 5)
}

fn expected_own_selectors() -> Vec<Selector> {
    let exe = std::env::current_exe().unwrap();
    let digest = hex::encode(Sha256::digest(fs::read(&exe).unwrap()));
    vec![
        selector(&format!("unix:uid:{}", nix::unistd::geteuid())),
        selector(&format!("unix:gid:{}", nix::unistd::getegid())),
        selector(&format!("unix:path:{}", exe.display())),
        selector(&format!("unix:sha256:{digest}")),
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn attests_own_process() {
    let (peer, _other_end) = own_peer();
    assert_eq!(peer.pid, i32::try_from(std::process::id()).unwrap());
    if kernel_has_peer_pidfd() {
        assert!(peer.pidfd.is_some());
    }

    let selectors = UnixAttestor::new().attest(&peer).unwrap();

    for expected in expected_own_selectors() {
        assert!(
            selectors.contains(&expected),
            "{expected} missing from {selectors:?}"
        );
    }
    for gid in nix::unistd::getgroups().unwrap() {
        let expected = selector(&format!("unix:supplementary_gid:{gid}"));
        assert!(
            selectors.contains(&expected),
            "{expected} missing from {selectors:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn attests_own_process_without_pidfd() {
    let (mut peer, _other_end) = own_peer();
    peer.pidfd = None;

    let selectors = UnixAttestor::new().attest(&peer).unwrap();

    for expected in expected_own_selectors() {
        assert!(
            selectors.contains(&expected),
            "{expected} missing from {selectors:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn names_user_and_group_when_known() {
    let (peer, _other_end) = own_peer();
    let selectors = UnixAttestor::new().attest(&peer).unwrap();

    if let Some(user) = User::from_uid(Uid::from_raw(peer.uid)).unwrap() {
        assert!(selectors.contains(&selector(&format!("unix:user:{}", user.name))));
    }
    if let Some(group) = Group::from_gid(Gid::from_raw(peer.gid)).unwrap() {
        assert!(selectors.contains(&selector(&format!("unix:group:{}", group.name))));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn pid_attestation_matches_connection_attestation() {
    let (peer, _other_end) = own_peer();
    let attestor = UnixAttestor::new();

    let by_pid = PeerProcess::from_pid(peer.pid).unwrap();

    assert_eq!((by_pid.uid, by_pid.gid), (peer.uid, peer.gid));
    assert_eq!(
        attestor.attest(&by_pid).unwrap(),
        attestor.attest(&peer).unwrap()
    );
}

#[test]
fn pid_without_process_is_exited() {
    let error = PeerProcess::from_pid(i32::MAX).unwrap_err();

    assert!(
        matches!(error, AttestationError::ProcessExited),
        "{error:?}"
    );
}

#[test]
fn account_selectors_follow_user_database() {
    let uid = nix::unistd::getuid();

    let selectors = account_selectors(uid.as_raw()).unwrap();

    assert_eq!(selectors[0], selector(&format!("unix:uid:{uid}")));
    if let Some(user) = User::from_uid(uid).unwrap() {
        assert!(selectors.contains(&selector(&format!("unix:user:{}", user.name))));
        assert!(selectors.contains(&selector(&format!("unix:gid:{}", user.gid))));
    }
}

#[test]
fn account_selectors_of_unknown_uid_are_uid_only() {
    // No account database assigns the highest uid, which the kernel reserves as "no uid".
    let selectors = account_selectors(u32::MAX).unwrap();

    assert_eq!(selectors, [selector("unix:uid:4294967295")]);
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_changed_credentials() {
    let (mut peer, _other_end) = own_peer();
    peer.uid = peer.uid.wrapping_add(1);

    let error = UnixAttestor::new().attest(&peer).unwrap_err();

    assert!(
        matches!(error, AttestationError::CredentialsChanged { .. }),
        "{error:?}"
    );
}

#[test]
fn start_time_change_means_replaced() {
    let pid = i32::try_from(std::process::id()).unwrap();
    let started = procfs::read_start_time(pid).unwrap();

    let error = Liveness::StartTime(started + 1).confirm(pid).unwrap_err();

    assert!(
        matches!(error, AttestationError::ProcessReplaced),
        "{error:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_process_that_exited() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("peer.sock");
    let listener = UnixListener::bind(&socket).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "workload_attestor::tests::connect_and_exit",
            "--ignored",
        ])
        .env(CONNECT_TO, &socket)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let peer = PeerProcess::from_stream(&stream).unwrap();
    drop(stream);
    assert!(child.wait().unwrap().success());

    let attestor = UnixAttestor::new();
    let error = attestor.attest(&peer).unwrap_err();
    assert!(
        matches!(error, AttestationError::ProcessExited),
        "{error:?}"
    );

    let error = attestor
        .attest(&PeerProcess {
            pidfd: None,
            ..peer
        })
        .unwrap_err();
    assert!(
        matches!(error, AttestationError::ProcessExited),
        "{error:?}"
    );
}

/// Connects to the socket named by [`CONNECT_TO`] and exits once the other end closes it. Only
/// `rejects_process_that_exited` runs this, as a child process.
#[test]
#[ignore = "helper process for rejects_process_that_exited"]
fn connect_and_exit() {
    if let Some(path) = std::env::var_os(CONNECT_TO) {
        let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        let mut received = Vec::new();
        io::Read::read_to_end(&mut stream, &mut received).unwrap();
    }
}

#[test]
fn proc_shows_agent_namespace() {
    check_proc_namespace().unwrap();
}
