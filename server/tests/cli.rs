//! The `signet-server` binary: config errors, operator commands against a running server, and
//! shutdown on SIGTERM.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test on any error"
)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_signet-server");
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `signet-server run` process in a temporary directory, killed on drop.
struct ServerProcess {
    dir: tempfile::TempDir,
    admin_socket: PathBuf,
    child: Child,
}

impl ServerProcess {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin_socket = dir.path().join("admin").join("api.sock");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(BINARY)
            .args(["run", "--trust-domain", "example.org", "--bind-address"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--admin-socket")
            .arg(&admin_socket)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = Self {
            dir,
            admin_socket,
            child,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        while UnixStream::connect(&server.admin_socket).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "server did not start within {START_TIMEOUT:?}:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BINARY)
            .args(args)
            .arg("--admin-socket")
            .arg(&self.admin_socket)
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn entry_count(server: &ServerProcess) -> String {
    stdout(&server.cli(&["entry", "count"])).trim().to_owned()
}

#[test]
fn invalid_config_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "trust_domain = \"example.org\"\nbind_adress = \"x\"\n",
    )
    .unwrap();

    let unknown_key = Command::new(BINARY)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(unknown_key.status.code(), Some(64));
    assert!(
        stderr(&unknown_key).contains("bind_adress"),
        "{}",
        stderr(&unknown_key)
    );

    let missing_trust_domain = Command::new(BINARY).arg("run").output().unwrap();
    assert_eq!(missing_trust_domain.status.code(), Some(64));
    assert!(stderr(&missing_trust_domain).contains("trust_domain"));
}

#[test]
fn token_and_entry_commands_work() {
    let server = ServerProcess::start();

    let token = server.cli(&["token", "generate"]);
    assert!(token.status.success(), "{}", stderr(&token));
    let token = stdout(&token);
    let token = token.trim().strip_prefix("Token: ").unwrap();
    assert!(!token.is_empty());

    let parent = format!("spiffe://example.org/spire/agent/join_token/{token}");
    let create = server.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/web",
        "--parent-id",
        &parent,
        "--selector",
        "unix:uid:1000",
        "--x509-svid-ttl",
        "600",
    ]);
    assert!(create.status.success(), "{}", stderr(&create));
    assert!(stdout(&create).contains("SPIFFE ID        : spiffe://example.org/web"));

    let show = server.cli(&["entry", "show", "--spiffe-id", "spiffe://example.org/web"]);
    assert!(
        stdout(&show).starts_with("Found 1 entry\n"),
        "{}",
        stdout(&show)
    );
    assert!(stdout(&show).contains("Selector         : unix:uid:1000"));
    assert!(stdout(&show).contains("X509-SVID TTL    : 600"));
    assert_eq!(entry_count(&server), "1 registration entry");

    assert!(
        !server.log().contains(token),
        "the server log contains the join token"
    );
}

#[test]
fn bad_entry_input_is_rejected_and_not_stored() {
    let server = ServerProcess::start();
    let parent = "spiffe://example.org/spire/agent/join_token/abc";
    let create = |spiffe_id: &str, parent_id: &str, selector: &str, ttl: &str| {
        server.cli(&[
            "entry",
            "create",
            "--spiffe-id",
            spiffe_id,
            "--parent-id",
            parent_id,
            "--selector",
            selector,
            "--x509-svid-ttl",
            ttl,
        ])
    };
    assert!(
        create("spiffe://example.org/web", parent, "unix:uid:1", "60")
            .status
            .success()
    );

    let cases = [
        (
            "invalid SPIFFE ID",
            create("spiffe://example.org/a b", parent, "unix:uid:1", "60"),
            "a b",
        ),
        (
            "unknown selector type",
            create("spiffe://example.org/x", parent, "foo:bar", "60"),
            "foo",
        ),
        (
            "TTL overflow",
            create(
                "spiffe://example.org/x",
                parent,
                "unix:uid:1",
                "99999999999",
            ),
            "99999999999",
        ),
        (
            "duplicate entry",
            create("spiffe://example.org/web", parent, "unix:uid:1", "60"),
            "already exists",
        ),
        (
            "foreign parent",
            create(
                "spiffe://example.org/x",
                "spiffe://other.org/agent",
                "unix:uid:1",
                "60",
            ),
            "other.org",
        ),
    ];
    for (name, output, expected) in cases {
        assert_eq!(output.status.code(), Some(1), "{name}");
        let message = stderr(&output);
        assert_eq!(message.trim_end().lines().count(), 1, "{name}: {message}");
        assert!(message.contains(expected), "{name}: {message}");
    }
    assert_eq!(entry_count(&server), "1 registration entry");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = ServerProcess::start();

    let kill = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop within {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(!Path::new(&server.admin_socket).exists());
    assert!(server.log().contains("Server stopped"));
}
