//! The owner label of registration entries that `entry apply` manages.

use std::fmt;

/// Label of the source that manages a set of entries, for example `team-payments`.
///
/// Always 1 to 63 bytes of lower-case ASCII letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit, so it is safe to print and to compare byte by byte. The empty label of
/// entries created one by one is not an `EntryOwner`.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct EntryOwner(String);

/// Error for a rejected owner label.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error(
    "invalid owner {0:?}: use 1 to 63 lower-case letters, digits, '-', '_' and '.', starting \
     with a letter or digit, for example team-payments"
)]
pub struct EntryOwnerError(pub String);

impl EntryOwner {
    /// Checks and wraps an owner label.
    ///
    /// # Errors
    ///
    /// [`EntryOwnerError`] when the label is empty, longer than 63 bytes, or has another
    /// character.
    pub fn new(label: &str) -> Result<Self, EntryOwnerError> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        let starts_well = label
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !starts_well || label.len() > MAX_OWNER_BYTES || !label.chars().all(allowed) {
            return Err(EntryOwnerError(label.to_owned()));
        }
        Ok(Self(label.to_owned()))
    }

    /// Returns the label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Maximum length of an owner label in bytes, short enough to print on one line with an entry.
const MAX_OWNER_BYTES: usize = 63;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_accepts_labels() {
        for label in ["team-payments", "a", "ops.prod_1", "0team", &"a".repeat(63)] {
            assert_eq!(EntryOwner::new(label).unwrap().as_str(), label);
        }
    }

    #[test]
    fn owner_rejects_labels() {
        let long = "a".repeat(64);
        for label in [
            "",
            "-team",
            ".team",
            "Team",
            "team payments",
            "team/x",
            "tëam",
            "a\n",
            &long,
        ] {
            assert_eq!(
                EntryOwner::new(label),
                Err(EntryOwnerError(label.to_owned())),
                "{label:?}"
            );
        }
    }

    #[test]
    fn owner_checks_every_ascii_character() {
        for byte in 0u8..=127 {
            let c = char::from(byte);
            let expected = c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
            assert_eq!(EntryOwner::new(&format!("a{c}")).is_ok(), expected, "{c:?}");
        }
    }
}
