//! Records the server stores: registration entries, attested agents and join tokens.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod agent;
mod entry;
mod entry_owner;
mod join_token;

pub use agent::AttestedAgent;
pub use entry::{EntryError, RegistrationEntry};
pub use entry_owner::{EntryOwner, EntryOwnerError};
pub use join_token::JoinToken;

/// Returns the current time in Unix seconds, the unit of every timestamp in the model.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Formats Unix seconds as an RFC 3339 UTC time such as `2026-12-04T20:30:45Z`. Times before 1970
/// or after year 9999, which RFC 3339 cannot show, come back as the number of seconds.
pub(crate) fn unix_time_text(unix_seconds: i64) -> String {
    let time = u64::try_from(unix_seconds)
        .ok()
        .and_then(|seconds| UNIX_EPOCH.checked_add(Duration::from_secs(seconds)));
    let mut text = String::new();
    // humantime's Display fails, rather than panics, for years after 9999.
    let formatted = time
        .is_some_and(|time| write!(text, "{}", humantime::format_rfc3339_seconds(time)).is_ok());
    if formatted {
        text
    } else {
        format!("{unix_seconds} (Unix seconds)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_text_formats_rfc3339() {
        assert_eq!(unix_time_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_time_text(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn unix_time_text_falls_back_to_the_number() {
        for seconds in [-1, 253_402_300_800, 99_999_999_999_999_999, i64::MAX] {
            assert_eq!(
                unix_time_text(seconds),
                format!("{seconds} (Unix seconds)"),
                "{seconds}"
            );
        }
    }
}
