//! TTL parsing shared by flags, config files and the CLI.
//!
//! A TTL is written as a humantime duration (`90s`, `30m`, `1h`, `1d 2h`) or as a plain number of
//! seconds (`3600`), the form SPIRE's CLI takes. TTLs travel in the SPIRE APIs as `int32` seconds,
//! so anything above `i32::MAX` seconds is rejected here instead of wrapping later.

use std::time::Duration;

/// Error for a rejected TTL.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text is neither a number of seconds nor a humantime duration.
    #[error("invalid duration {0:?}: use seconds (3600) or units such as 90s, 30m, 1h, 7d")]
    Invalid(String),
    /// The duration is zero.
    #[error("invalid duration {0:?}: must be greater than zero")]
    Zero(String),
    /// The duration does not fit in the API's 32-bit seconds field.
    #[error("duration {value:?} is too long: the maximum is {max} seconds")]
    TooLong {
        /// The rejected text or value.
        value: String,
        /// The largest accepted number of seconds.
        max: i32,
    },
}

/// Parses a TTL such as `1h`, `90s` or `3600` (seconds).
///
/// # Errors
///
/// [`DurationError::Invalid`] for unparsable text, [`DurationError::Zero`] for a zero duration and
/// [`DurationError::TooLong`] for more than `i32::MAX` seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let duration = if trimmed.bytes().all(|byte| byte.is_ascii_digit()) && !trimmed.is_empty() {
        let seconds: u64 = trimmed.parse().map_err(|_| too_long(text))?;
        Duration::from_secs(seconds)
    } else {
        humantime::parse_duration(trimmed).map_err(|_| DurationError::Invalid(text.to_owned()))?
    };
    if duration.is_zero() {
        return Err(DurationError::Zero(text.to_owned()));
    }
    ttl_seconds(duration).map_err(|_| too_long(text))?;
    Ok(duration)
}

/// Converts a TTL to the whole seconds the SPIRE APIs carry, rounding sub-second parts up.
///
/// # Errors
///
/// [`DurationError::TooLong`] when the value exceeds `i32::MAX` seconds.
pub fn ttl_seconds(duration: Duration) -> Result<i32, DurationError> {
    let seconds = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    i32::try_from(seconds).map_err(|_| too_long(&format!("{seconds}s")))
}

fn too_long(value: &str) -> DurationError {
    DurationError::TooLong {
        value: value.to_owned(),
        max: i32::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ttl_accepts_units_and_seconds() {
        let cases = [
            ("3600", 3600),
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("1d 2h", 93_600),
            (" 5m ", 300),
        ];
        for (text, seconds) in cases {
            assert_eq!(parse_ttl(text), Ok(Duration::from_secs(seconds)), "{text}");
        }
    }

    #[test]
    fn parse_ttl_rejects_bad_values() {
        assert!(matches!(parse_ttl(""), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_ttl("-5"), Err(DurationError::Invalid(_))));
        assert!(matches!(
            parse_ttl("1 fortnight"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(parse_ttl("0"), Err(DurationError::Zero(_))));
        assert!(matches!(parse_ttl("0s"), Err(DurationError::Zero(_))));
        assert!(matches!(
            parse_ttl("99999999999"),
            Err(DurationError::TooLong { .. })
        ));
        assert!(matches!(
            parse_ttl("99999999999999999999999"),
            Err(DurationError::TooLong { .. })
        ));
        assert!(matches!(
            parse_ttl("100y"),
            Err(DurationError::TooLong { .. })
        ));
    }

    #[test]
    fn ttl_seconds_rounds_up_and_bounds() {
        assert_eq!(ttl_seconds(Duration::from_millis(1500)), Ok(2));
        assert_eq!(
            ttl_seconds(Duration::from_secs(i32::MAX as u64)),
            Ok(i32::MAX)
        );
        assert!(ttl_seconds(Duration::from_secs(i32::MAX as u64 + 1)).is_err());
    }

    #[test]
    fn too_long_error_names_value() {
        let message = parse_ttl("99999999999").unwrap_err().to_string();
        assert!(message.contains("99999999999"), "{message}");
    }
}
