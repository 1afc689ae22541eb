//! Settings of `signet-oidc run`: flags and an optional TOML file, merged and validated once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use signet_core::duration::parse_ttl;

use crate::domain::DomainAllowList;
use signet_core::provider_url::{DEFAULT_KEYS_SUFFIX, ProviderUrl};

/// Admin socket of a server started with its defaults.
pub const DEFAULT_ADMIN_SOCKET: &str = "/tmp/signet-server/private/api.sock";

const DEFAULT_LISTEN_ADDRESS: &str = "127.0.0.1:8443";
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Flags of `signet-oidc run`. Each one overrides the config file key of the same name (with `_`
/// for `-`); `--domain` overrides the `domains` list.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RunArgs {
    /// TOML file with any of the settings below as keys, for example
    /// `issuer = "https://oidc.example.org"`.
    #[arg(long, env = "SIGNET_OIDC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Issuer URL, published as `issuer` exactly as written; it must equal the server's
    /// --jwt-issuer (required).
    #[arg(long)]
    pub issuer: Option<String>,
    /// URL published as `jwks_uri`; its path is where this provider serves the JWKS
    /// [default: <issuer>/keys].
    #[arg(long)]
    pub jwks_uri: Option<String>,
    /// Host name or IP address that requests may name in their Host header, besides the
    /// issuer's host, which is always allowed; repeat for more.
    #[arg(long = "domain", value_name = "NAME")]
    pub domains: Vec<String>,
    /// Unix socket of the server's admin API
    /// [default: /tmp/signet-server/private/api.sock].
    #[arg(long)]
    pub admin_socket: Option<PathBuf>,
    /// Time between bundle reads from the server, for example `10s` [default: 10s].
    #[arg(long)]
    pub poll_interval: Option<String>,
    /// Address to listen on, IP:PORT [default: 127.0.0.1:8443].
    #[arg(long)]
    pub listen_address: Option<String>,
    /// PEM certificate chain served over TLS; reloaded when the file changes.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; reloaded when the file changes.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Serves plain HTTP instead of TLS, for use behind a proxy that terminates TLS.
    #[arg(long)]
    pub insecure_http: bool,
}

/// Validated settings of a running provider.
#[derive(Clone, Debug)]
pub struct Config {
    /// Issuer published in the discovery document.
    pub issuer: ProviderUrl,
    /// JWKS URL published in the discovery document.
    pub jwks_uri: ProviderUrl,
    /// Host names requests may use.
    pub domains: DomainAllowList,
    /// Path of the server's admin API socket.
    pub admin_socket: PathBuf,
    /// Time between bundle reads.
    pub poll_interval: Duration,
    /// Address of the HTTP listener.
    pub listen_address: SocketAddr,
    /// TLS or plain HTTP.
    pub transport: Transport,
}

/// Connection security of the listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP, for a TLS-terminating proxy in front.
    InsecureHttp,
    /// TLS with a certificate and key read from PEM files, reloaded when they change.
    Tls {
        /// PEM certificate chain, leaf first.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
}

pub use signet_core::config::ConfigError;

/// The config file as written; every key is optional because flags may supply it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    issuer: Option<String>,
    jwks_uri: Option<String>,
    domains: Option<Vec<String>>,
    admin_socket: Option<PathBuf>,
    poll_interval: Option<DurationValue>,
    listen_address: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_http: Option<bool>,
}

/// A duration in the config file: a number of seconds or text such as `"10s"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(u64),
    Text(String),
}

impl Config {
    /// Reads the config file named by `args` (if any), lets the flags override it and validates
    /// the result.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file, key or value that cannot be used.
    pub fn load(args: &RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => signet_core::config::read_toml(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    fn merge(args: &RunArgs, file: FileConfig) -> Result<Self, ConfigError> {
        let issuer = issuer(args.issuer.clone().or(file.issuer))?;
        let jwks_uri = jwks_uri(args.jwks_uri.clone().or(file.jwks_uri), &issuer)?;
        let domains = if args.domains.is_empty() {
            file.domains
        } else {
            Some(args.domains.clone())
        };
        let admin_socket = args
            .admin_socket
            .clone()
            .or(file.admin_socket)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ADMIN_SOCKET));

        Ok(Self {
            domains: domain_allow_list(domains, &issuer)?,
            issuer,
            jwks_uri,
            admin_socket,
            poll_interval: poll_interval(args.poll_interval.as_deref(), file.poll_interval)?,
            listen_address: listen_address(args.listen_address.clone().or(file.listen_address))?,
            transport: transport(
                args.tls_cert.clone().or(file.tls_cert),
                args.tls_key.clone().or(file.tls_key),
                args.insecure_http || file.insecure_http.unwrap_or(false),
            )?,
        })
    }
}

fn issuer(text: Option<String>) -> Result<ProviderUrl, ConfigError> {
    let text = text.ok_or(ConfigError::Missing {
        key: "issuer",
        flag: "issuer",
    })?;
    provider_url("issuer", &text)
}

fn jwks_uri(text: Option<String>, issuer: &ProviderUrl) -> Result<ProviderUrl, ConfigError> {
    match text {
        Some(text) => provider_url("jwks_uri", &text),
        None => issuer
            .join(DEFAULT_KEYS_SUFFIX)
            .map_err(|error| ConfigError::Invalid {
                key: "issuer",
                value: issuer.to_string(),
                reason: format!("cannot derive jwks_uri from it: {error}"),
            }),
    }
}

fn provider_url(key: &'static str, text: &str) -> Result<ProviderUrl, ConfigError> {
    ProviderUrl::parse(text).map_err(|error| ConfigError::Invalid {
        key,
        value: text.to_owned(),
        reason: error.to_string(),
    })
}

/// Builds the allow-list: the issuer's host, the one name relying parties find in the discovery
/// document, plus the configured names (a proxy's or health check's).
fn domain_allow_list(
    names: Option<Vec<String>>,
    issuer: &ProviderUrl,
) -> Result<DomainAllowList, ConfigError> {
    let mut names = names.unwrap_or_default();
    names.insert(0, issuer.host());
    DomainAllowList::new(names.iter().map(String::as_str)).map_err(|(value, error)| {
        ConfigError::Invalid {
            key: "domains",
            value,
            reason: error.to_string(),
        }
    })
}

fn poll_interval(flag: Option<&str>, file: Option<DurationValue>) -> Result<Duration, ConfigError> {
    let text = match (flag, file) {
        (Some(text), _) => text.to_owned(),
        (None, Some(DurationValue::Text(text))) => text,
        (None, Some(DurationValue::Seconds(seconds))) => seconds.to_string(),
        (None, None) => return Ok(DEFAULT_POLL_INTERVAL),
    };
    parse_ttl(&text).map_err(|error| ConfigError::Invalid {
        key: "poll_interval",
        value: text.clone(),
        reason: error.to_string(),
    })
}

fn listen_address(address: Option<String>) -> Result<SocketAddr, ConfigError> {
    let address = address.unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_owned());
    address.parse().map_err(|_| ConfigError::Invalid {
        key: "listen_address",
        value: address.clone(),
        reason: "expected IP:PORT, for example 127.0.0.1:8443".to_owned(),
    })
}

fn transport(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    insecure_http: bool,
) -> Result<Transport, ConfigError> {
    match (cert, key, insecure_http) {
        (Some(cert), Some(key), false) => Ok(Transport::Tls { cert, key }),
        (None, None, true) => Ok(Transport::InsecureHttp),
        (None, None, false) => Err(ConfigError::Rejected(
            "missing TLS files: set --tls-cert and --tls-key, or --insecure-http behind a \
             TLS-terminating proxy",
        )),
        (_, _, true) => Err(ConfigError::Rejected(
            "--insecure-http cannot be combined with --tls-cert or --tls-key: choose one",
        )),
        (Some(_), None, false) => Err(ConfigError::Missing {
            key: "tls_key",
            flag: "tls-key",
        }),
        (None, Some(_), false) => Err(ConfigError::Missing {
            key: "tls_cert",
            flag: "tls-cert",
        }),
    }
}

#[cfg(test)]
mod tests;
