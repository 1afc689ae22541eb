//! Settings of `signet-agent run`: flags and an optional TOML file, merged and validated once.

use std::fmt;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use signet_core::config::parse_listen_address;
use signet_core::fs::shared_mode;
use signet_core::ids::{join_token_agent_id, parse_trust_domain};
use spiffe::TrustDomain;
use zeroize::Zeroizing;

/// Environment variable with the join token, so it need not appear in the process list.
pub const JOIN_TOKEN_ENV: &str = "SIGNET_AGENT_JOIN_TOKEN";

/// Workload API socket path used when neither a flag nor the config file sets one.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/signet-agent/public/api.sock";

/// Admin socket path of an agent with the default Workload API socket path.
pub const DEFAULT_ADMIN_SOCKET: &str = "/tmp/signet-agent/private/admin.sock";

/// Environment variable with the admin socket path, read by `run` and by `explain`.
pub const ADMIN_SOCKET_ENV: &str = "SIGNET_AGENT_ADMIN_SOCKET";

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
    /// File that contains the join token, such as a systemd credential or a mounted secret.
    /// Group and others must not be able to read it. A missing file counts as no token, so the
    /// file can be deleted once the agent has attested.
    #[arg(long, value_name = "FILE")]
    pub join_token_file: Option<PathBuf>,
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
    /// Unix socket of the agent's admin API, which `signet-agent explain` calls. Only the
    /// agent's user can open it [default: private/admin.sock beside the Workload API socket's
    /// directory if that is named `public`, else inside that directory, so
    /// /tmp/signet-agent/private/admin.sock for the default socket].
    #[arg(long, env = ADMIN_SOCKET_ENV)]
    pub admin_socket: Option<PathBuf>,
    /// Keep the workload X509-SVIDs, their private keys (mode 0600) and the bundles in the data
    /// directory, so a restarted agent serves them while the server is unreachable. `false`
    /// deletes them at start [default: true].
    #[arg(long, value_name = "BOOL")]
    pub persist_workload_svids: Option<bool>,
    /// Address (IP:PORT) of the Prometheus endpoint `GET /metrics` [default: off].
    #[arg(long)]
    pub metrics_address: Option<String>,
    /// Address (IP:PORT) of the health probes `GET /live` and `GET /ready`; it may equal
    /// --metrics-address [default: off].
    #[arg(long)]
    pub health_address: Option<String>,
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
    /// Path of the admin socket, mode 0600 in a directory of mode 0700.
    pub admin_socket: PathBuf,
    /// Whether workload X509-SVIDs, their keys and the bundles are kept in the data directory.
    pub persist_workload_svids: bool,
    /// Address of the Prometheus endpoint, if enabled.
    pub metrics_address: Option<SocketAddr>,
    /// Address of the health probes, if enabled.
    pub health_address: Option<SocketAddr>,
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
    join_token_file: Option<PathBuf>,
    trust_bundle_path: Option<PathBuf>,
    insecure_bootstrap: Option<bool>,
    data_dir: Option<PathBuf>,
    socket_path: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    persist_workload_svids: Option<bool>,
    metrics_address: Option<String>,
    health_address: Option<String>,
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
            .field("join_token_file", &self.join_token_file)
            .field("trust_bundle", &self.trust_bundle)
            .field("insecure_bootstrap", &self.insecure_bootstrap)
            .field("data_dir", &self.data_dir)
            .field("socket_path", &self.socket_path)
            .field("admin_socket", &self.admin_socket)
            .field("persist_workload_svids", &self.persist_workload_svids)
            .field("metrics_address", &self.metrics_address)
            .field("health_address", &self.health_address)
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
        let join_token = join_token_text(
            args.join_token.or(file.join_token),
            args.join_token_file.or(file.join_token_file),
        )?
        .map(|token| JoinToken::parse(token, &trust_domain))
        .transpose()?;
        let trust_bundle = args.trust_bundle.or(file.trust_bundle_path);
        let insecure_bootstrap = args.insecure_bootstrap || file.insecure_bootstrap == Some(true);
        let socket_path = args
            .socket_path
            .or(file.socket_path)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH));
        let admin_socket = args
            .admin_socket
            .or(file.admin_socket)
            .unwrap_or_else(|| default_admin_socket(&socket_path));

        Ok(Self {
            server_address: ServerAddress::parse(&server_address)?,
            bootstrap: Bootstrap::from_settings(trust_bundle.as_deref(), insecure_bootstrap)?,
            join_token,
            trust_domain,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            socket_path,
            admin_socket,
            // Availability first: an agent restarted during an outage keeps serving.
            persist_workload_svids: args
                .persist_workload_svids
                .or(file.persist_workload_svids)
                .unwrap_or(true),
            metrics_address: parse_listen_address(
                "metrics_address",
                args.metrics_address.or(file.metrics_address),
            )?,
            health_address: parse_listen_address(
                "health_address",
                args.health_address.or(file.health_address),
            )?,
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

/// Returns the admin socket path for a Workload API socket path: `admin.sock` in a directory
/// `private` beside the socket's directory when that one is named `public` (as in the default
/// layout), else in a directory `private` inside the socket's directory. Agents with different
/// Workload API sockets so get different admin sockets.
fn default_admin_socket(socket_path: &Path) -> PathBuf {
    let Some(socket_dir) = socket_path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
    else {
        return PathBuf::from(DEFAULT_ADMIN_SOCKET);
    };
    let base = match socket_dir.parent() {
        Some(parent) if socket_dir.file_name().is_some_and(|name| name == "public") => parent,
        _ => socket_dir,
    };
    base.join("private").join("admin.sock")
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

/// Returns the join token given directly or read from `file`, whichever is set.
fn join_token_text(
    token: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<Zeroizing<String>>, ConfigError> {
    match (token, file) {
        (Some(_), Some(_)) => Err(ConfigError::Rejected(CONFLICTING_JOIN_TOKENS)),
        (Some(token), None) => Ok(Some(Zeroizing::new(token))),
        (None, Some(path)) => read_join_token_file(&path),
        (None, None) => Ok(None),
    }
}

/// Reads a join token file, trimmed of surrounding white space. A missing file is no token.
fn read_join_token_file(path: &Path) -> Result<Option<Zeroizing<String>>, ConfigError> {
    let read_error = |source| ConfigError::ReadFile {
        what: "join token file",
        path: path.to_owned(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    if let Some(mode) = shared_mode(path).map_err(read_error)? {
        return Err(invalid(
            "join_token_file",
            &path.display().to_string(),
            format!(
                "mode {mode:04o} lets other users read the token; run `chmod 600` on it \
                 (Kubernetes: `defaultMode: 0400`)"
            ),
        ));
    }
    Ok(Some(Zeroizing::new(text.trim().to_owned())))
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

/// Both a join token and a join token file were given.
const CONFLICTING_JOIN_TOKENS: &str =
    "join_token and join_token_file exclude each other: set only one";

/// Both a trust bundle and insecure bootstrap were requested.
const CONFLICTING_BOOTSTRAP: &str =
    "trust_bundle_path and insecure_bootstrap exclude each other: set only one";
