use std::path::Path;

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};
use crate::helper::jwt_config::JwtSvidFile;

fn parse(args: &[&str]) -> HelperArgs {
    let cli = Cli::try_parse_from(["signet-agent", "helper"].iter().chain(args)).unwrap();
    match cli.command {
        Command::Helper(args) => args,
        other => panic!("expected helper, got {other:?}"),
    }
}

fn config_file(dir: &Path, text: &str) -> String {
    let path = dir.join("helper.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn defaults_follow_spiffe_helper() {
    let config = HelperConfig::from_args(parse(&["--cert-dir", "/certs"])).unwrap();
    assert!(config.daemon_mode);
    assert_eq!(config.files.svid_file, Path::new("/certs/svid.pem"));
    assert_eq!(config.files.key_file, Path::new("/certs/svid_key.pem"));
    assert_eq!(
        config.files.bundle_file,
        Path::new("/certs/svid_bundle.pem")
    );
    assert_eq!(config.files.cert_file_mode, 0o644);
    assert_eq!(config.files.key_file_mode, 0o600);
    assert!(!config.files.add_intermediates_to_bundle);
    assert!(config.notify.command.is_none());
    assert!(config.notify.signal.is_none());
}

#[test]
fn file_settings_apply_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        r#"
agent_address = "/run/file.sock"
cert_dir = "/from-file"
svid_file_name = "cert.pem"
cmd = "nginx"
cmd_args = "-s reload"
pid_file_name = "/run/nginx.pid"
renew_signal = "SIGHUP"
daemon_mode = false
cert_file_mode = 0o640
key_file_mode = "0400"
add_intermediates_to_bundle = true
"#,
    );
    let config = HelperConfig::from_args(parse(&[
        "--config",
        &path,
        "--cert-dir",
        "/from-flag",
        "--key-file-mode",
        "0440",
        "--daemon-mode",
        "true",
    ]))
    .unwrap();
    assert_eq!(config.endpoint, Endpoint::Unix("/run/file.sock".into()));
    assert_eq!(config.files.svid_file, Path::new("/from-flag/cert.pem"));
    assert_eq!(config.files.cert_file_mode, 0o640);
    assert_eq!(config.files.key_file_mode, 0o440);
    assert!(config.files.add_intermediates_to_bundle);
    assert!(config.daemon_mode);
    let (program, args) = config.notify.command.unwrap();
    assert_eq!(program, "nginx");
    assert_eq!(args, ["-s", "reload"]);
    let (pid_file, signal) = config.notify.signal.unwrap();
    assert_eq!(pid_file, Path::new("/run/nginx.pid"));
    assert_eq!(signal, Signal::SIGHUP);
}

#[test]
fn socket_path_flag_wins_over_agent_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), "agent_address = \"unix:///run/file.sock\"\n");
    let from_file = HelperConfig::from_args(parse(&["--config", &path, "--cert-dir", "/c"]));
    assert_eq!(
        from_file.unwrap().endpoint,
        Endpoint::Unix("/run/file.sock".into())
    );
    let config = HelperConfig::from_args(parse(&[
        "--config",
        &path,
        "--cert-dir",
        "/c",
        "--socket-path",
        "/run/flag.sock",
    ]))
    .unwrap();
    assert_eq!(config.endpoint, Endpoint::Unix("/run/flag.sock".into()));
}

#[test]
fn unknown_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), "cert_dir = \"/c\"\ncert_directory = \"/d\"\n");
    let error = HelperConfig::from_args(parse(&["--config", &path])).unwrap_err();
    assert!(matches!(error, ConfigError::ParseFile { .. }), "{error:?}");
    assert!(error.to_string().contains("cert_directory"), "{error}");
}

#[test]
fn cert_dir_is_required() {
    let error = HelperConfig::from_args(parse(&[])).unwrap_err();
    assert!(error.to_string().contains("--cert-dir"), "{error}");
}

#[test]
fn one_shot_and_daemon_mode_false_agree() {
    let one_shot = HelperConfig::from_args(parse(&["--cert-dir", "/c", "--one-shot"])).unwrap();
    assert!(!one_shot.daemon_mode);
    let flag = HelperConfig::from_args(parse(&["--cert-dir", "/c", "--daemon-mode=false"]));
    assert!(!flag.unwrap().daemon_mode);
}

#[test]
fn invalid_values_are_named() {
    let cases: [&[&str]; 5] = [
        &["--cert-file-mode", "0999"],
        &["--key-file-mode", "01000"],
        &["--svid-file-name", "../svid.pem"],
        &["--renew-signal", "SIGNOPE", "--pid-file-name", "/p"],
        &["--svid-key-file-name", "svid.pem"],
    ];
    for case in cases {
        let mut args = vec!["--cert-dir", "/c"];
        args.extend_from_slice(case);
        let error = HelperConfig::from_args(parse(&args)).unwrap_err();
        let message = error.to_string();
        assert!(
            case.iter().skip(1).any(|value| message.contains(value))
                || message.contains("must differ"),
            "{case:?}: {message}"
        );
    }
}

#[test]
fn signal_needs_a_pid_file() {
    let error = HelperConfig::from_args(parse(&["--cert-dir", "/c", "--renew-signal", "SIGHUP"]));
    assert!(error.unwrap_err().to_string().contains("pid_file_name"));
}

#[test]
fn jwt_files_are_off_by_default() {
    let config = HelperConfig::from_args(parse(&["--cert-dir", "/c"])).unwrap();
    assert!(config.jwt.is_empty());
    assert_eq!(config.jwt.svid_file_mode, 0o600);
    assert_eq!(config.jwt.bundle_file_mode, 0o644);
}

#[test]
fn jwt_files_take_spiffe_helper_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        r#"
cert_dir = "/c"
jwt_bundle_file_name = "jwt_bundle.json"
jwt_svids = [
    { jwt_audience = "orders", jwt_svid_file_name = "orders.token" },
    { jwt_audience = "a", jwt_extra_audiences = ["b", "c"], jwt_svid_file_name = "abc.token" },
]
jwt_svid_file_mode = 0o400
jwt_bundle_file_mode = "0640"
"#,
    );
    let config = HelperConfig::from_args(parse(&["--config", &path])).unwrap();
    assert_eq!(
        config.jwt.svids,
        [
            JwtSvidFile {
                audience: vec!["orders".to_owned()],
                path: "/c/orders.token".into(),
            },
            JwtSvidFile {
                audience: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
                path: "/c/abc.token".into(),
            },
        ]
    );
    assert_eq!(
        config.jwt.bundle_file.as_deref(),
        Some(Path::new("/c/jwt_bundle.json"))
    );
    assert_eq!(config.jwt.svid_file_mode, 0o400);
    assert_eq!(config.jwt.bundle_file_mode, 0o640);
}

#[test]
fn jwt_svid_flags_replace_the_file_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        r#"
cert_dir = "/c"
jwt_svids = [{ jwt_audience = "x", jwt_svid_file_name = "x.token" }]
"#,
    );
    let config = HelperConfig::from_args(parse(&[
        "--config",
        &path,
        "--jwt-svid",
        "spiffe://example.org/db?a=b=db.token",
        "--jwt-svid",
        "orders=orders.token",
    ]))
    .unwrap();
    let files: Vec<(&[String], &Path)> = config
        .jwt
        .svids
        .iter()
        .map(|file| (file.audience.as_slice(), file.path.as_path()))
        .collect();
    assert_eq!(
        files,
        [
            (
                ["spiffe://example.org/db?a=b".to_owned()].as_slice(),
                Path::new("/c/db.token")
            ),
            (
                ["orders".to_owned()].as_slice(),
                Path::new("/c/orders.token")
            ),
        ]
    );
}

#[test]
fn invalid_jwt_settings_are_named() {
    let cases: [(&[&str], &str); 6] = [
        (&["--jwt-svid", "orders"], "orders"),
        (&["--jwt-svid", "=orders.token"], "=orders.token"),
        (&["--jwt-svid", "orders=../orders.token"], "../orders.token"),
        (&["--jwt-svid", "orders=svid.pem"], "svid.pem"),
        (
            &["--jwt-svid", "a=t", "--jwt-bundle-file-name", "t"],
            "jwt_bundle_file_name",
        ),
        (&["--jwt-svid-file-mode", "0800"], "0800"),
    ];
    for (case, named) in cases {
        let mut args = vec!["--cert-dir", "/c"];
        args.extend_from_slice(case);
        let error = HelperConfig::from_args(parse(&args)).unwrap_err();
        assert!(
            matches!(error, ConfigError::Invalid { .. }),
            "{case:?}: {error:?}"
        );
        assert!(error.to_string().contains(named), "{case:?}: {error}");
    }
}

#[test]
fn blank_jwt_audience_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        "cert_dir = \"/c\"\njwt_svids = [{ jwt_audience = \" \", jwt_svid_file_name = \"t\" }]\n",
    );
    let error = HelperConfig::from_args(parse(&["--config", &path])).unwrap_err();
    assert!(error.to_string().contains("jwt_audience"), "{error}");
}

#[test]
fn unknown_jwt_svid_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        "cert_dir = \"/c\"\njwt_svids = [{ jwt_audience = \"a\", jwt_file = \"t\" }]\n",
    );
    let error = HelperConfig::from_args(parse(&["--config", &path])).unwrap_err();
    assert!(error.to_string().contains("jwt_file"), "{error}");
}
