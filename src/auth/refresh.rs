//! Refresh tokens: opaque random strings, each usable once. Each login starts a family; a
//! refresh uses up its token and issues the next one in the same family. A used token
//! presented again means two parties hold it (one of them stole it), so the whole family is
//! revoked — including its access tokens, which carry the family id. Bounded: at most `max`
//! live tokens; the soonest to expire make room.

use std::collections::HashMap;

struct Entry {
    family: String,
    user: String,
    used: bool,
    expires_ms: i64,
}

pub struct Store {
    max: usize,
    tokens: HashMap<String, Entry>,
    /// Revoked families, until their last token would have expired.
    revoked: HashMap<String, i64>,
}

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

impl Store {
    pub fn new(max: usize) -> Store {
        Store {
            max: max.max(1),
            tokens: HashMap::new(),
            revoked: HashMap::new(),
        }
    }

    /// A new token of `family` for `user`, valid for `ttl_ms`; `random` (≥ 16 bytes) makes it
    /// unguessable.
    pub fn issue(
        &mut self,
        family: &str,
        user: &str,
        now: i64,
        ttl_ms: i64,
        random: &[u8],
    ) -> String {
        if self.tokens.len() >= self.max {
            self.prune(now);
        }
        while self.tokens.len() >= self.max {
            let soonest = self
                .tokens
                .iter()
                .min_by_key(|(_, e)| e.expires_ms)
                .map(|(k, _)| k.clone());
            match soonest {
                Some(k) => self.tokens.remove(&k),
                None => break,
            };
        }
        let token = format!("rt_{family}.{}", super::hex(random));
        self.tokens.insert(
            token.clone(),
            Entry {
                family: family.to_string(),
                user: user.to_string(),
                used: false,
                expires_ms: now + ttl_ms,
            },
        );
        token
    }

    /// Uses up `token`: its (family, user), or why not.
    pub fn redeem(&mut self, token: &str, now: i64) -> Result<(String, String), RefreshError> {
        let Some(e) = self.tokens.get_mut(token) else {
            return Err(RefreshError::Unknown);
        };
        if self.revoked.contains_key(&e.family) {
            return Err(RefreshError::Revoked);
        }
        if e.expires_ms <= now {
            return Err(RefreshError::Expired);
        }
        if e.used {
            let family = e.family.clone();
            self.revoke(&family, now);
            return Err(RefreshError::Reused);
        }
        e.used = true;
        Ok((e.family.clone(), e.user.clone()))
    }

    pub fn family_of(&self, token: &str) -> Option<String> {
        self.tokens.get(token).map(|e| e.family.clone())
    }

    /// Revokes `family`: its tokens are dropped, and its access tokens refused until the
    /// longest of them could have lived.
    pub fn revoke(&mut self, family: &str, now: i64) {
        let until = self
            .tokens
            .values()
            .filter(|e| e.family == family)
            .map(|e| e.expires_ms)
            .max()
            .unwrap_or(now)
            .max(now + 24 * 3600 * 1000);
        self.tokens.retain(|_, e| e.family != family);
        self.revoked.insert(family.to_string(), until);
        if self.revoked.len() > self.max {
            self.prune(now);
        }
    }

    pub fn is_revoked(&self, family: &str) -> bool {
        self.revoked.contains_key(family)
    }

    /// Drops expired tokens and revocations that outlived every token they covered.
    pub fn prune(&mut self, now: i64) {
        self.tokens.retain(|_, e| e.expires_ms > now);
        self.revoked.retain(|_, until| *until > now);
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}
