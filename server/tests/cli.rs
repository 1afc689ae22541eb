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
        Self::start_with(|command, admin_socket| {
            command.arg("--admin-socket").arg(admin_socket);
        })
    }

    /// Starts the server, with `set_admin_socket` passing the admin socket path to the command.
    fn start_with(set_admin_socket: impl FnOnce(&mut Command, &Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin_socket = dir.path().join("admin").join("api.sock");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut command = Command::new(BINARY);
        command
            .args(["run", "--trust-domain", "example.org", "--bind-address"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("SIGNET_SERVER_ADMIN_SOCKET")
            .stdout(Stdio::null())
            .stderr(log);
        set_admin_socket(&mut command, &admin_socket);
        let child = command.spawn().unwrap();
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

    let missing_file = Command::new(BINARY)
        .arg("run")
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(missing_file.status.code(), Some(64));
    assert!(
        stderr(&missing_file).contains("No such file or directory"),
        "{}",
        stderr(&missing_file)
    );
}

#[test]
fn run_reads_admin_socket_from_environment() {
    // The config file names another socket, so a server that ignored the variable would listen
    // there, and never on the default socket of this machine.
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("server.toml");
    let file_socket = config_dir.path().join("file.sock");
    std::fs::write(
        &config,
        format!("admin_socket = \"{}\"\n", file_socket.display()),
    )
    .unwrap();

    let server = ServerProcess::start_with(|command, admin_socket| {
        command
            .arg("--config")
            .arg(&config)
            .env("SIGNET_SERVER_ADMIN_SOCKET", admin_socket);
    });

    assert!(server.cli(&["healthcheck"]).status.success());
    assert!(!file_socket.exists());
}

#[test]
fn negative_numbers_name_their_flag() {
    let server = ServerProcess::start();
    let parent = "spiffe://example.org/spire/agent/join_token/abc";
    let create = |flag: &str| {
        server.cli(&[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/web",
            "--parent-id",
            parent,
            "--selector",
            "unix:uid:1",
            flag,
            "-5",
        ])
    };

    let cases = [
        (
            "--x509-svid-ttl",
            create("--x509-svid-ttl"),
            "--x509-svid-ttl",
        ),
        ("--jwt-svid-ttl", create("--jwt-svid-ttl"), "--jwt-svid-ttl"),
        ("--entry-expiry", create("--entry-expiry"), "expires_at -5"),
        (
            "token --ttl",
            server.cli(&["token", "generate", "--ttl", "-5"]),
            "--ttl",
        ),
    ];
    for (name, output, expected) in cases {
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {message}");
        assert!(message.contains(expected), "{name}: {message}");
        assert!(message.contains("-5"), "{name}: {message}");
    }
    assert_eq!(entry_count(&server), "0 registration entries");
}

#[test]
fn unusable_entry_fields_are_rejected() {
    let server = ServerProcess::start();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/web",
            "--parent-id",
            "spiffe://example.org/spire/agent/join_token/abc",
            "--selector",
            "unix:uid:1",
        ];
        args.extend_from_slice(extra);
        server.cli(&args)
    };

    let cases = [
        (
            "expiry after year 9999",
            create(&["--entry-expiry", "99999999999999999"]),
            "99999999999999999",
        ),
        (
            "expiry in the past",
            create(&["--entry-expiry", "1"]),
            "already in the past",
        ),
        (
            "duplicate selector",
            create(&["--selector", "unix:uid:1"]),
            "duplicate selector \"unix:uid:1\"",
        ),
        (
            "store_svid",
            create(&["--store-svid"]),
            "store_svid is not supported yet",
        ),
        ("admin", create(&["--admin"]), "admin is not supported yet"),
        (
            "downstream",
            create(&["--downstream"]),
            "downstream is not supported yet",
        ),
        (
            "federates_with",
            create(&["--federates-with", "other.org"]),
            "federates_with is not supported yet",
        ),
    ];
    for (name, output, expected) in cases {
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {message}");
        assert_eq!(message.trim_end().lines().count(), 1, "{name}: {message}");
        assert!(message.contains(expected), "{name}: {message}");
    }
    assert_eq!(entry_count(&server), "0 registration entries");

    let latest = create(&["--entry-expiry", "253402300799"]);
    assert!(latest.status.success(), "{}", stderr(&latest));
    let show = server.cli(&["entry", "show"]);
    assert!(show.status.success(), "{}", stderr(&show));
    assert!(
        stdout(&show).contains("Expiration time  : 9999-12-31T23:59:59Z"),
        "{}",
        stdout(&show)
    );
}

#[test]
fn closed_stdout_ends_output_quietly() {
    let server = ServerProcess::start();
    let mut child = Command::new(BINARY)
        .args(["bundle", "show", "--admin-socket"])
        .arg(&server.admin_socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command connects to the server before it prints, so the pipe is closed by then.
    drop(child.stdout.take());

    let output = child.wait_with_output().unwrap();
    let message = stderr(&output);
    assert!(
        matches!(output.status.code(), Some(0 | 141)),
        "{:?}: {message}",
        output.status
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn unknown_agent_error_names_the_typed_id() {
    let server = ServerProcess::start();
    let id = "spiffe://example.org/spire/agent/join_token/nope";

    for command in ["evict", "show", "ban"] {
        let output = server.cli(&["agent", command, "--spiffe-id", id]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert!(
            stderr(&output).contains(&format!("agent {id} not found")),
            "{command}: {}",
            stderr(&output)
        );
    }
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
