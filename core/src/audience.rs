//! Limits on JWT-SVID audiences, shared by the server that signs tokens and the agent that requests
//! them, so a request that no verifier could accept is rejected before anything is signed.

use std::collections::BTreeSet;

/// Maximum number of audiences in one JWT-SVID. The `spiffe` crate 0.19 rejects a token whose
/// `aud` has more entries (`MAX_JWT_AUDIENCE_COUNT` in its `svid/jwt` module), so a larger token
/// would be signed but unusable by its clients.
pub const MAX_AUDIENCES: usize = 32;

/// Maximum length of one audience value in bytes.
pub const MAX_AUDIENCE_LEN: usize = 2048;

/// Error for a rejected audience list.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AudienceError {
    /// No audience, or an empty audience value, was given.
    #[error("audience must be specified: give at least one non-empty audience")]
    Missing,
    /// More audiences than a JWT-SVID may carry.
    #[error("{count} audiences requested: a JWT-SVID names at most {max}")]
    TooMany {
        /// Number of audiences requested.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// One audience value is too long.
    #[error("an audience is {length} bytes long: the maximum is {max}")]
    TooLong {
        /// Length of the longest rejected value.
        length: usize,
        /// The limit.
        max: usize,
    },
}

/// Checks a requested audience list against the limits above.
///
/// # Errors
///
/// [`AudienceError::Missing`] for an empty list or value, [`AudienceError::TooMany`] and
/// [`AudienceError::TooLong`] past the limits.
pub fn check_audience(audience: &[String]) -> Result<(), AudienceError> {
    if audience.is_empty() || audience.iter().any(String::is_empty) {
        return Err(AudienceError::Missing);
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(AudienceError::TooMany {
            count: audience.len(),
            max: MAX_AUDIENCES,
        });
    }
    match audience.iter().map(String::len).max() {
        Some(length) if length > MAX_AUDIENCE_LEN => Err(AudienceError::TooLong {
            length,
            max: MAX_AUDIENCE_LEN,
        }),
        _ => Ok(()),
    }
}

/// Returns `audience` sorted with each value once, the `aud` of every JWT-SVID, so a request
/// names the same token whatever the order and repetition of its audiences.
pub fn normalize_audience(audience: &[String]) -> Vec<String> {
    let unique: BTreeSet<&String> = audience.iter().collect();
    unique.into_iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audiences(count: usize, length: usize) -> Vec<String> {
        (0..count).map(|_| "a".repeat(length)).collect()
    }

    #[test]
    fn limits_are_inclusive() {
        assert_eq!(
            check_audience(&audiences(MAX_AUDIENCES, MAX_AUDIENCE_LEN)),
            Ok(())
        );
    }

    #[test]
    fn missing_and_empty_are_rejected() {
        assert_eq!(check_audience(&[]), Err(AudienceError::Missing));
        assert_eq!(
            check_audience(&["db".to_owned(), String::new()]),
            Err(AudienceError::Missing)
        );
    }

    #[test]
    fn too_many_are_rejected() {
        assert_eq!(
            check_audience(&audiences(MAX_AUDIENCES + 1, 3)),
            Err(AudienceError::TooMany { count: 33, max: 32 })
        );
    }

    #[test]
    fn too_long_is_rejected() {
        assert_eq!(
            check_audience(&audiences(1, MAX_AUDIENCE_LEN + 1)),
            Err(AudienceError::TooLong {
                length: 2049,
                max: 2048
            })
        );
    }

    #[test]
    fn normalized_audience_is_sorted_and_unique() {
        let audience = ["b", "a", "a", "c", "b"].map(str::to_owned);
        assert_eq!(normalize_audience(&audience), ["a", "b", "c"]);
    }
}
