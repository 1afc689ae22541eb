//! Selectors: the `type:value` facts that attestation produces and registration entries require.

use std::fmt;
use std::str::FromStr;

/// Selector types the agent's attestors produce, with the keys each one knows.
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

/// Why a selector was rejected.
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

fn known_types() -> String {
    let names: Vec<&str> = KNOWN_TYPES.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

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
            "unix:sha256:ab12",
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
        ];
        for (text, expected) in cases {
            let kind = match Selector::parse(text).unwrap_err() {
                SelectorError::Malformed(_) => "malformed",
                SelectorError::UnknownType { .. } => "type",
                SelectorError::UnknownKey { .. } => "key",
            };
            assert_eq!(kind, expected, "selector {text:?}");
        }
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
