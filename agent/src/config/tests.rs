use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::test_util::TestCa;

fn args(trust_domain: &str) -> RunArgs {
    RunArgs {
        trust_domain: Some(trust_domain.to_owned()),
        ..RunArgs::default()
    }
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn defaults_apply_without_file() {
    let config = AgentConfig::from_args(args("example.org")).unwrap();
    assert_eq!(config.trust_domain.as_str(), "example.org");
    assert_eq!(config.server_address.to_string(), DEFAULT_SERVER_ADDRESS);
    assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(config.socket_path, PathBuf::from(DEFAULT_SOCKET_PATH));
    assert_eq!(config.admin_socket, PathBuf::from(DEFAULT_ADMIN_SOCKET));
    assert!(config.join_token.is_none());
    assert!(matches!(config.bootstrap, Bootstrap::None));
    assert!(config.persist_workload_svids);
}

#[test]
fn persist_workload_svids_flag_wins_over_file() {
    let file = config_file("trust_domain = \"example.org\"\npersist_workload_svids = false\n");
    let mut args = args("example.org");
    args.config = Some(file.path().to_owned());
    assert!(
        !AgentConfig::from_args(args.clone())
            .unwrap()
            .persist_workload_svids
    );

    args.persist_workload_svids = Some(true);
    assert!(AgentConfig::from_args(args).unwrap().persist_workload_svids);
}

#[test]
fn flags_win_over_file() {
    let file = config_file(
        "trust_domain = \"file.org\"\nserver_address = \"127.0.0.1:9000\"\ndata_dir = \"/file\"\n",
    );
    let mut args = args("flag.org");
    args.config = Some(file.path().to_owned());
    args.data_dir = Some(PathBuf::from("/flag"));

    let config = AgentConfig::from_args(args).unwrap();

    assert_eq!(config.trust_domain.as_str(), "flag.org");
    assert_eq!(config.data_dir, PathBuf::from("/flag"));
    assert_eq!(config.server_address.port, 9000);
}

#[test]
fn file_supplies_missing_flags() {
    let file = config_file(
        "trust_domain = \"file.org\"\njoin_token = \"abc123\"\ninsecure_bootstrap = true\n\
         socket_path = \"/run/api.sock\"\n",
    );
    let config = AgentConfig::from_args(RunArgs {
        config: Some(file.path().to_owned()),
        ..RunArgs::default()
    })
    .unwrap();

    assert_eq!(config.trust_domain.as_str(), "file.org");
    assert_eq!(config.join_token.unwrap().expose_secret(), "abc123");
    assert!(matches!(config.bootstrap, Bootstrap::InsecureBootstrap));
    assert_eq!(config.socket_path, PathBuf::from("/run/api.sock"));
}

#[test]
fn admin_socket_default_follows_socket_path() {
    let cases = [
        (
            "/run/agent/public/api.sock",
            "/run/agent/private/admin.sock",
        ),
        ("/run/signet/api.sock", "/run/signet/private/admin.sock"),
        ("/api.sock", "/private/admin.sock"),
        ("api.sock", DEFAULT_ADMIN_SOCKET),
    ];
    for (socket_path, expected) in cases {
        let mut args = args("example.org");
        args.socket_path = Some(PathBuf::from(socket_path));

        let config = AgentConfig::from_args(args).unwrap();

        assert_eq!(
            config.admin_socket,
            PathBuf::from(expected),
            "{socket_path}"
        );
    }
}

#[test]
fn admin_socket_file_key_is_read() {
    let file = config_file("trust_domain = \"example.org\"\nadmin_socket = \"/run/a.sock\"\n");
    let mut args = args("example.org");
    args.config = Some(file.path().to_owned());

    let config = AgentConfig::from_args(args).unwrap();

    assert_eq!(config.admin_socket, PathBuf::from("/run/a.sock"));
}

#[test]
fn unknown_file_key_is_rejected() {
    let file = config_file("trust_domain = \"example.org\"\nserver_adress = \"x:1\"\n");
    let mut args = args("example.org");
    args.config = Some(file.path().to_owned());

    let error = AgentConfig::from_args(args).unwrap_err();

    let ConfigError::ParseFile { message, .. } = &error else {
        panic!("expected ParseFile, got {error:?}");
    };
    assert!(message.contains("server_adress"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn missing_config_file_is_reported() {
    let mut args = args("example.org");
    args.config = Some(PathBuf::from("/nonexistent/agent.toml"));
    assert!(matches!(
        AgentConfig::from_args(args),
        Err(ConfigError::ReadFile { .. })
    ));
}

#[test]
fn missing_trust_domain_is_rejected() {
    assert!(matches!(
        AgentConfig::from_args(RunArgs::default()),
        Err(ConfigError::Missing {
            key: "trust_domain",
            ..
        })
    ));
}

#[test]
fn invalid_trust_domain_is_rejected() {
    for name in ["Example.org", "spiffe://example.org", "exa mple.org", ""] {
        let result = AgentConfig::from_args(args(name));
        assert!(
            matches!(
                result,
                Err(ConfigError::Invalid {
                    key: "trust_domain",
                    ..
                })
            ),
            "{name:?}: {result:?}"
        );
    }
}

#[test]
fn invalid_join_token_is_rejected_without_echo() {
    for token in ["", "has space", "a/b", "sécret"] {
        let mut args = args("example.org");
        args.join_token = Some(token.to_owned());
        let error = AgentConfig::from_args(args).unwrap_err();
        assert!(
            matches!(error, ConfigError::Rejected(INVALID_JOIN_TOKEN)),
            "{token:?}"
        );
        if !token.is_empty() {
            assert!(!error.to_string().contains(token));
        }
    }
}

#[test]
fn join_token_debug_is_redacted() {
    let mut args = args("example.org");
    args.join_token = Some("topsecret".to_owned());
    assert!(!format!("{args:?}").contains("topsecret"));
    let config = AgentConfig::from_args(args).unwrap();
    assert!(!format!("{config:?}").contains("topsecret"));
}

/// Creates a private file that contains `text`, like a systemd credential or a secret mounted
/// with mode 0400.
fn private_file(text: &str) -> tempfile::NamedTempFile {
    let file = config_file(text);
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

#[test]
fn join_token_file_is_read_and_trimmed() {
    let token = private_file("abc123\n");
    let mut args = args("example.org");
    args.join_token_file = Some(token.path().to_owned());
    let config = AgentConfig::from_args(args).unwrap();
    assert_eq!(config.join_token.unwrap().expose_secret(), "abc123");
}

#[test]
fn missing_join_token_file_is_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(&format!(
        "join_token_file = {:?}\n",
        dir.path().join("spent-token")
    ));
    let mut args = args("example.org");
    args.config = Some(file.path().to_owned());
    let config = AgentConfig::from_args(args).unwrap();
    assert!(config.join_token.is_none());
}

#[test]
fn join_token_file_readable_by_others_is_rejected() {
    let token = private_file("abc123");
    std::fs::set_permissions(token.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut args = args("example.org");
    args.join_token_file = Some(token.path().to_owned());
    let error = AgentConfig::from_args(args).unwrap_err().to_string();
    assert!(
        error.contains("mode 0644") && error.contains("chmod 600"),
        "{error}"
    );
    assert!(!error.contains("abc123"), "{error}");
}

#[test]
fn join_token_and_join_token_file_conflict() {
    let token = private_file("abc123");
    let mut args = args("example.org");
    args.join_token = Some("def456".to_owned());
    args.join_token_file = Some(token.path().to_owned());
    let error = AgentConfig::from_args(args).unwrap_err();
    assert!(matches!(
        error,
        ConfigError::Rejected(CONFLICTING_JOIN_TOKENS)
    ));
}

#[test]
fn trust_bundle_and_insecure_bootstrap_conflict() {
    let ca = TestCa::new();
    let bundle = config_file(&ca.pem());
    let file = config_file("insecure_bootstrap = true\n");
    let mut args = args("example.org");
    args.config = Some(file.path().to_owned());
    args.trust_bundle = Some(bundle.path().to_owned());

    assert!(matches!(
        AgentConfig::from_args(args),
        Err(ConfigError::Rejected(CONFLICTING_BOOTSTRAP))
    ));
}

#[test]
fn trust_bundle_is_loaded() {
    let ca = TestCa::new();
    let bundle = config_file(&ca.pem());
    let mut args = args("example.org");
    args.trust_bundle = Some(bundle.path().to_owned());

    let config = AgentConfig::from_args(args).unwrap();

    let Bootstrap::TrustBundle(certificates) = config.bootstrap else {
        panic!("expected a trust bundle");
    };
    assert_eq!(certificates, ca.bundle());
}

#[test]
fn trust_bundle_without_certificates_is_rejected() {
    let bundle = config_file("not a certificate\n");
    let mut args = args("example.org");
    args.trust_bundle = Some(bundle.path().to_owned());
    assert!(matches!(
        AgentConfig::from_args(args),
        Err(ConfigError::Invalid {
            key: "trust_bundle_path",
            ..
        })
    ));
}

#[test]
fn server_address_parses_valid_forms() {
    let cases = [
        ("127.0.0.1:8081", "127.0.0.1", 8081),
        ("localhost:1", "localhost", 1),
        ("[::1]:65535", "::1", 65535),
    ];
    for (text, host, port) in cases {
        let address = ServerAddress::parse(text).unwrap();
        assert_eq!(address.host, host, "{text}");
        assert_eq!(address.port, port, "{text}");
        assert_eq!(address.to_string(), text);
    }
}

#[test]
fn server_address_rejects_invalid_forms() {
    let cases = [
        "127.0.0.1",
        ":8081",
        "host:",
        "host:0",
        "host:65536",
        "host:http",
        "::1:8081",
        "[]:8081",
    ];
    for text in cases {
        assert!(
            matches!(
                ServerAddress::parse(text),
                Err(ConfigError::Invalid {
                    key: "server_address",
                    ..
                })
            ),
            "{text}"
        );
    }
}
