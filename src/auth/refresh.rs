//! Refresh tokens: opaque random strings `rt_{family}.{random}`, each usable once. Each login
//! starts a family; a refresh uses up its token and issues the next one in the same family.
//! A used token presented again means two parties hold it (one of them stole it), so the
//! whole family is revoked — including its access tokens, which carry the family id.
//!
//! The families live in Redis (the library's `auth_*` functions, `jobs.rs`), shared by every
//! gateway and kept across restarts. What stays here is the gateway's copy of the ended
//! logins ([`Revoked`]), read on every request: filled by this gateway's own logouts at once
//! and by everyone's through the shared log `auth:revocations`.

use std::collections::HashMap;

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    Unknown,
    Expired,
    /// Used before: the family is now revoked.
    Reused,
    Revoked,
}

impl std::fmt::Display for RefreshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefreshError::Unknown => "unknown refresh token (log in again)",
            RefreshError::Expired => "the refresh token has expired (log in again)",
            RefreshError::Reused => {
                "the refresh token was already used; its login is revoked (log in again)"
            }
            RefreshError::Revoked => "the refresh token's login was revoked (log in again)",
        })
    }
}

impl std::error::Error for RefreshError {}

/// The family a token names (`rt_{family}.{random}`), when well formed.
pub fn family_in(token: &str) -> Option<&str> {
    let (f, rest) = token.strip_prefix("rt_")?.split_once('.')?;
    (!f.is_empty()
        && f.len() <= 64
        && f.bytes().all(|b| b.is_ascii_alphanumeric())
        && !rest.is_empty())
    .then_some(f)
}

/// Logins one user may hold at once by default.
pub const MAX_PER_USER: usize = 100;

/// How long an ended login's access tokens are refused (the longest access ttl; lua: REVOKE_FOR).
pub const REVOKED_FOR_MS: i64 = 24 * 3600 * 1000;

/// Ended logins, until their access tokens have all expired.
#[derive(Default)]
pub struct Revoked {
    until: HashMap<String, i64>,
    /// Revocations ever recorded (moves on each).
    total: u64,
}

/// Ended logins kept at most; past it, those whose tokens expired are dropped first.
const MAX_REVOKED: usize = 200_000;

impl Revoked {
    /// `family` ended (here, or on another gateway): refused until `until`.
    pub fn end(&mut self, family: &str, until: i64, now: i64) {
        if until <= now || self.until.contains_key(family) {
            return;
        }
        if self.until.len() >= MAX_REVOKED {
            self.until.retain(|_, u| *u > now);
        }
        self.until.insert(family.to_string(), until);
        self.total += 1;
    }

    pub fn contains(&self, family: &str) -> bool {
        self.until.contains_key(family)
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}
