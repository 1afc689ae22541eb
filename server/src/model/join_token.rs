//! Join tokens: one-time secrets that let an agent attest.

use std::fmt;

use zeroize::Zeroize;

/// A join token and its expiry.
///
/// The value is a secret that grants an agent identity, so `Debug` hides it and the value is wiped
/// from memory on drop.
#[derive(Clone, Eq, PartialEq)]
pub struct JoinToken {
    /// The secret token text.
    pub value: String,
    /// Unix time in seconds after which the token can no longer be used.
    pub expires_at: i64,
}

impl JoinToken {
    /// Returns whether the token expired at or before `now` (Unix seconds).
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at <= now
    }
}

impl Drop for JoinToken {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_token_value() {
        let token = JoinToken {
            value: "d1b2c3-secret".to_owned(),
            expires_at: 42,
        };
        let printed = format!("{token:?}");
        assert!(!printed.contains("d1b2c3-secret"), "{printed}");
        assert!(printed.contains("42"), "{printed}");
    }

    #[test]
    fn token_expires_at_its_expiry_time() {
        let token = JoinToken {
            value: "t".to_owned(),
            expires_at: 100,
        };
        assert!(!token.is_expired_at(99));
        assert!(token.is_expired_at(100));
    }
}
