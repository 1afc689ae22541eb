use std::io::Write;

use super::*;

fn args(issuer: &str) -> RunArgs {
    RunArgs {
        issuer: Some(issuer.to_owned()),
        insecure_http: true,
        ..RunArgs::default()
    }
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn defaults_follow_the_issuer() {
    let config = Config::load(&args("https://oidc.example.org/tenant")).unwrap();

    assert_eq!(config.issuer.as_str(), "https://oidc.example.org/tenant");
    assert_eq!(
        config.jwks_uri.as_str(),
        "https://oidc.example.org/tenant/keys"
    );
    assert_eq!(
        config.domains.iter().collect::<Vec<_>>(),
        ["oidc.example.org"]
    );
    assert_eq!(config.admin_socket, PathBuf::from(DEFAULT_ADMIN_SOCKET));
    assert_eq!(config.poll_interval, Duration::from_secs(10));
    assert_eq!(config.listen_address, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(config.transport, Transport::InsecureHttp);
}

#[test]
fn issuer_is_required() {
    let error = Config::load(&RunArgs {
        insecure_http: true,
        ..RunArgs::default()
    })
    .unwrap_err();
    assert!(matches!(error, ConfigError::Missing { key: "issuer", .. }));
}

#[test]
fn invalid_issuer_names_the_value() {
    let error = Config::load(&args("https://oidc.example.org/?x=1")).unwrap_err();
    let ConfigError::Invalid { key, value, .. } = error else {
        panic!("expected Invalid, got {error:?}");
    };
    assert_eq!(key, "issuer");
    assert_eq!(value, "https://oidc.example.org/?x=1");
}

#[test]
fn domain_flags_add_to_the_issuer_host() {
    let config = Config::load(&RunArgs {
        domains: vec!["a.example.org".to_owned(), "B.example.org".to_owned()],
        ..args("https://oidc.example.org")
    })
    .unwrap();
    assert_eq!(
        config.domains.iter().collect::<Vec<_>>(),
        ["a.example.org", "b.example.org", "oidc.example.org"]
    );
}

#[test]
fn invalid_domain_is_rejected() {
    let error = Config::load(&RunArgs {
        domains: vec!["oidc.example.org:443".to_owned()],
        ..args("https://oidc.example.org")
    })
    .unwrap_err();
    assert!(matches!(error, ConfigError::Invalid { key: "domains", .. }));
}

#[test]
fn transport_needs_exactly_one_choice() {
    let tls_only = |cert: Option<&str>, key: Option<&str>, insecure_http| RunArgs {
        tls_cert: cert.map(PathBuf::from),
        tls_key: key.map(PathBuf::from),
        insecure_http,
        ..args("https://oidc.example.org")
    };

    let config = Config::load(&tls_only(Some("c.pem"), Some("k.pem"), false)).unwrap();
    assert_eq!(
        config.transport,
        Transport::Tls {
            cert: PathBuf::from("c.pem"),
            key: PathBuf::from("k.pem")
        }
    );
    for (cert, key, insecure_http) in [
        (None, None, false),
        (Some("c.pem"), Some("k.pem"), true),
        (Some("c.pem"), None, true),
    ] {
        let error = Config::load(&tls_only(cert, key, insecure_http)).unwrap_err();
        assert!(matches!(error, ConfigError::Rejected(_)), "{error:?}");
    }
    let error = Config::load(&tls_only(Some("c.pem"), None, false)).unwrap_err();
    assert!(matches!(error, ConfigError::Missing { key: "tls_key", .. }));
    let error = Config::load(&tls_only(None, Some("k.pem"), false)).unwrap_err();
    assert!(matches!(
        error,
        ConfigError::Missing {
            key: "tls_cert",
            ..
        }
    ));
}

#[test]
fn file_settings_apply_and_flags_override_them() {
    let file = config_file(
        r#"
        issuer = "https://file.example.org"
        jwks_uri = "https://cdn.example.org/jwks.json"
        domains = ["file.example.org", "127.0.0.1"]
        admin_socket = "/run/signet/api.sock"
        poll_interval = 30
        listen_address = "127.0.0.1:9443"
        insecure_http = true
        "#,
    );
    let from_file = Config::load(&RunArgs {
        config: Some(file.path().to_owned()),
        ..RunArgs::default()
    })
    .unwrap();
    assert_eq!(from_file.issuer.as_str(), "https://file.example.org");
    assert_eq!(
        from_file.jwks_uri.as_str(),
        "https://cdn.example.org/jwks.json"
    );
    assert_eq!(
        from_file.domains.iter().collect::<Vec<_>>(),
        ["127.0.0.1", "file.example.org"]
    );
    assert_eq!(
        from_file.admin_socket,
        PathBuf::from("/run/signet/api.sock")
    );
    assert_eq!(from_file.poll_interval, Duration::from_secs(30));
    assert_eq!(from_file.listen_address, "127.0.0.1:9443".parse().unwrap());

    let overridden = Config::load(&RunArgs {
        config: Some(file.path().to_owned()),
        issuer: Some("https://flag.example.org".to_owned()),
        poll_interval: Some("2s".to_owned()),
        domains: vec!["flag.example.org".to_owned()],
        ..RunArgs::default()
    })
    .unwrap();
    assert_eq!(overridden.issuer.as_str(), "https://flag.example.org");
    assert_eq!(overridden.poll_interval, Duration::from_secs(2));
    assert_eq!(
        overridden.domains.iter().collect::<Vec<_>>(),
        ["flag.example.org"]
    );
}

#[test]
fn unknown_file_key_is_rejected() {
    let file = config_file("issuer = \"https://oidc.example.org\"\ndomain = [\"x\"]\n");
    let error = Config::load(&RunArgs {
        config: Some(file.path().to_owned()),
        ..RunArgs::default()
    })
    .unwrap_err();
    let ConfigError::ParseFile { message, .. } = error else {
        panic!("expected ParseFile, got {error:?}");
    };
    assert!(message.contains("domain"), "{message}");
}

#[test]
fn invalid_poll_interval_is_rejected() {
    for text in ["0s", "soon"] {
        let error = Config::load(&RunArgs {
            poll_interval: Some(text.to_owned()),
            ..args("https://oidc.example.org")
        })
        .unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    key: "poll_interval",
                    ..
                }
            ),
            "{text}: {error:?}"
        );
    }
}
