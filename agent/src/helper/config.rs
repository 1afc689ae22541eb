//! Settings of `signet-agent helper`: flags, an optional TOML file with spiffe-helper's key
//! names, and the checked result. Flags win over the file.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use serde::Deserialize;
use signet_core::config::{ConfigError, read_toml};
use signet_core::fs::{PUBLIC_FILE_MODE, SECRET_FILE_MODE};
use spiffe::transport::Endpoint;

use super::jwt_config::{JwtArgs, JwtFileSettings, JwtPlan, JwtSvidSetting};
use super::notify::parse_signal;
use crate::cli::EndpointArgs;

/// Default name of the file holding the SVID's certificate chain.
pub const DEFAULT_SVID_FILE_NAME: &str = "svid.pem";

/// Default name of the file holding the SVID's private key.
pub const DEFAULT_KEY_FILE_NAME: &str = "svid_key.pem";

/// Default name of the file holding the SVID's trust domain bundle.
pub const DEFAULT_BUNDLE_FILE_NAME: &str = "svid_bundle.pem";

/// Arguments of `signet-agent helper`.
#[derive(Debug, clap::Args)]
pub struct HelperArgs {
    /// TOML file with spiffe-helper's setting keys (`cert_dir`, `cmd`, ...). Flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Directory to write the files into; created if missing.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Name of the certificate chain file [default: svid.pem].
    #[arg(long, value_name = "NAME")]
    pub svid_file_name: Option<String>,
    /// Name of the private key file [default: svid_key.pem].
    #[arg(long, value_name = "NAME")]
    pub svid_key_file_name: Option<String>,
    /// Name of the trust bundle file [default: svid_bundle.pem].
    #[arg(long, value_name = "NAME")]
    pub svid_bundle_file_name: Option<String>,
    /// Command to run after each update.
    #[arg(long, value_name = "PROGRAM")]
    pub cmd: Option<String>,
    /// Arguments of --cmd, separated by spaces (quotes are not interpreted).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub cmd_args: Option<String>,
    /// File holding the PID of a process to signal after each update.
    #[arg(long, value_name = "FILE")]
    pub pid_file_name: Option<PathBuf>,
    /// Signal to send to that process, for example SIGHUP.
    #[arg(long, value_name = "SIGNAL")]
    pub renew_signal: Option<String>,
    /// Keep running and rewrite the files on each rotation [default: true]. False writes once
    /// and exits.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub daemon_mode: Option<bool>,
    /// Same as --daemon-mode=false.
    #[arg(long, conflicts_with = "daemon_mode")]
    pub one_shot: bool,
    /// Octal mode of the certificate and bundle files [default: 0644].
    #[arg(long, value_name = "MODE")]
    pub cert_file_mode: Option<String>,
    /// Octal mode of the key file [default: 0600].
    #[arg(long, value_name = "MODE")]
    pub key_file_mode: Option<String>,
    /// Move the SVID's intermediate certificates from the SVID file to the bundle file
    /// [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub add_intermediates_to_bundle: Option<bool>,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

/// Keys of the config file, named as in spiffe-helper.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    agent_address: Option<String>,
    cert_dir: Option<PathBuf>,
    svid_file_name: Option<String>,
    svid_key_file_name: Option<String>,
    svid_bundle_file_name: Option<String>,
    cmd: Option<String>,
    cmd_args: Option<String>,
    pid_file_name: Option<PathBuf>,
    renew_signal: Option<String>,
    daemon_mode: Option<bool>,
    cert_file_mode: Option<FileMode>,
    key_file_mode: Option<FileMode>,
    add_intermediates_to_bundle: Option<bool>,
    #[serde(default)]
    jwt_svids: Vec<JwtSvidSetting>,
    jwt_bundle_file_name: Option<String>,
    jwt_svid_file_mode: Option<FileMode>,
    jwt_bundle_file_mode: Option<FileMode>,
}

/// A file mode in the config file: an integer (write `0o644` in TOML) or an octal string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum FileMode {
    Number(u32),
    Octal(String),
}

/// Checked settings of the helper.
#[derive(Debug)]
pub struct HelperConfig {
    /// Workload API endpoint.
    pub endpoint: Endpoint,
    /// The X.509 files to write and their modes.
    pub files: FilePlan,
    /// The JWT files to keep current; empty unless configured.
    pub jwt: JwtPlan,
    /// Signal and command to send and run after each update.
    pub notify: NotifyConfig,
    /// Keep running (true) or write once and exit (false).
    pub daemon_mode: bool,
}

/// Paths and modes of the written files.
#[derive(Debug, Clone)]
pub struct FilePlan {
    /// Directory that contains every file.
    pub cert_dir: PathBuf,
    /// Certificate chain, leaf first.
    pub svid_file: PathBuf,
    /// Private key, PKCS#8.
    pub key_file: PathBuf,
    /// Authorities of the SVID's own trust domain.
    pub bundle_file: PathBuf,
    /// Mode of the certificate and bundle files.
    pub cert_file_mode: u32,
    /// Mode of the key file.
    pub key_file_mode: u32,
    /// Whether the chain's intermediates go to the bundle file instead of the SVID file.
    pub add_intermediates_to_bundle: bool,
}

/// Signal and command run after each update.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// Program and arguments to run.
    pub command: Option<(String, Vec<String>)>,
    /// PID file and the signal to send to its process.
    pub signal: Option<(PathBuf, Signal)>,
}

// === impl HelperConfig ===

impl HelperConfig {
    /// Merges the flags with the config file named by `--config` and checks the result.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or has an unknown key, or a setting is missing or invalid.
    pub fn from_args(args: HelperArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_toml::<FileSettings>(path)?,
            None => FileSettings::default(),
        };
        Self::merge(args, file)
    }

    fn merge(args: HelperArgs, file: FileSettings) -> Result<Self, ConfigError> {
        let endpoint = endpoint(&args.endpoint, file.agent_address.as_deref())?;
        let cert_dir = args
            .cert_dir
            .or(file.cert_dir)
            .ok_or(ConfigError::Missing {
                key: "cert_dir",
                flag: "cert-dir",
            })?;
        let name = |flag: Option<String>, file: Option<String>, key, default: &str| {
            file_name(key, flag.or(file).unwrap_or_else(|| default.to_owned()))
        };
        let svid_name = name(
            args.svid_file_name,
            file.svid_file_name,
            "svid_file_name",
            DEFAULT_SVID_FILE_NAME,
        )?;
        let key_name = name(
            args.svid_key_file_name,
            file.svid_key_file_name,
            "svid_key_file_name",
            DEFAULT_KEY_FILE_NAME,
        )?;
        let bundle_name = name(
            args.svid_bundle_file_name,
            file.svid_bundle_file_name,
            "svid_bundle_file_name",
            DEFAULT_BUNDLE_FILE_NAME,
        )?;
        if svid_name == key_name || svid_name == bundle_name || key_name == bundle_name {
            return Err(ConfigError::Rejected(
                "svid_file_name, svid_key_file_name and svid_bundle_file_name must differ",
            ));
        }
        let jwt = JwtPlan::merge(
            args.jwt,
            JwtFileSettings {
                jwt_svids: file.jwt_svids,
                jwt_bundle_file_name: file.jwt_bundle_file_name,
                jwt_svid_file_mode: file.jwt_svid_file_mode,
                jwt_bundle_file_mode: file.jwt_bundle_file_mode,
            },
            &cert_dir,
            &[&svid_name, &key_name, &bundle_name],
        )?;
        let files = FilePlan {
            svid_file: cert_dir.join(svid_name),
            key_file: cert_dir.join(key_name),
            bundle_file: cert_dir.join(bundle_name),
            cert_dir,
            cert_file_mode: mode(
                "cert_file_mode",
                args.cert_file_mode.map(FileMode::Octal),
                file.cert_file_mode,
                PUBLIC_FILE_MODE,
            )?,
            key_file_mode: mode(
                "key_file_mode",
                args.key_file_mode.map(FileMode::Octal),
                file.key_file_mode,
                SECRET_FILE_MODE,
            )?,
            add_intermediates_to_bundle: args
                .add_intermediates_to_bundle
                .or(file.add_intermediates_to_bundle)
                .unwrap_or(false),
        };
        let notify = NotifyConfig {
            command: command(args.cmd.or(file.cmd), args.cmd_args.or(file.cmd_args))?,
            signal: signal(
                args.pid_file_name.or(file.pid_file_name),
                args.renew_signal.or(file.renew_signal),
            )?,
        };
        let daemon_mode = if args.one_shot {
            false
        } else {
            args.daemon_mode.or(file.daemon_mode).unwrap_or(true)
        };
        Ok(Self {
            endpoint,
            files,
            jwt,
            notify,
            daemon_mode,
        })
    }
}

/// `--socket-path` wins, then `agent_address`, then `SPIFFE_ENDPOINT_SOCKET`, then the default.
fn endpoint(flags: &EndpointArgs, agent_address: Option<&str>) -> Result<Endpoint, ConfigError> {
    if flags.socket_path.is_none()
        && let Some(address) = agent_address
    {
        if address.starts_with("unix:") {
            return Endpoint::parse(address).map_err(|error| ConfigError::Invalid {
                key: "agent_address",
                value: address.to_owned(),
                reason: format!("{error}; expected a socket path or unix:///path/to/api.sock"),
            });
        }
        return Ok(Endpoint::Unix(PathBuf::from(address)));
    }
    flags.endpoint().map_err(|error| ConfigError::Invalid {
        key: "agent_address",
        value: String::new(),
        reason: format!("{error:#}"),
    })
}

/// Checks that `name` is a single file name, so every file stays inside `cert_dir`.
pub(super) fn file_name(key: &'static str, name: String) -> Result<String, ConfigError> {
    let path = Path::new(&name);
    if name.is_empty() || name == "." || name == ".." || path.file_name() != Some(path.as_os_str())
    {
        return Err(ConfigError::Invalid {
            key,
            value: name,
            reason: "expected a plain file name without '/', such as svid.pem".to_owned(),
        });
    }
    Ok(name)
}

/// Returns the mode from the flag, else the file, else `default`, checked to be at most 0777.
pub(super) fn mode(
    key: &'static str,
    flag: Option<FileMode>,
    file: Option<FileMode>,
    default: u32,
) -> Result<u32, ConfigError> {
    let Some(value) = flag.or(file) else {
        return Ok(default);
    };
    let (mode, shown) = match value {
        FileMode::Number(number) => (Some(number), format!("{number:#o}")),
        FileMode::Octal(text) => {
            let digits = text.strip_prefix("0o").unwrap_or(&text);
            (u32::from_str_radix(digits, 8).ok(), text)
        }
    };
    match mode {
        Some(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(ConfigError::Invalid {
            key,
            value: shown,
            reason: "expected an octal mode from 0 to 0777, such as 0644".to_owned(),
        }),
    }
}

fn command(
    cmd: Option<String>,
    cmd_args: Option<String>,
) -> Result<Option<(String, Vec<String>)>, ConfigError> {
    match (cmd, cmd_args) {
        (Some(cmd), _) if cmd.trim().is_empty() => Err(ConfigError::Invalid {
            key: "cmd",
            value: cmd,
            reason: "expected a program name or path".to_owned(),
        }),
        (Some(cmd), args) => {
            let args = args
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            Ok(Some((cmd, args)))
        }
        (None, Some(_)) => Err(ConfigError::Rejected(
            "cmd_args is set without cmd: set --cmd or `cmd` too",
        )),
        (None, None) => Ok(None),
    }
}

fn signal(
    pid_file: Option<PathBuf>,
    renew_signal: Option<String>,
) -> Result<Option<(PathBuf, Signal)>, ConfigError> {
    match (pid_file, renew_signal) {
        (Some(pid_file), Some(name)) => Ok(Some((pid_file, parse_signal(&name)?))),
        (None, None) => Ok(None),
        _ => Err(ConfigError::Rejected(
            "pid_file_name and renew_signal go together: set both or neither",
        )),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
