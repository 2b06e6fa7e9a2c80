//! The shared log of ended logins, `auth:revocations` (a capped stream of `family`, `until`,
//! written by the library's `auth_*` functions): every gateway reads everyone's, so a logout on one instance
//! holds on all of them, and across a restart (the log is read from its start at each
//! connect). Entries outlive nothing: an `until` in the past is skipped.

use super::FeedError;
use crate::alarm::EventId;
use crate::auth::Auth;
use std::time::{Duration, Instant};

pub const KEY: &str = "auth:revocations";
const PAGE: usize = 1000;
/// How often other gateways' revocations are read.
const EVERY: Duration = Duration::from_millis(500);

pub struct RevocationLog {
    /// The last entry read.
    cursor: EventId,
    next_read: Instant,
}

impl Default for RevocationLog {
    fn default() -> Self {
        RevocationLog {
            cursor: EventId::parse("0-0").expect("0-0 is an id"),
            next_read: Instant::now(),
        }
    }
}

impl RevocationLog {
    /// A new connection (or a reset Redis): read the log from its start again.
    pub fn reset(&mut self) {
        *self = RevocationLog::default();
    }

    /// Reads (at most every `EVERY`) the logins every gateway ended (the library's `auth_*`
    /// functions write them).
    pub fn sync(&mut self, con: &mut redis::Connection, auth: &Auth) -> Result<(), FeedError> {
        if Instant::now() < self.next_read {
            return Ok(());
        }
        self.next_read = Instant::now() + EVERY;
        loop {
            let entries = super::stream::after(con, KEY, self.cursor, PAGE)?;
            let n = entries.len();
            let now = crate::time::now_millis();
            let mut revoked = Vec::with_capacity(n);
            for (id, fields) in entries {
                self.cursor = id;
                let get = |k: &str| crate::model::hash_field(&fields, k);
                let family = get("family").filter(|f| (1..=64).contains(&f.len()));
                let until = get("until").and_then(|u| u.parse::<i64>().ok());
                if let (Some(f), Some(u)) = (family, until) {
                    revoked.push((f.to_string(), u));
                }
            }
            auth.import_revocations(&revoked, now);
            if n < PAGE {
                return Ok(());
            }
        }
    }
}
