//! Settings errors and config file reading shared by every Signet binary.
//!
//! Each binary takes its settings as flags and as keys of an optional TOML file. The file is read
//! into a raw struct that rejects unknown keys, then checked into the binary's own typed settings.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Error in a binary's settings. Every message names the setting and, unless it is a secret, the
/// rejected value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file named by the settings could not be read.
    #[error("failed to read {what} {path}")]
    ReadFile {
        /// Purpose of the file, such as "config file" or "trust bundle".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a value of the wrong type.
    #[error("invalid config file {path}: {message}")]
    ParseFile {
        /// The config file.
        path: PathBuf,
        /// The parser's description, which names the key and the line.
        message: String,
    },
    /// A required setting is missing.
    #[error("missing {key}: set --{flag} or `{key}` in the config file")]
    Missing {
        /// The config file key.
        key: &'static str,
        /// The flag.
        flag: &'static str,
    },
    /// A setting has a value that cannot be used.
    #[error("invalid {key} {value:?}: {reason}")]
    Invalid {
        /// The config file key.
        key: &'static str,
        /// The rejected value.
        value: String,
        /// The problem and the expected form.
        reason: String,
    },
    /// Settings that exclude each other, or a secret whose value must not appear in the message.
    #[error("{0}")]
    Rejected(&'static str),
}

/// Reads a TOML config file into `T`, whose `serde(deny_unknown_fields)` rejects unknown keys.
///
/// # Errors
///
/// [`ConfigError::ReadFile`] when the file cannot be read, [`ConfigError::ParseFile`] with the
/// parser's message and line when it is not valid for `T`.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        what: "config file",
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::ParseFile {
        path: path.to_owned(),
        message: with_line(error.message(), &text, error.span()),
    })
}

/// Parses the optional `HOST:PORT` address of an HTTP endpoint, such as `metrics_address`.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `key` when the value is not an IP address and port.
pub fn parse_listen_address(
    key: &'static str,
    value: Option<String>,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.parse() {
        Ok(address) => Ok(Some(address)),
        Err(_) => Err(ConfigError::Invalid {
            key,
            value,
            reason: "expected IP:PORT, for example 127.0.0.1:9090".to_owned(),
        }),
    }
}

/// Appends " at line N" to a TOML error message when the error has a position.
fn with_line(message: &str, text: &str, span: Option<Range<usize>>) -> String {
    let Some(span) = span else {
        return message.to_owned();
    };
    let line = text
        .get(..span.start)
        .map_or(0, |before| before.matches('\n').count())
        + 1;
    format!("{message} at line {line}")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[expect(dead_code, reason = "only parsed")]
        name: Option<String>,
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let file = write("name = \"a\"\ncolour = \"red\"\n");
        let error = read_toml::<Settings>(file.path()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ConfigError::ParseFile { .. }), "{error:?}");
        assert!(message.contains("colour"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn listen_address_needs_ip_and_port() {
        let parse = |value: &str| parse_listen_address("metrics_address", Some(value.to_owned()));
        assert_eq!(
            parse("127.0.0.1:9090").unwrap(),
            Some(([127, 0, 0, 1], 9090).into())
        );
        assert!(parse("[::1]:0").is_ok());
        for value in ["localhost:9090", "127.0.0.1", ":9090"] {
            let error = parse(value).unwrap_err();
            assert!(error.to_string().contains("metrics_address"), "{error}");
        }
        assert_eq!(parse_listen_address("health_address", None).unwrap(), None);
    }

    #[test]
    fn missing_file_keeps_io_error() {
        let error = read_toml::<Settings>(Path::new("/nonexistent/signet.toml")).unwrap_err();
        let ConfigError::ReadFile { source, .. } = error else {
            panic!("expected ReadFile, got {error:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    }
}
