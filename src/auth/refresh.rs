//! Refresh tokens: opaque random strings, each usable once. Each login starts a family; a
//! refresh uses up its token and issues the next one in the same family. A used token
//! presented again means two parties hold it (one of them stole it), so the whole family is
//! revoked — including its access tokens, which carry the family id.
//!
//! Bounded without letting one user push out another's logins: a family keeps only its one
//! live token (a token names its family, so any other token of a live family is a used one:
//! reuse), so refreshing never grows the store; a user holds at most `max_per_user` logins
//! (a new one ends that user's oldest); and when the store is full, a new login ends the
//! oldest login of the user holding the most.

use std::collections::HashMap;

/// One login.
struct Family {
    user: String,
    /// The one token that may be redeemed next.
    current: String,
    expires_ms: i64,
    /// When the login began (the oldest of a user's is ended first).
    started_ms: i64,
}

pub struct Store {
    max: usize,
    max_per_user: usize,
    families: HashMap<String, Family>,
    /// Revoked families, until their last token would have expired.
    revoked: HashMap<String, i64>,
    /// Revocations ever made.
    revoked_total: u64,
    /// Revocations made here and not yet written to the shared log (family, until).
    outbox: Vec<(String, i64)>,
}

/// Revocations waiting for Redis at most (Redis down for long): the oldest are dropped, the
/// local revocation stands either way.
const MAX_OUTBOX: usize = 10_000;

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

/// The family a token names (`rt_{family}.{random}`).
fn family_in(token: &str) -> Option<&str> {
    token.strip_prefix("rt_")?.split_once('.').map(|(f, _)| f)
}

/// Logins one user may hold at once by default.
pub const MAX_PER_USER: usize = 100;

impl Store {
    pub fn new(max: usize) -> Store {
        Store::with_per_user(max, MAX_PER_USER)
    }

    pub fn with_per_user(max: usize, max_per_user: usize) -> Store {
        Store {
            max: max.max(1),
            max_per_user: max_per_user.max(1),
            families: HashMap::new(),
            revoked: HashMap::new(),
            revoked_total: 0,
            outbox: Vec::new(),
        }
    }

    /// A new token of `family` for `user`, valid for `ttl_ms`; `random` (≥ 16 bytes) makes it
    /// unguessable. The family's previous token, if any, is used up by this.
    pub fn issue(
        &mut self,
        family: &str,
        user: &str,
        now: i64,
        ttl_ms: i64,
        random: &[u8],
    ) -> String {
        let token = format!("rt_{family}.{}", super::hex(random));
        if let Some(f) = self.families.get_mut(family) {
            f.current = token.clone();
            f.expires_ms = now + ttl_ms;
            return token;
        }
        self.make_room(user, now);
        self.families.insert(
            family.to_string(),
            Family {
                user: user.to_string(),
                current: token.clone(),
                expires_ms: now + ttl_ms,
                started_ms: now,
            },
        );
        token
    }

    /// Before a new login of `user`: expired logins go; then, past the bounds, the oldest
    /// login of `user` (over `max_per_user`) or of the user holding the most (store full).
    fn make_room(&mut self, user: &str, now: i64) {
        let held = self.families.values().filter(|f| f.user == user).count();
        if held >= self.max_per_user || self.families.len() >= self.max {
            self.prune(now);
        }
        loop {
            let mine = self.families.values().filter(|f| f.user == user).count();
            let victim_user = if mine >= self.max_per_user {
                user.to_string()
            } else if self.families.len() >= self.max {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for f in self.families.values() {
                    *counts.entry(f.user.as_str()).or_default() += 1;
                }
                match counts.into_iter().max_by_key(|(_, n)| *n) {
                    Some((u, _)) => u.to_string(),
                    None => return,
                }
            } else {
                return;
            };
            let oldest = self
                .families
                .iter()
                .filter(|(_, f)| f.user == victim_user)
                .min_by_key(|(_, f)| f.started_ms)
                .map(|(k, _)| k.clone());
            match oldest {
                // Ended, not forgotten: its access tokens stop working too.
                Some(k) => drop(self.revoke(&k, now)),
                None => return,
            }
        }
    }

    /// Uses up `token`: its (family, user), or why not.
    pub fn redeem(&mut self, token: &str, now: i64) -> Result<(String, String), RefreshError> {
        let Some(family) = family_in(token) else {
            return Err(RefreshError::Unknown);
        };
        if self.revoked.contains_key(family) {
            return Err(RefreshError::Revoked);
        }
        let Some(f) = self.families.get(family) else {
            return Err(RefreshError::Unknown);
        };
        if f.current != token {
            // A token of this live login that is not its current one: used before.
            let family = family.to_string();
            self.revoke(&family, now);
            return Err(RefreshError::Reused);
        }
        if f.expires_ms <= now {
            return Err(RefreshError::Expired);
        }
        let user = f.user.clone();
        // Used up: until `issue` replaces it, nothing of the family may be redeemed.
        if let Some(f) = self.families.get_mut(family) {
            f.current.clear();
        }
        Ok((family.to_string(), user))
    }

    /// The live login `token` belongs to (it need not be the current token: a logout with
    /// an older one still ends its login).
    pub fn family_of(&self, token: &str) -> Option<String> {
        family_in(token)
            .filter(|f| self.families.contains_key(*f))
            .map(str::to_string)
    }

    /// Revokes `family`: its token is dropped, and its access tokens refused until the
    /// longest of them could have lived. False when there was no such live login.
    pub fn revoke(&mut self, family: &str, now: i64) -> bool {
        let until = self
            .families
            .get(family)
            .map_or(now, |f| f.expires_ms)
            .max(now + 24 * 3600 * 1000);
        if self.outbox.len() >= MAX_OUTBOX {
            self.outbox.remove(0);
        }
        self.outbox.push((family.to_string(), until));
        self.end(family, until, now)
    }

    /// Ends `family` until `until`: its token goes, its access tokens are refused. Whether it
    /// was a live login.
    fn end(&mut self, family: &str, until: i64, now: i64) -> bool {
        let live = self.families.remove(family).is_some();
        self.revoked.insert(family.to_string(), until);
        self.revoked_total += 1;
        if self.revoked.len() > self.max.saturating_mul(2) {
            self.prune(now);
        }
        live
    }

    /// The revocations made here since the last call, for the shared log.
    pub fn take_outbox(&mut self) -> Vec<(String, i64)> {
        std::mem::take(&mut self.outbox)
    }

    /// Puts back revocations the shared log did not take (bounded like the outbox).
    pub fn requeue(&mut self, mut revoked: Vec<(String, i64)>) {
        revoked.append(&mut self.outbox);
        let excess = revoked.len().saturating_sub(MAX_OUTBOX);
        revoked.drain(..excess);
        self.outbox = revoked;
    }

    /// A revocation read from the shared log (another gateway's, or this one's before a
    /// restart): the login ends here too; nothing is written back.
    pub fn import(&mut self, family: &str, until: i64, now: i64) {
        if until <= now || self.revoked.contains_key(family) {
            return;
        }
        self.end(family, until, now);
    }

    /// Revocations ever made (moves on each).
    pub fn revoked_total(&self) -> u64 {
        self.revoked_total
    }

    pub fn is_revoked(&self, family: &str) -> bool {
        self.revoked.contains_key(family)
    }

    /// Drops expired logins and revocations that outlived every token they covered.
    pub fn prune(&mut self, now: i64) {
        self.families.retain(|_, f| f.expires_ms > now);
        self.revoked.retain(|_, until| *until > now);
    }

    /// Live logins.
    pub fn len(&self) -> usize {
        self.families.len()
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }
}
