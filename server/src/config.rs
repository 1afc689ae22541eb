//! Settings of `signet-server run`: flags and an optional TOML file, merged and validated once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signet_core::config::parse_listen_address;
use signet_core::duration::parse_ttl;
use signet_core::ids::parse_trust_domain;
use signet_core::provider_url::ProviderUrl;
use spiffe::TrustDomain;

use crate::ca::{KeyType, UpstreamCa};
use crate::jwt::JwtKeyType;

/// Admin socket path used when neither a flag nor the config file sets one.
pub const DEFAULT_ADMIN_SOCKET: &str = "/tmp/signet-server/private/api.sock";

const DEFAULT_DATA_DIR: &str = ".signet-server";
const DEFAULT_BIND_ADDRESS: &str = "127.0.0.1:8081";
const DEFAULT_CA_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_X509_SVID_TTL: Duration = Duration::from_secs(3600);
const DEFAULT_AGENT_SVID_TTL: Duration = Duration::from_secs(3600);
/// SPIRE's default JWT-SVID lifetime.
const DEFAULT_JWT_SVID_TTL: Duration = Duration::from_secs(5 * 60);
const DATASTORE_FILE: &str = "datastore.sqlite3";

/// Flags of `signet-server run`. Each one overrides the key of the same name (with `_` for `-`)
/// in the config file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RunArgs {
    /// TOML file with any of the settings below as keys, for example `trust_domain = "example.org"`.
    #[arg(long, env = "SIGNET_SERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Trust domain of the SPIFFE IDs this server issues, for example `example.org` (required).
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// Directory for the CA and the SQLite datastore [default: ./.signet-server].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the agent API (TLS) [default: 127.0.0.1:8081].
    #[arg(long)]
    pub bind_address: Option<String>,
    /// Unix socket of the admin API; only the server's user may connect
    /// [default: /tmp/signet-server/private/api.sock].
    #[arg(long, env = "SIGNET_SERVER_ADMIN_SOCKET")]
    pub admin_socket: Option<PathBuf>,
    /// Datastore URL: `sqlite://PATH` or `postgres://USER@HOST/DB`
    /// [default: sqlite://<data-dir>/datastore.sqlite3].
    #[arg(long)]
    pub database: Option<String>,
    /// Lifetime of the signing CA, for example `24h` [default: 24h].
    #[arg(long, allow_hyphen_values = true)]
    pub ca_ttl: Option<String>,
    /// Lifetime of workload X509-SVIDs whose entry sets no TTL, for example `1h` [default: 1h].
    #[arg(long, allow_hyphen_values = true)]
    pub default_x509_svid_ttl: Option<String>,
    /// Key type of the signing CA: ec-p256, ec-p384 or rsa-2048 [default: ec-p256].
    #[arg(long)]
    pub ca_key_type: Option<String>,
    /// PEM certificate (chain allowed) of an upstream CA that signs this server's CA.
    #[arg(long, requires = "upstream_ca_key")]
    pub upstream_ca_cert: Option<PathBuf>,
    /// PEM private key of the upstream CA.
    #[arg(long, requires = "upstream_ca_cert")]
    pub upstream_ca_key: Option<PathBuf>,
    /// Lifetime of agent X509-SVIDs, for example `1h` [default: 1h].
    #[arg(long, allow_hyphen_values = true)]
    pub agent_svid_ttl: Option<String>,
    /// Algorithm of the JWT-SVID signing key: es256, rs256 or ps256 [default: es256].
    #[arg(long)]
    pub jwt_key_type: Option<String>,
    /// Issuer URL put in the `iss` claim of every JWT-SVID, for OIDC relying parties, for example
    /// `https://oidc.example.org` [default: no `iss` claim].
    #[arg(long)]
    pub jwt_issuer: Option<String>,
    /// Lifetime of JWT-SVIDs whose entry sets no JWT-SVID TTL, for example `5m` [default: 5m].
    #[arg(long, allow_hyphen_values = true)]
    pub default_jwt_svid_ttl: Option<String>,
    /// Address (IP:PORT) of the Prometheus endpoint `GET /metrics` [default: off].
    #[arg(long)]
    pub metrics_address: Option<String>,
    /// Address (IP:PORT) of the health probes `GET /live` and `GET /ready`; it may equal
    /// --metrics-address [default: off].
    #[arg(long)]
    pub health_address: Option<String>,
}

/// Validated settings of a running server.
#[derive(Clone)]
pub struct Config {
    /// Trust domain of every SPIFFE ID this server issues.
    pub trust_domain: TrustDomain,
    /// Absolute directory of the CA files and the default SQLite datastore.
    pub data_dir: PathBuf,
    /// Address of the agent API.
    pub bind_address: SocketAddr,
    /// Path of the admin API socket.
    pub admin_socket: PathBuf,
    /// Datastore URL; it may hold a database password, so Debug hides it.
    pub database_url: String,
    /// Lifetime of the signing CA.
    pub ca_ttl: Duration,
    /// Lifetime of workload X509-SVIDs whose entry has no TTL of its own.
    pub default_x509_svid_ttl: Duration,
    /// Lifetime of agent X509-SVIDs.
    pub agent_svid_ttl: Duration,
    /// Key type of the signing CA.
    pub ca_key_type: KeyType,
    /// Algorithm of the JWT-SVID signing key.
    pub jwt_key_type: JwtKeyType,
    /// Value of the `iss` claim of JWT-SVIDs, if any.
    pub jwt_issuer: Option<String>,
    /// Lifetime of JWT-SVIDs whose entry has no JWT-SVID TTL of its own.
    pub default_jwt_svid_ttl: Duration,
    /// Upstream CA that signs this server's CA, if any.
    pub upstream: Option<UpstreamCa>,
    /// Address of the Prometheus endpoint, if enabled.
    pub metrics_address: Option<SocketAddr>,
    /// Address of the health probes, if enabled.
    pub health_address: Option<SocketAddr>,
}

pub use signet_core::config::ConfigError;

/// The config file as written; every key is optional because flags may supply it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    trust_domain: Option<String>,
    data_dir: Option<PathBuf>,
    bind_address: Option<String>,
    admin_socket: Option<PathBuf>,
    database: Option<String>,
    ca_ttl: Option<TtlValue>,
    default_x509_svid_ttl: Option<TtlValue>,
    ca_key_type: Option<String>,
    upstream_ca_cert: Option<PathBuf>,
    upstream_ca_key: Option<PathBuf>,
    agent_svid_ttl: Option<TtlValue>,
    jwt_key_type: Option<String>,
    jwt_issuer: Option<String>,
    default_jwt_svid_ttl: Option<TtlValue>,
    metrics_address: Option<String>,
    health_address: Option<String>,
}

/// A TTL in the config file: a number of seconds or text such as `"1h"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TtlValue {
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
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let data_dir = absolute(&data_dir, "data_dir")?;
        let admin_socket = args
            .admin_socket
            .clone()
            .or(file.admin_socket)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ADMIN_SOCKET));

        Ok(Self {
            trust_domain: trust_domain(args.trust_domain.clone().or(file.trust_domain))?,
            database_url: database_url(args.database.clone().or(file.database), &data_dir)?,
            data_dir,
            bind_address: bind_address(args.bind_address.clone().or(file.bind_address))?,
            admin_socket: absolute(&admin_socket, "admin_socket")?,
            ca_ttl: ttl(
                "ca_ttl",
                args.ca_ttl.as_deref(),
                file.ca_ttl,
                DEFAULT_CA_TTL,
            )?,
            default_x509_svid_ttl: ttl(
                "default_x509_svid_ttl",
                args.default_x509_svid_ttl.as_deref(),
                file.default_x509_svid_ttl,
                DEFAULT_X509_SVID_TTL,
            )?,
            agent_svid_ttl: ttl(
                "agent_svid_ttl",
                args.agent_svid_ttl.as_deref(),
                file.agent_svid_ttl,
                DEFAULT_AGENT_SVID_TTL,
            )?,
            ca_key_type: key_type(args.ca_key_type.clone().or(file.ca_key_type))?,
            jwt_key_type: jwt_key_type(args.jwt_key_type.clone().or(file.jwt_key_type))?,
            jwt_issuer: jwt_issuer(args.jwt_issuer.clone().or(file.jwt_issuer))?,
            default_jwt_svid_ttl: ttl(
                "default_jwt_svid_ttl",
                args.default_jwt_svid_ttl.as_deref(),
                file.default_jwt_svid_ttl,
                DEFAULT_JWT_SVID_TTL,
            )?,
            upstream: upstream_ca(
                args.upstream_ca_cert.clone().or(file.upstream_ca_cert),
                args.upstream_ca_key.clone().or(file.upstream_ca_key),
            )?,
            metrics_address: parse_listen_address(
                "metrics_address",
                args.metrics_address.clone().or(file.metrics_address),
            )?,
            health_address: parse_listen_address(
                "health_address",
                args.health_address.clone().or(file.health_address),
            )?,
        })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("trust_domain", &self.trust_domain)
            .field("data_dir", &self.data_dir)
            .field("bind_address", &self.bind_address)
            .field("admin_socket", &self.admin_socket)
            .field("database", &database_kind(&self.database_url))
            .field("ca_ttl", &self.ca_ttl)
            .field("default_x509_svid_ttl", &self.default_x509_svid_ttl)
            .field("agent_svid_ttl", &self.agent_svid_ttl)
            .field("ca_key_type", &self.ca_key_type)
            .field("jwt_key_type", &self.jwt_key_type)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("default_jwt_svid_ttl", &self.default_jwt_svid_ttl)
            .field("upstream", &self.upstream.is_some())
            .field("metrics_address", &self.metrics_address)
            .field("health_address", &self.health_address)
            .finish()
    }
}

fn trust_domain(name: Option<String>) -> Result<TrustDomain, ConfigError> {
    let name = name.ok_or(ConfigError::Missing {
        key: "trust_domain",
        flag: "trust-domain",
    })?;
    parse_trust_domain(&name).map_err(|_| ConfigError::Invalid {
        key: "trust_domain",
        value: name.clone(),
        reason: "expected a lower-case name such as example.org, without spiffe://".to_owned(),
    })
}

fn database_url(url: Option<String>, data_dir: &Path) -> Result<String, ConfigError> {
    match url {
        Some(url) => parse_database_url(url),
        None => Ok(format!(
            "sqlite://{}",
            data_dir.join(DATASTORE_FILE).display()
        )),
    }
}

fn bind_address(address: Option<String>) -> Result<SocketAddr, ConfigError> {
    let address = address.unwrap_or_else(|| DEFAULT_BIND_ADDRESS.to_owned());
    address.parse().map_err(|_| ConfigError::Invalid {
        key: "bind_address",
        value: address.clone(),
        reason: "expected IP:PORT, for example 127.0.0.1:8081".to_owned(),
    })
}

fn key_type(name: Option<String>) -> Result<KeyType, ConfigError> {
    let Some(name) = name else {
        return Ok(KeyType::default());
    };
    name.parse().map_err(|error| ConfigError::Invalid {
        key: "ca_key_type",
        value: name.clone(),
        reason: format!("{error}"),
    })
}

fn jwt_key_type(name: Option<String>) -> Result<JwtKeyType, ConfigError> {
    let Some(name) = name else {
        return Ok(JwtKeyType::default());
    };
    name.parse().map_err(|error| ConfigError::Invalid {
        key: "jwt_key_type",
        value: name.clone(),
        reason: format!("{error}"),
    })
}

/// Accepts an absolute http(s) URL without user info, query, fragment or dot segments, as
/// OpenID Connect Discovery requires of an issuer and as `signet-oidc` checks it, so every token's
/// `iss` is one a discovery provider can serve.
fn jwt_issuer(issuer: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(issuer) = issuer else {
        return Ok(None);
    };
    ProviderUrl::parse(&issuer).map_err(|error| ConfigError::Invalid {
        key: "jwt_issuer",
        value: issuer.clone(),
        reason: error.to_string(),
    })?;
    Ok(Some(issuer))
}

fn ttl(
    key: &'static str,
    flag: Option<&str>,
    file: Option<TtlValue>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let text = match (flag, file) {
        (Some(text), _) => text.to_owned(),
        (None, Some(TtlValue::Text(text))) => text,
        (None, Some(TtlValue::Seconds(seconds))) => seconds.to_string(),
        (None, None) => return Ok(default),
    };
    parse_ttl(&text).map_err(|error| ConfigError::Invalid {
        key,
        value: text.clone(),
        reason: error.to_string(),
    })
}

fn upstream_ca(
    cert_path: Option<PathBuf>,
    key_path: Option<PathBuf>,
) -> Result<Option<UpstreamCa>, ConfigError> {
    match (cert_path, key_path) {
        (Some(cert_path), Some(key_path)) => Ok(Some(UpstreamCa {
            cert_path,
            key_path,
        })),
        (None, None) => Ok(None),
        (Some(path), None) => Err(ConfigError::Invalid {
            key: "upstream_ca_cert",
            value: path.display().to_string(),
            reason: "upstream_ca_key must be set too".to_owned(),
        }),
        (None, Some(path)) => Err(ConfigError::Invalid {
            key: "upstream_ca_key",
            value: path.display().to_string(),
            reason: "upstream_ca_cert must be set too".to_owned(),
        }),
    }
}

fn parse_database_url(url: String) -> Result<String, ConfigError> {
    if database_kind(&url) == "unknown" {
        return Err(ConfigError::Invalid {
            key: "database",
            value: redact_database_url(&url),
            reason: "expected a URL starting with sqlite:// or postgres://".to_owned(),
        });
    }
    Ok(url)
}

fn database_kind(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        "postgres"
    } else {
        "unknown"
    }
}

/// Hides the user info of a URL, because it may hold a password.
fn redact_database_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://…@{host}"),
        None => url.to_owned(),
    }
}

fn absolute(path: &Path, key: &'static str) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path).map_err(|error| ConfigError::Invalid {
        key,
        value: path.display().to_string(),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests;
