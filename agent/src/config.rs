//! Settings of `signet-agent run`: flags and an optional TOML file, merged and validated once.

use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use signet_core::ids::{join_token_agent_id, parse_trust_domain};
use spiffe::TrustDomain;
use zeroize::Zeroizing;

/// Environment variable with the join token, so it need not appear in the process list.
pub const JOIN_TOKEN_ENV: &str = "SIGNET_AGENT_JOIN_TOKEN";

/// Workload API socket path used when neither a flag nor the config file sets one.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/signet-agent/public/api.sock";

const DEFAULT_SERVER_ADDRESS: &str = "127.0.0.1:8081";
const DEFAULT_DATA_DIR: &str = ".signet-agent";

/// Flags of `signet-agent run`. Each one overrides the key of the same name (with `_` for `-`)
/// in the config file.
#[derive(Clone, Default, clap::Args)]
pub struct RunArgs {
    /// TOML file with any of the settings below as keys, for example `trust_domain = "example.org"`.
    #[arg(long, env = "SIGNET_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the server's agent API as HOST:PORT [default: 127.0.0.1:8081].
    #[arg(long)]
    pub server_address: Option<String>,
    /// Trust domain of the server, for example `example.org` (required).
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// One-time join token from `signet-server token generate`, needed for the first start only.
    #[arg(long, env = JOIN_TOKEN_ENV, hide_env_values = true)]
    pub join_token: Option<String>,
    /// PEM file with the server's CA certificates, trusted for the first attestation
    /// (config key `trust_bundle_path`).
    #[arg(long, conflicts_with = "insecure_bootstrap")]
    pub trust_bundle: Option<PathBuf>,
    /// Trust whatever server responds at the first attestation, without a trust bundle.
    /// Open to an active attacker on the network: use for tests only.
    #[arg(long)]
    pub insecure_bootstrap: bool,
    /// Directory for the agent's SVID, key and trust bundle [default: ./.signet-agent].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Unix socket of the Workload API [default: /tmp/signet-agent/public/api.sock].
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
    /// Keep the workload X509-SVIDs, their private keys (mode 0600) and the bundles in the data
    /// directory, so a restarted agent serves them while the server is unreachable. `false`
    /// deletes them at start [default: true].
    #[arg(long, value_name = "BOOL")]
    pub persist_workload_svids: Option<bool>,
}

/// Validated settings of a running agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Server address as `HOST:PORT`.
    pub server_address: ServerAddress,
    /// Trust domain of the server, the agent and every SVID it serves.
    pub trust_domain: TrustDomain,
    /// Join token for the first attestation.
    pub join_token: Option<JoinToken>,
    /// Source of trust in the server before the agent has a stored bundle.
    pub bootstrap: Bootstrap,
    /// Directory of the agent's persisted SVID, key and bundle.
    pub data_dir: PathBuf,
    /// Path of the Workload API socket.
    pub socket_path: PathBuf,
    /// Whether workload X509-SVIDs, their keys and the bundles are kept in the data directory.
    pub persist_workload_svids: bool,
}

/// A server address split into host and port, for example `127.0.0.1:8081` or `[::1]:8081`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerAddress {
    /// Host name or IP address, without brackets.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

/// A join token. Debug hides its value because anyone with the token can attest as an agent.
#[derive(Clone)]
pub struct JoinToken(Zeroizing<String>);

/// Source of trust in the server for the first attestation.
#[derive(Clone, Debug)]
pub enum Bootstrap {
    /// Trust no server until the agent has a stored bundle from an earlier attestation.
    None,
    /// Skip server verification for the first attestation (`--insecure-bootstrap`).
    InsecureBootstrap,
    /// Trust these CA certificates (`--trust-bundle`).
    TrustBundle(Vec<CertificateDer<'static>>),
}

pub use signet_core::config::ConfigError;

/// The config file as written. Every key is optional because flags may supply it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server_address: Option<String>,
    trust_domain: Option<String>,
    join_token: Option<String>,
    trust_bundle_path: Option<PathBuf>,
    insecure_bootstrap: Option<bool>,
    data_dir: Option<PathBuf>,
    socket_path: Option<PathBuf>,
    persist_workload_svids: Option<bool>,
}

// === impl RunArgs ===

impl fmt::Debug for RunArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunArgs")
            .field("config", &self.config)
            .field("server_address", &self.server_address)
            .field("trust_domain", &self.trust_domain)
            .field(
                "join_token",
                &self.join_token.as_ref().map(|_| "<redacted>"),
            )
            .field("trust_bundle", &self.trust_bundle)
            .field("insecure_bootstrap", &self.insecure_bootstrap)
            .field("data_dir", &self.data_dir)
            .field("socket_path", &self.socket_path)
            .field("persist_workload_svids", &self.persist_workload_svids)
            .finish()
    }
}

// === impl AgentConfig ===

impl AgentConfig {
    /// Merges the flags with the config file they name (flags win) and validates the result.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first setting that is missing, unreadable or invalid.
    pub fn from_args(args: RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => signet_core::config::read_toml(path)?,
            None => FileConfig::default(),
        };

        let trust_domain_text =
            args.trust_domain
                .or(file.trust_domain)
                .ok_or(ConfigError::Missing {
                    key: "trust_domain",
                    flag: "trust-domain",
                })?;
        let trust_domain = parse_trust_domain(&trust_domain_text)
            .map_err(|error| invalid("trust_domain", &trust_domain_text, error))?;
        let server_address = args
            .server_address
            .or(file.server_address)
            .unwrap_or_else(|| DEFAULT_SERVER_ADDRESS.to_owned());
        let join_token = args
            .join_token
            .or(file.join_token)
            .map(Zeroizing::new)
            .map(|token| JoinToken::parse(token, &trust_domain))
            .transpose()?;
        let trust_bundle = args.trust_bundle.or(file.trust_bundle_path);
        let insecure_bootstrap = args.insecure_bootstrap || file.insecure_bootstrap == Some(true);

        Ok(Self {
            server_address: ServerAddress::parse(&server_address)?,
            bootstrap: Bootstrap::from_settings(trust_bundle.as_deref(), insecure_bootstrap)?,
            join_token,
            trust_domain,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            socket_path: args
                .socket_path
                .or(file.socket_path)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH)),
            // Availability first: an agent restarted during an outage keeps serving.
            persist_workload_svids: args
                .persist_workload_svids
                .or(file.persist_workload_svids)
                .unwrap_or(true),
        })
    }
}

// === impl ServerAddress ===

impl ServerAddress {
    /// Parses `HOST:PORT`, with an IPv6 host in brackets.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when the host is empty or the port is missing, not a number or 0.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let reject = |reason: &str| invalid("server_address", text, reason);
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| reject("expected HOST:PORT, for example 127.0.0.1:8081"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || (host.contains(':') && !text.starts_with('[')) {
            return Err(reject(
                "expected HOST:PORT, with an IPv6 host in brackets like [::1]:8081",
            ));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| reject("the port must be a number from 1 to 65535"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

// === impl JoinToken ===

impl JoinToken {
    /// Returns the token's text, for the attestation request only.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    fn parse(token: Zeroizing<String>, trust_domain: &TrustDomain) -> Result<Self, ConfigError> {
        // The token becomes one segment of the agent's SPIFFE ID path.
        let is_segment = !token.is_empty() && !token.contains('/');
        if !is_segment || join_token_agent_id(trust_domain, &token).is_err() {
            return Err(ConfigError::Rejected(INVALID_JOIN_TOKEN));
        }
        Ok(Self(token))
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

// === impl Bootstrap ===

impl Bootstrap {
    fn from_settings(
        trust_bundle: Option<&Path>,
        insecure_bootstrap: bool,
    ) -> Result<Self, ConfigError> {
        match (trust_bundle, insecure_bootstrap) {
            (Some(_), true) => Err(ConfigError::Rejected(CONFLICTING_BOOTSTRAP)),
            (Some(path), false) => Ok(Self::TrustBundle(read_trust_bundle(path)?)),
            (None, true) => Ok(Self::InsecureBootstrap),
            (None, false) => Ok(Self::None),
        }
    }
}

fn read_trust_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let file = std::fs::File::open(path).map_err(|source| ConfigError::ReadFile {
        what: "trust bundle",
        path: path.to_owned(),
        source,
    })?;
    let path_text = path.display().to_string();
    let certificates = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid("trust_bundle_path", &path_text, error))?;
    if certificates.is_empty() {
        return Err(invalid(
            "trust_bundle_path",
            &path_text,
            "the file contains no PEM CERTIFICATE block",
        ));
    }
    Ok(certificates)
}

fn invalid(key: &'static str, value: &str, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests;

/// The join token is not a valid SPIFFE ID path segment; the message leaves out the secret value.
const INVALID_JOIN_TOKEN: &str =
    "invalid join token: use the token exactly as `signet-server token generate` printed it";

/// Both a trust bundle and insecure bootstrap were requested.
const CONFLICTING_BOOTSTRAP: &str =
    "trust_bundle_path and insecure_bootstrap exclude each other: set only one";
