//! The operator CLI on bad input, and the file permissions the server relies on.

use std::fs;
use std::os::unix::fs::FileTypeExt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use signet_e2e::files::{key_files, mode};
use signet_e2e::svid;
use signet_e2e::{EntrySpec, Server, TRUST_DOMAIN};

/// A command that must fail, and the value its error message must name.
struct BadInput {
    name: &'static str,
    entry: fn(&Server) -> EntrySpec,
    named_value: &'static str,
}

const BAD_INPUTS: &[BadInput] = &[
    BadInput {
        name: "invalid SPIFFE ID",
        entry: |server| {
            EntrySpec::new("not-a-spiffe-id", server.spiffe_id("/agent")).selector("unix:uid:1000")
        },
        named_value: "not-a-spiffe-id",
    },
    BadInput {
        name: "unknown selector type",
        entry: |server| {
            EntrySpec::new(server.spiffe_id("/web"), server.spiffe_id("/agent"))
                .selector("bogus:thing")
        },
        named_value: "bogus",
    },
    BadInput {
        name: "TTL overflow",
        entry: |server| {
            EntrySpec::new(server.spiffe_id("/web"), server.spiffe_id("/agent"))
                .selector("unix:uid:1000")
                .x509_svid_ttl(99_999_999_999)
        },
        named_value: "99999999999",
    },
    BadInput {
        name: "parent in another trust domain",
        entry: |server| {
            EntrySpec::new(server.spiffe_id("/web"), "spiffe://other.org/agent")
                .selector("unix:uid:1000")
        },
        named_value: "other.org",
    },
];

#[tokio::test]
async fn entry_create_rejects_bad_input() {
    let server = Server::start().await.unwrap();
    let before = server.entry_count().await.unwrap();

    for case in BAD_INPUTS {
        let args = (case.entry)(&server).create_args();
        let output = server.cli(&args).await.unwrap();
        assert_rejected(case.name, &output, case.named_value);
        assert_eq!(
            server.entry_count().await.unwrap(),
            before,
            "{}: the entry count changed",
            case.name
        );
    }
}

#[tokio::test]
async fn entry_create_rejects_duplicate() {
    let server = Server::start().await.unwrap();
    let spiffe_id = server.spiffe_id("/duplicate");
    let entry = EntrySpec::new(&spiffe_id, server.spiffe_id("/agent")).selector("unix:uid:1000");
    server.create_entry(&entry).await.unwrap();
    assert_eq!(server.entry_count().await.unwrap(), 1);

    let output = server.cli(&entry.create_args()).await.unwrap();

    assert_rejected("duplicate entry", &output, &spiffe_id);
    assert_eq!(
        server.entry_count().await.unwrap(),
        1,
        "the duplicate was stored"
    );
}

#[tokio::test]
async fn entry_show_prints_created_entry() {
    let server = Server::start().await.unwrap();
    let spiffe_id = server.spiffe_id("/shown");
    let parent_id = server.spiffe_id("/agent");
    let entry = EntrySpec::new(&spiffe_id, &parent_id)
        .selector("unix:uid:1000")
        .selector("unix:gid:1000")
        .x509_svid_ttl(900);
    let entry_id = server.create_entry(&entry).await.unwrap();

    let output = server
        .cli_ok(&["entry", "show", "--entry-id", &entry_id])
        .await
        .unwrap();

    assert_eq!(
        signet_e2e::cli::field(&output, "Entry ID").unwrap(),
        entry_id
    );
    assert_eq!(
        signet_e2e::cli::field(&output, "SPIFFE ID").unwrap(),
        spiffe_id
    );
    assert_eq!(
        signet_e2e::cli::field(&output, "Parent ID").unwrap(),
        parent_id
    );
    assert!(output.contains("unix:uid:1000"), "{output}");
    assert!(output.contains("unix:gid:1000"), "{output}");
    assert!(output.contains("900"), "the TTL is not shown:\n{output}");
}

#[tokio::test]
async fn bundle_show_prints_spiffe_bundle_format() {
    let server = Server::start().await.unwrap();

    let json = server
        .cli_ok(&["bundle", "show", "--format", "spiffe"])
        .await
        .unwrap();

    let bundle: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys = bundle["keys"].as_array().expect("a keys array");
    let (x509_keys, jwt_keys): (Vec<_>, Vec<_>) =
        keys.iter().partition(|key| key["use"] == "x509-svid");
    assert!(!x509_keys.is_empty(), "{json}");
    assert_eq!(jwt_keys.len(), 1, "one JWT signing key: {json}");
    for key in jwt_keys {
        assert_eq!(key["use"], "jwt-svid", "{key}");
        assert!(
            key["kid"].as_str().is_some_and(|kid| !kid.is_empty()),
            "{key}"
        );
        assert!(key.get("x5c").is_none(), "{key}");
    }
    for key in x509_keys {
        assert!(
            key.get("kid").is_none(),
            "x509-svid keys carry no kid: {key}"
        );
        let x5c = key["x5c"].as_array().expect("an x5c array");
        assert_eq!(x5c.len(), 1, "x5c contains exactly one certificate: {key}");
        let der = STANDARD.decode(x5c[0].as_str().unwrap()).unwrap();
        svid::check_authority(&der, TRUST_DOMAIN).unwrap();
    }
    assert!(bundle.get("spiffe_sequence").is_some(), "{json}");
}

#[tokio::test]
async fn admin_socket_is_private() {
    let server = Server::start().await.unwrap();
    let socket = server.admin_socket();

    let metadata = fs::metadata(&socket).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(mode(&socket).unwrap(), 0o600, "admin socket mode");
    assert_eq!(
        mode(socket.parent().unwrap()).unwrap(),
        0o700,
        "admin socket directory mode"
    );
}

#[tokio::test]
async fn ca_key_files_are_private() {
    let server = Server::start().await.unwrap();

    let keys = key_files(&server.data_dir());
    assert!(
        !keys.is_empty(),
        "no key file in {}",
        server.data_dir().display()
    );
    for key in keys {
        assert_eq!(mode(&key).unwrap(), 0o600, "{} mode", key.display());
    }
}

#[tokio::test]
async fn token_generate_returns_fresh_tokens() {
    let server = Server::start().await.unwrap();

    let first = server.create_token().await.unwrap();
    let second = server.create_token().await.unwrap();

    assert_ne!(
        first, second,
        "two token generate calls returned the same token"
    );
    assert!(
        first.len() >= 16,
        "token {first:?} is too short to be unguessable"
    );
    assert!(
        !server.log().contains(&first),
        "the server logged a generated join token"
    );
}

fn assert_rejected(case: &str, output: &std::process::Output, named_value: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{case}: the CLI succeeded");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{case}: exit code, stderr: {stderr}"
    );
    let lines = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count();
    assert_eq!(lines, 1, "{case}: the error is not one line:\n{stderr}");
    assert!(
        stderr.contains(named_value),
        "{case}: the error does not name {named_value:?}: {stderr}"
    );
}
