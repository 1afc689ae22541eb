//! Selectors: the `type:value` facts that attestation produces and registration entries require.

use std::fmt;
use std::str::FromStr;

/// Selector types the agent's attestors produce, with the keys each one produces.
///
/// `spiffe_id` is the selector SPIRE puts on node alias entries created together with a join token.
const KNOWN_TYPES: &[(&str, &[&str])] = &[
    (
        "unix",
        &[
            "uid",
            "gid",
            "user",
            "group",
            "supplementary_gid",
            "path",
            "sha256",
        ],
    ),
    ("spiffe_id", &[]),
];

/// One attested fact, always of a known type and, where the type has keys, a known key.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Selector {
    kind: String,
    value: String,
}

/// Error for a rejected selector.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The text has no `:` between type and value, or one side is empty.
    #[error("invalid selector {0:?}: expected TYPE:VALUE, for example unix:uid:1000")]
    Malformed(String),
    /// The type is not one an attestor produces.
    #[error("unknown selector type {kind:?} in {selector:?}: known types are {known}")]
    UnknownType {
        /// The rejected type.
        kind: String,
        /// The whole selector text.
        selector: String,
        /// Comma-separated list of the known types.
        known: String,
    },
    /// The value can never match what the attestor produces (wrong format, control characters,
    /// too long).
    #[error("invalid selector {selector:?}: {reason}")]
    InvalidValue {
        /// The whole selector text.
        selector: String,
        /// The form the value must have.
        reason: String,
    },
    /// The type is known but the key inside the value is not.
    #[error("unknown {kind} selector key in {selector:?}: known keys are {known}")]
    UnknownKey {
        /// The selector type.
        kind: String,
        /// The whole selector text.
        selector: String,
        /// Comma-separated list of the keys of that type.
        known: String,
    },
}

impl Selector {
    /// Builds a selector from its type and value, checking both.
    ///
    /// # Errors
    ///
    /// [`SelectorError::Malformed`] when either part is empty, [`SelectorError::UnknownType`] or
    /// [`SelectorError::UnknownKey`] when the type or its key is not known.
    pub fn new(kind: &str, value: &str) -> Result<Self, SelectorError> {
        let text = format!("{kind}:{value}");
        if kind.is_empty() || value.is_empty() {
            return Err(SelectorError::Malformed(text));
        }
        let Some((_, keys)) = KNOWN_TYPES.iter().find(|(known, _)| *known == kind) else {
            return Err(SelectorError::UnknownType {
                kind: kind.to_owned(),
                selector: text,
                known: known_types(),
            });
        };
        if !keys.is_empty() {
            check_key(kind, keys, value, &text)?;
        }
        check_value(kind, value).map_err(|reason| SelectorError::InvalidValue {
            selector: text.clone(),
            reason,
        })?;
        Ok(Self {
            kind: kind.to_owned(),
            value: value.to_owned(),
        })
    }

    /// Parses `TYPE:VALUE`, splitting at the first `:` (the value may contain more).
    ///
    /// # Errors
    ///
    /// As for [`Selector::new`].
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let (kind, value) = text
            .split_once(':')
            .ok_or_else(|| SelectorError::Malformed(text.to_owned()))?;
        Self::new(kind, value)
    }

    /// Returns the selector type, for example `unix`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Returns the value after the type, for example `uid:1000`.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// Returns whether every selector in `required` is among `present`.
///
/// An entry matches a workload (or a node alias matches an agent) exactly when this holds for the
/// entry's selectors and the attested ones. An empty `required` matches nothing, because an entry
/// without selectors would otherwise hand its identity to every caller.
pub fn is_subset(required: &[Selector], present: &[Selector]) -> bool {
    !required.is_empty() && required.iter().all(|selector| present.contains(selector))
}

/// Returns whether an attestor produces selectors of type `kind` with the key `key`, such as
/// `unix` and `uid`.
pub fn is_known_key(kind: &str, key: &str) -> bool {
    KNOWN_TYPES
        .iter()
        .any(|(known, keys)| *known == kind && keys.contains(&key))
}

/// Returns every `TYPE:KEY` pair the attestors produce, comma-separated, for error messages.
pub fn known_keys() -> String {
    let pairs: Vec<String> = KNOWN_TYPES
        .iter()
        .flat_map(|(kind, keys)| keys.iter().map(move |key| format!("{kind}:{key}")))
        .collect();
    pairs.join(", ")
}

fn check_key(kind: &str, keys: &[&str], value: &str, text: &str) -> Result<(), SelectorError> {
    let key = value.split_once(':').map(|(key, _)| key);
    match key {
        Some(key) if keys.contains(&key) => Ok(()),
        _ => Err(SelectorError::UnknownKey {
            kind: kind.to_owned(),
            selector: text.to_owned(),
            known: keys.join(", "),
        }),
    }
}

/// Checks that a value has the form the attestor produces, so an entry can never hold a selector
/// that matches nothing or that would garble logs and terminals.
fn check_value(kind: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("the value is longer than {MAX_VALUE_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err("the value contains control characters".to_owned());
    }
    match (kind, value.split_once(':')) {
        ("unix", Some(("uid" | "gid" | "supplementary_gid", id))) => check_numeric_id(id),
        ("unix", Some(("sha256", digest))) => check_sha256(digest),
        ("unix", Some(("path", path))) if !path.starts_with('/') => {
            Err("the path must be absolute".to_owned())
        }
        ("unix", Some((_, ""))) => Err("the value is empty".to_owned()),
        ("spiffe_id", _) => crate::ids::parse_spiffe_id(value)
            .map(drop)
            .map_err(|error| error.to_string()),
        _ => Ok(()),
    }
}

/// Accepts a uid or gid exactly as the kernel reports it: decimal, no sign, no leading zeros.
fn check_numeric_id(id: &str) -> Result<(), String> {
    let canonical = id.parse::<u32>().map(|number| number.to_string());
    match canonical {
        Ok(text) if text == id => Ok(()),
        _ => Err("uids and gids are decimal numbers from 0 to 4294967295".to_owned()),
    }
}

fn check_sha256(digest: &str) -> Result<(), String> {
    let is_hex = digest
        .bytes()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    if digest.len() == 64 && is_hex {
        Ok(())
    } else {
        Err("a SHA-256 digest is 64 lower-case hex digits".to_owned())
    }
}

fn known_types() -> String {
    let names: Vec<&str> = KNOWN_TYPES.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// Longest accepted selector value; executable paths are bounded by PATH_MAX (4096) on Linux.
const MAX_VALUE_LEN: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_known_selectors() {
        for text in [
            "unix:uid:1000",
            "unix:gid:0",
            "unix:user:root",
            "unix:group:wheel",
            "unix:supplementary_gid:27",
            "unix:path:/usr/bin/app",
            "unix:sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "spiffe_id:spiffe://example.org/spire/agent/join_token/abc",
        ] {
            let selector = Selector::parse(text).unwrap();
            assert_eq!(selector.to_string(), text);
        }
    }

    #[test]
    fn parse_splits_at_first_colon() {
        let selector = Selector::parse("unix:path:/opt/a:b").unwrap();
        assert_eq!(selector.kind(), "unix");
        assert_eq!(selector.value(), "path:/opt/a:b");
    }

    #[test]
    fn parse_rejects_bad_selectors() {
        let cases = [
            ("", "malformed"),
            ("unix", "malformed"),
            (":uid:1", "malformed"),
            ("unix:", "malformed"),
            ("k8s:ns:default", "type"),
            ("unix:pid:12", "key"),
            ("unix:uid", "key"),
            ("unix:uid:", "value"),
            ("unix:uid:abc", "value"),
            ("unix:uid:-1", "value"),
            ("unix:uid:+1", "value"),
            ("unix:uid:007", "value"),
            ("unix:uid:4294967296", "value"),
            ("unix:gid:1 ", "value"),
            ("unix:sha256:xyz", "value"),
            (
                "unix:sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
                "value",
            ),
            ("unix:path:relative/bin", "value"),
            ("unix:user:", "value"),
            ("unix:user:a\nb", "value"),
            ("unix:user:x\u{1b}[2J", "value"),
            ("unix:group:nul\0", "value"),
            ("spiffe_id:not-an-id", "value"),
            ("spiffe_id:spiffe://Example.org/a", "value"),
        ];
        for (text, expected) in cases {
            let kind = match Selector::parse(text).unwrap_err() {
                SelectorError::Malformed(_) => "malformed",
                SelectorError::UnknownType { .. } => "type",
                SelectorError::UnknownKey { .. } => "key",
                SelectorError::InvalidValue { .. } => "value",
            };
            assert_eq!(kind, expected, "selector {text:?}");
        }
    }

    #[test]
    fn long_values_are_rejected() {
        let path = format!("unix:path:/{}", "a".repeat(MAX_VALUE_LEN));
        assert!(matches!(
            Selector::parse(&path),
            Err(SelectorError::InvalidValue { .. })
        ));
    }

    #[test]
    fn unknown_type_error_names_value() {
        let message = Selector::parse("k8s:ns:default").unwrap_err().to_string();
        assert!(message.contains("\"k8s\""), "{message}");
        assert!(message.contains("unix"), "{message}");
    }

    #[test]
    fn subset_requires_every_selector() {
        let present = vec![
            Selector::parse("unix:uid:1000").unwrap(),
            Selector::parse("unix:gid:1000").unwrap(),
        ];
        let uid = vec![Selector::parse("unix:uid:1000").unwrap()];
        let other = vec![
            Selector::parse("unix:uid:1000").unwrap(),
            Selector::parse("unix:gid:0").unwrap(),
        ];
        assert!(is_subset(&uid, &present));
        assert!(!is_subset(&other, &present));
        assert!(!is_subset(&[], &present));
    }
}
