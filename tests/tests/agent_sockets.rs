//! The agent's checks of its Workload API and admin sockets, which run before node attestation.

use std::fs::{self, Permissions};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use signet_e2e::cli::printed;
use signet_e2e::{Agent, AgentOptions, Server, binaries};
use tokio::process::Command;

/// Bound for an agent that must stop at once.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// A user other than the agent's, who must not control its socket directory.
const OTHER_UID: u32 = 65534;

#[tokio::test]
async fn agent_rejects_socket_directory_of_another_user() {
    let temp = tempfile::tempdir().unwrap();
    let foreign = temp.path().join("D");
    let public = foreign.join("public");
    fs::create_dir_all(&public).unwrap();
    fs::set_permissions(&public, Permissions::from_mode(0o777)).unwrap();
    chown(&foreign, Some(OTHER_UID), None).unwrap();
    chown(&public, Some(OTHER_UID), None).unwrap();
    let socket_path = public.join("api.sock");

    let mut command = Command::new(binaries::path(binaries::AGENT).unwrap());
    command
        .arg("run")
        .args(["--trust-domain", "example.org"])
        .args(["--server-address", "127.0.0.1:1"])
        .args(["--join-token", "7d1f0c2e9b8a4d6f8e3c5a1b2d4f6e8a"])
        .arg("--insecure-bootstrap")
        .arg("--data-dir")
        .arg(temp.path().join("data"))
        .arg("--socket-path")
        .arg(&socket_path)
        .arg("--admin-socket")
        .arg(temp.path().join("private").join("admin.sock"))
        .kill_on_drop(true);
    let output = tokio::time::timeout(EXIT_TIMEOUT, command.output())
        .await
        .unwrap()
        .unwrap();

    let printed = printed(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(printed.contains("unsafe socket directory"), "{printed}");
    assert!(
        printed.contains(&foreign.display().to_string()),
        "{printed}"
    );
    assert!(printed.contains(&format!("uid {OTHER_UID}")), "{printed}");
    assert!(
        !socket_path.exists(),
        "the agent bound {}",
        socket_path.display()
    );
}

#[tokio::test]
async fn admin_socket_in_use_keeps_join_token_unused() {
    let server = Server::start().await.unwrap();
    let token = server.create_token().await.unwrap();
    let other_agent_dir = tempfile::tempdir().unwrap();
    let admin_socket = other_agent_dir.path().join("admin.sock");
    let _other_agent = UnixListener::bind(&admin_socket).unwrap();
    let options = AgentOptions {
        extra_args: vec![
            "--admin-socket".to_owned(),
            admin_socket.display().to_string(),
        ],
        ..AgentOptions::default()
    };

    let output = Agent::run_to_exit_with(&server, &token, options, EXIT_TIMEOUT)
        .await
        .unwrap();

    let printed = printed(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("is in use by another process"),
        "{printed}"
    );
    assert!(
        !printed.contains("node attestation failed"),
        "the agent attested before it checked the admin socket:\n{printed}"
    );
    let agent = Agent::start(&server, &token).await;
    assert!(agent.is_ok(), "the join token was used up: {agent:?}");
}
