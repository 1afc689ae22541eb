//! Records the server stores: registration entries, attested agents and join tokens.

use std::time::{SystemTime, UNIX_EPOCH};

mod agent;
mod entry;
mod join_token;

pub use agent::AttestedAgent;
pub use entry::{EntryError, RegistrationEntry};
pub use join_token::JoinToken;

/// Returns the current time in Unix seconds, the unit of every timestamp in the model.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
