//! JWT settings of `signet-agent helper`: the JWT-SVID files (`jwt_svids`), the JWT bundle file
//! (`jwt_bundle_file_name`) and their modes, with spiffe-helper's key names.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use signet_core::config::ConfigError;
use signet_core::fs::{PUBLIC_FILE_MODE, SECRET_FILE_MODE};

use super::config::{FileMode, file_name, mode};

/// Flags of the JWT files, flattened into the helper's arguments.
#[derive(Debug, Default, clap::Args)]
pub struct JwtArgs {
    /// JWT-SVID file to keep current, as AUDIENCE=FILE_NAME (split at the last '='). Repeat
    /// the flag for several audiences. Replaces `jwt_svids` of the config file.
    #[arg(long = "jwt-svid", value_name = "AUDIENCE=FILE_NAME")]
    pub jwt_svids: Vec<String>,
    /// Name of the file that receives the JWT bundle of the SVID's trust domain, as a JWK Set.
    #[arg(long, value_name = "NAME")]
    pub jwt_bundle_file_name: Option<String>,
    /// Octal mode of the JWT-SVID files [default: 0600].
    #[arg(long, value_name = "MODE")]
    pub jwt_svid_file_mode: Option<String>,
    /// Octal mode of the JWT bundle file [default: 0644].
    #[arg(long, value_name = "MODE")]
    pub jwt_bundle_file_mode: Option<String>,
}

/// Values of the config file's JWT keys. The config file's struct contains them as its own
/// fields, because serde cannot reject unknown keys across a flattened struct.
#[derive(Debug, Default)]
pub(super) struct JwtFileSettings {
    pub(super) jwt_svids: Vec<JwtSvidSetting>,
    pub(super) jwt_bundle_file_name: Option<String>,
    pub(super) jwt_svid_file_mode: Option<FileMode>,
    pub(super) jwt_bundle_file_mode: Option<FileMode>,
}

/// One element of `jwt_svids`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JwtSvidSetting {
    jwt_audience: String,
    #[serde(default)]
    jwt_extra_audiences: Vec<String>,
    jwt_svid_file_name: String,
}

/// The JWT files to keep current. Empty when no JWT setting is given.
#[derive(Debug, Clone, Default)]
pub struct JwtPlan {
    /// One file per requested JWT-SVID.
    pub svids: Vec<JwtSvidFile>,
    /// File for the JWT bundle of the SVID's trust domain, as a JWK Set.
    pub bundle_file: Option<PathBuf>,
    /// Mode of the JWT-SVID files; they hold bearer tokens.
    pub svid_file_mode: u32,
    /// Mode of the JWT bundle file.
    pub bundle_file_mode: u32,
}

/// A JWT-SVID file: the token's audience and where it goes.
#[derive(Debug, Clone, Eq, PartialEq)]
pub struct JwtSvidFile {
    /// Audience of the token: `jwt_audience` first, then `jwt_extra_audiences`. Never empty.
    pub audience: Vec<String>,
    /// Path of the file in `cert_dir`.
    pub path: PathBuf,
}

// === impl JwtPlan ===

impl JwtPlan {
    /// Merges the JWT flags with the config file's keys and checks the result. Every file name
    /// must be a plain name that differs from `x509_names`, the names of the X.509 files.
    pub(super) fn merge(
        args: JwtArgs,
        file: JwtFileSettings,
        cert_dir: &Path,
        x509_names: &[&str],
    ) -> Result<Self, ConfigError> {
        let settings = if args.jwt_svids.is_empty() {
            file.jwt_svids
        } else {
            args.jwt_svids
                .iter()
                .map(|flag| parse_jwt_svid_flag(flag))
                .collect::<Result<_, _>>()?
        };
        let mut names: Vec<String> = x509_names.iter().map(|name| (*name).to_owned()).collect();
        let mut svids = Vec::with_capacity(settings.len());
        for setting in settings {
            let name = unique_name("jwt_svid_file_name", setting.jwt_svid_file_name, &names)?;
            svids.push(JwtSvidFile {
                audience: audience(setting.jwt_audience, setting.jwt_extra_audiences)?,
                path: cert_dir.join(&name),
            });
            names.push(name);
        }
        let bundle_file = args
            .jwt_bundle_file_name
            .or(file.jwt_bundle_file_name)
            .map(|name| unique_name("jwt_bundle_file_name", name, &names))
            .transpose()?
            .map(|name| cert_dir.join(name));
        Ok(Self {
            svids,
            bundle_file,
            svid_file_mode: mode(
                "jwt_svid_file_mode",
                args.jwt_svid_file_mode.map(FileMode::Octal),
                file.jwt_svid_file_mode,
                SECRET_FILE_MODE,
            )?,
            bundle_file_mode: mode(
                "jwt_bundle_file_mode",
                args.jwt_bundle_file_mode.map(FileMode::Octal),
                file.jwt_bundle_file_mode,
                PUBLIC_FILE_MODE,
            )?,
        })
    }

    /// Returns true when no JWT file is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.svids.is_empty() && self.bundle_file.is_none()
    }
}

/// Parses `--jwt-svid AUDIENCE=FILE_NAME`. The split is at the last '=', because an audience
/// may be a URL whose query contains '=' while a file name rarely does.
fn parse_jwt_svid_flag(flag: &str) -> Result<JwtSvidSetting, ConfigError> {
    match flag.rsplit_once('=') {
        Some((audience, name)) if !audience.is_empty() && !name.is_empty() => Ok(JwtSvidSetting {
            jwt_audience: audience.to_owned(),
            jwt_extra_audiences: Vec::new(),
            jwt_svid_file_name: name.to_owned(),
        }),
        _ => Err(ConfigError::Invalid {
            key: "jwt_svids",
            value: flag.to_owned(),
            reason: "expected --jwt-svid AUDIENCE=FILE_NAME, such as orders=orders.token"
                .to_owned(),
        }),
    }
}

/// Returns `first` followed by `extra`, each checked to be non-empty.
fn audience(first: String, extra: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let audience: Vec<String> = std::iter::once(first).chain(extra).collect();
    if let Some(blank) = audience.iter().find(|value| value.trim().is_empty()) {
        return Err(ConfigError::Invalid {
            key: "jwt_audience",
            value: blank.clone(),
            reason: "expected a non-empty audience, such as spiffe://example.org/api".to_owned(),
        });
    }
    Ok(audience)
}

/// Checks that `name` is a plain file name that no other file of the helper uses.
fn unique_name(
    key: &'static str,
    name: String,
    used_names: &[String],
) -> Result<String, ConfigError> {
    let name = file_name(key, name)?;
    if used_names.contains(&name) {
        return Err(ConfigError::Invalid {
            key,
            value: name,
            reason: "another file of the helper has this name; give each file its own name"
                .to_owned(),
        });
    }
    Ok(name)
}
