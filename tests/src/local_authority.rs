//! The `signet-server localauthority` CLI, which moves X.509 CAs and JWT signing keys through
//! the prepared, active and old slots, and the authority IDs that name them in certificates.

use std::process::Output;

use anyhow::{Context, bail};
use serde_json::Value;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::server::Server;

/// The kind of signing authority a `localauthority` command manages.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum AuthorityKind {
    /// The JWT-SVID signing key; its authority ID is the key ID (`kid`).
    Jwt,
    /// The X.509 CA; its authority ID is the lowercase hex of its SubjectKeyIdentifier.
    X509,
}

impl AuthorityKind {
    /// Returns the subcommand name, `jwt` or `x509`.
    pub fn as_arg(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::X509 => "x509",
        }
    }
}

/// One authority as `localauthority <kind> show --output json` prints it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Authority {
    /// Authority ID, the value `--authority-id` takes.
    pub authority_id: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// The three slots of one kind of authority. Only `active` is always filled.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AuthoritySlots {
    /// The authority that signs now.
    pub active: Authority,
    /// The next authority, already published in the bundle but not signing yet.
    pub prepared: Option<Authority>,
    /// The previous authority, kept in the bundle until it expires.
    pub old: Option<Authority>,
}

impl AuthoritySlots {
    /// Parses `{"active": {...}, "prepared": {...} or null, "old": {...} or null}`.
    ///
    /// # Errors
    ///
    /// Fails when the JSON is malformed, `active` is missing or a slot lacks a field.
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let value: Value = serde_json::from_str(json)
            .with_context(|| format!("localauthority show printed invalid JSON:\n{json}"))?;
        let active = slot(&value, "active")?
            .with_context(|| format!("localauthority show has no active authority:\n{json}"))?;
        Ok(Self {
            active,
            prepared: slot(&value, "prepared")?,
            old: slot(&value, "old")?,
        })
    }
}

/// The `localauthority` commands for one kind of authority on one server.
#[derive(Clone, Copy, Debug)]
pub struct LocalAuthority<'a> {
    server: &'a Server,
    kind: AuthorityKind,
}

impl<'a> LocalAuthority<'a> {
    /// Returns the commands for `kind` on `server`.
    pub fn new(server: &'a Server, kind: AuthorityKind) -> Self {
        Self { server, kind }
    }

    /// Runs `show --output json` and parses the slots.
    ///
    /// # Errors
    ///
    /// Fails when the command fails or prints something other than the documented JSON.
    pub async fn show(&self) -> anyhow::Result<AuthoritySlots> {
        let stdout = self
            .server
            .cli_ok(&[
                "localauthority",
                self.kind.as_arg(),
                "show",
                "--output",
                "json",
            ])
            .await?;
        AuthoritySlots::parse(&stdout)
    }

    /// Runs `prepare`, which creates the next authority, and returns its stdout.
    ///
    /// # Errors
    ///
    /// Fails with the command's stderr when it exits non-zero.
    pub async fn prepare(&self) -> anyhow::Result<String> {
        self.server
            .cli_ok(&["localauthority", self.kind.as_arg(), "prepare"])
            .await
    }

    /// Runs `<verb> --authority-id <authority_id>` (`activate`, `taint` or `revoke`) and
    /// returns its output, whatever the exit code.
    ///
    /// # Errors
    ///
    /// Fails only when the CLI cannot be started.
    pub async fn run(&self, verb: &str, authority_id: &str) -> anyhow::Result<Output> {
        self.server.cli(&self.args(verb, authority_id)).await
    }

    /// Runs `<verb> --authority-id <authority_id>`, which must succeed, and returns its stdout.
    ///
    /// # Errors
    ///
    /// Fails with the command's stderr when it exits non-zero.
    pub async fn run_ok(&self, verb: &str, authority_id: &str) -> anyhow::Result<String> {
        self.server.cli_ok(&self.args(verb, authority_id)).await
    }

    fn args<'b>(&self, verb: &'b str, authority_id: &'b str) -> [&'b str; 5] {
        [
            "localauthority",
            self.kind.as_arg(),
            verb,
            "--authority-id",
            authority_id,
        ]
    }
}

/// Returns the authority ID of the CA certificate `der`: the lowercase hex of its
/// SubjectKeyIdentifier.
///
/// # Errors
///
/// Fails when `der` is not a certificate or has no SubjectKeyIdentifier.
pub fn subject_key_id(der: &[u8]) -> anyhow::Result<String> {
    let (_, certificate) = X509Certificate::from_der(der).context("parsing a CA certificate")?;
    certificate
        .iter_extensions()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(key_id) => Some(hex::encode(key_id.0)),
            _ => None,
        })
        .context("the CA certificate has no SubjectKeyIdentifier")
}

/// Returns the authority ID of the CA that signed the certificate `der`: the lowercase hex of
/// its AuthorityKeyIdentifier, which RFC 5280 section 4.2.1.1 requires in every certificate
/// that is not self-signed.
///
/// # Errors
///
/// Fails when `der` is not a certificate or has no AuthorityKeyIdentifier with a key ID.
pub fn signing_authority_id(der: &[u8]) -> anyhow::Result<String> {
    let (_, certificate) = X509Certificate::from_der(der).context("parsing a certificate")?;
    certificate
        .iter_extensions()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(identifier) => identifier
                .key_identifier
                .as_ref()
                .map(|key_id| hex::encode(key_id.0)),
            _ => None,
        })
        .with_context(|| {
            format!(
                "the certificate issued by {} has no AuthorityKeyIdentifier key ID",
                certificate.issuer()
            )
        })
}

/// Reads the slot `name` of `show`'s JSON; `null` or a missing key is an empty slot.
fn slot(value: &Value, name: &str) -> anyhow::Result<Option<Authority>> {
    let slot = &value[name];
    if slot.is_null() {
        return Ok(None);
    }
    let Some(authority_id) = slot["authority_id"].as_str() else {
        bail!("the {name} authority has no string authority_id: {slot}");
    };
    let Some(expires_at) = slot["expires_at"].as_i64() else {
        bail!("the {name} authority has no integer expires_at: {slot}");
    };
    Ok(Some(Authority {
        authority_id: authority_id.to_owned(),
        expires_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_parse_with_empty_slots() {
        let json = r#"{"active": {"authority_id": "ab01", "expires_at": 1700000000},
                       "prepared": null, "old": {"authority_id": "cd02", "expires_at": 1699999000}}"#;
        let slots = AuthoritySlots::parse(json).unwrap();
        assert_eq!(slots.active.authority_id, "ab01");
        assert_eq!(slots.active.expires_at, 1_700_000_000);
        assert_eq!(slots.prepared, None);
        assert_eq!(slots.old.unwrap().authority_id, "cd02");
    }

    #[test]
    fn slots_without_active_are_rejected() {
        assert!(AuthoritySlots::parse(r#"{"active": null, "prepared": null}"#).is_err());
    }

    #[test]
    fn slot_without_expiry_is_rejected() {
        let json = r#"{"active": {"authority_id": "ab01"}}"#;
        assert!(AuthoritySlots::parse(json).is_err());
    }
}
