use std::io::Write;

use super::*;

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
    let config = Config::load(&args("example.org")).unwrap();

    assert_eq!(config.trust_domain.to_string(), "example.org");
    assert_eq!(config.bind_address.to_string(), "127.0.0.1:8081");
    assert_eq!(config.admin_socket, PathBuf::from(DEFAULT_ADMIN_SOCKET));
    assert!(config.data_dir.is_absolute());
    assert!(config.data_dir.ends_with(DEFAULT_DATA_DIR));
    assert_eq!(
        config.database_url,
        format!(
            "sqlite://{}",
            config.data_dir.join(DATASTORE_FILE).display()
        )
    );
    assert_eq!(config.ca_ttl, Duration::from_secs(86_400));
    assert_eq!(config.default_x509_svid_ttl, Duration::from_secs(3600));
    assert_eq!(config.agent_svid_ttl, Duration::from_secs(3600));
    assert_eq!(config.ca_key_type, KeyType::default());
    assert!(config.upstream.is_none());
}

#[test]
fn file_keys_are_read() {
    let file = config_file(
        r#"
        trust_domain = "file.example"
        bind_address = "127.0.0.1:9000"
        data_dir = "/tmp/signet-test-data"
        ca_ttl = "48h"
        default_x509_svid_ttl = 600
        ca_key_type = "ec-p384"
        "#,
    );
    let run_args = RunArgs {
        config: Some(file.path().to_owned()),
        ..RunArgs::default()
    };

    let config = Config::load(&run_args).unwrap();

    assert_eq!(config.trust_domain.to_string(), "file.example");
    assert_eq!(config.bind_address.to_string(), "127.0.0.1:9000");
    assert_eq!(config.data_dir, PathBuf::from("/tmp/signet-test-data"));
    assert_eq!(config.ca_ttl, Duration::from_secs(48 * 3600));
    assert_eq!(config.default_x509_svid_ttl, Duration::from_secs(600));
    assert_eq!(config.ca_key_type, KeyType::EcP384);
}

#[test]
fn flags_win_over_file() {
    let file = config_file(
        r#"
        trust_domain = "file.example"
        bind_address = "127.0.0.1:9000"
        agent_svid_ttl = "2h"
        "#,
    );
    let run_args = RunArgs {
        config: Some(file.path().to_owned()),
        trust_domain: Some("flag.example".to_owned()),
        agent_svid_ttl: Some("90s".to_owned()),
        ..RunArgs::default()
    };

    let config = Config::load(&run_args).unwrap();

    assert_eq!(config.trust_domain.to_string(), "flag.example");
    assert_eq!(config.agent_svid_ttl, Duration::from_secs(90));
    assert_eq!(config.bind_address.to_string(), "127.0.0.1:9000");
}

#[test]
fn unknown_file_key_is_named() {
    let file = config_file("trust_domain = \"example.org\"\nbind_adress = \"127.0.0.1:1\"\n");
    let run_args = RunArgs {
        config: Some(file.path().to_owned()),
        ..RunArgs::default()
    };

    let error = Config::load(&run_args).unwrap_err();

    assert!(matches!(error, ConfigError::ParseFile { .. }), "{error:?}");
    assert!(error.to_string().contains("bind_adress"), "{error}");
}

#[test]
fn missing_trust_domain_is_rejected() {
    let error = Config::load(&RunArgs::default()).unwrap_err();

    assert!(matches!(
        error,
        ConfigError::Missing {
            key: "trust_domain",
            ..
        }
    ));
}

#[test]
fn invalid_values_name_their_key() {
    let cases: &[(&str, RunArgs, &str)] = &[
        (
            "bad duration",
            RunArgs {
                ca_ttl: Some("forever".to_owned()),
                ..args("example.org")
            },
            "ca_ttl",
        ),
        (
            "zero duration",
            RunArgs {
                default_x509_svid_ttl: Some("0s".to_owned()),
                ..args("example.org")
            },
            "default_x509_svid_ttl",
        ),
        ("bad trust domain", args("Example.ORG/path"), "trust_domain"),
        (
            "bad bind address",
            RunArgs {
                bind_address: Some("localhost".to_owned()),
                ..args("example.org")
            },
            "bind_address",
        ),
        (
            "bad key type",
            RunArgs {
                ca_key_type: Some("dsa".to_owned()),
                ..args("example.org")
            },
            "ca_key_type",
        ),
        (
            "bad database",
            RunArgs {
                database: Some("mysql://root:secret@127.0.0.1/db".to_owned()),
                ..args("example.org")
            },
            "database",
        ),
        (
            "upstream key without cert",
            RunArgs {
                upstream_ca_key: Some(PathBuf::from("/tmp/key.pem")),
                ..args("example.org")
            },
            "upstream_ca_key",
        ),
    ];

    for (name, run_args, expected_key) in cases {
        match Config::load(run_args) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, *expected_key, "{name}"),
            other => panic!("{name}: expected an invalid {expected_key}, got {other:?}"),
        }
    }
}

#[test]
fn database_password_is_not_shown() {
    let run_args = RunArgs {
        database: Some("mysql://root:secret@127.0.0.1/db".to_owned()),
        ..args("example.org")
    };
    let error = Config::load(&run_args).unwrap_err();
    assert!(!error.to_string().contains("secret"), "{error}");

    let run_args = RunArgs {
        database: Some("postgres://root:secret@127.0.0.1/db".to_owned()),
        ..args("example.org")
    };
    let config = Config::load(&run_args).unwrap();
    assert!(!format!("{config:?}").contains("secret"));
}

/// `signet-server run`'s flags, for parsing command lines in tests.
#[derive(Debug, clap::Parser)]
struct RunCommand {
    #[command(flatten)]
    args: RunArgs,
}

#[test]
fn negative_ttl_flags_reach_validation() {
    use clap::Parser;

    for flag in ["ca_ttl", "default_x509_svid_ttl", "agent_svid_ttl"] {
        let option = format!("--{}", flag.replace('_', "-"));
        let command = RunCommand::try_parse_from([
            "signet-server",
            "--trust-domain",
            "example.org",
            option.as_str(),
            "-5",
        ])
        .unwrap_or_else(|error| panic!("{option} -5 was not parsed: {error}"));

        match Config::load(&command.args) {
            Err(ConfigError::Invalid { key, value, .. }) => {
                assert_eq!(key, flag);
                assert_eq!(value, "-5");
            }
            other => panic!("{option} -5: expected an invalid {flag}, got {other:?}"),
        }
    }
}

#[test]
fn jwt_settings_default() {
    let config = Config::load(&args("example.org")).unwrap();

    assert_eq!(config.jwt_key_type, JwtKeyType::Es256);
    assert_eq!(config.jwt_issuer, None);
    assert_eq!(config.default_jwt_svid_ttl, Duration::from_secs(300));
}

#[test]
fn jwt_settings_from_file_and_flags() {
    let file = config_file(
        r#"
        trust_domain = "example.org"
        jwt_key_type = "rs256"
        jwt_issuer = "https://oidc.example.org"
        default_jwt_svid_ttl = "10m"
        "#,
    );
    let run_args = RunArgs {
        config: Some(file.path().to_owned()),
        jwt_key_type: Some("ps256".to_owned()),
        ..RunArgs::default()
    };

    let config = Config::load(&run_args).unwrap();

    assert_eq!(config.jwt_key_type, JwtKeyType::Ps256);
    assert_eq!(
        config.jwt_issuer.as_deref(),
        Some("https://oidc.example.org")
    );
    assert_eq!(config.default_jwt_svid_ttl, Duration::from_secs(600));
}

#[test]
fn invalid_jwt_settings_name_the_key() {
    let cases = [
        (
            "jwt_key_type",
            RunArgs {
                jwt_key_type: Some("hs256".to_owned()),
                ..args("example.org")
            },
        ),
        (
            "jwt_issuer",
            RunArgs {
                jwt_issuer: Some("oidc.example.org".to_owned()),
                ..args("example.org")
            },
        ),
        (
            "jwt_issuer",
            RunArgs {
                jwt_issuer: Some("https://x.org/?a=b".to_owned()),
                ..args("example.org")
            },
        ),
        (
            "jwt_issuer",
            RunArgs {
                jwt_issuer: Some("https://user@x.org".to_owned()),
                ..args("example.org")
            },
        ),
        (
            "jwt_issuer",
            RunArgs {
                jwt_issuer: Some("https://x.org:99999".to_owned()),
                ..args("example.org")
            },
        ),
        (
            "jwt_issuer",
            RunArgs {
                jwt_issuer: Some("https://x.org/a/../b".to_owned()),
                ..args("example.org")
            },
        ),
        (
            "default_jwt_svid_ttl",
            RunArgs {
                default_jwt_svid_ttl: Some("0s".to_owned()),
                ..args("example.org")
            },
        ),
    ];
    for (expected_key, run_args) in cases {
        let error = Config::load(&run_args).unwrap_err();
        assert!(
            matches!(error, ConfigError::Invalid { key, .. } if key == expected_key),
            "{error}"
        );
    }
}
