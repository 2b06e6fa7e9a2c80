//! Who is asking and what they may do (PROTOCOL.md §5): roles, the principal a request or a
//! WebSocket acts as, and [`Auth`] — the configured users, the access-token keys, the refresh
//! token families and the failed-login limiter. Pure: time comes in as `now` (Unix ms); the
//! password hashing, which takes tens of milliseconds, runs on the shell's verifier thread.

pub mod config;
pub mod limiter;
pub mod password;
pub mod principal;
pub mod refresh;
pub mod token;
pub mod verifier;

use crate::error::{ApiError, ErrorCode};
pub use config::valid_username;
use config::AuthConfig;
pub use principal::{Principal, Role};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What a successful login or refresh hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    pub user: String,
    pub role: Role,
}

/// A configured user.
#[derive(Clone, Debug)]
struct User {
    password_hash: String,
    role: Role,
}

/// The site's users, keys and token state, shared by every shard.
pub struct Auth {
    keys: token::Keys,
    anonymous: Option<Role>,
    users: HashMap<String, User>,
    access_ttl_ms: i64,
    refresh_ttl_ms: i64,
    refresh: Mutex<refresh::Store>,
    failures: Mutex<limiter::Failures>,
    /// Per user, the addresses it last logged in from: a user blocked by failures from
    /// elsewhere still logs in from these, so a remote guesser cannot lock the real one out.
    known_addresses: Mutex<HashMap<String, std::collections::VecDeque<IpAddr>>>,
    /// Revocations so far: open connections re-check their login when it moves.
    revocations: AtomicU64,
    /// Refused logins and refused tokens, for `/metrics`.
    login_failures: AtomicU64,
    token_refusals: AtomicU64,
}

/// Addresses remembered per user (its last successful logins).
const KNOWN_ADDRESSES: usize = 8;

fn unauthorized(details: impl Into<String>) -> ApiError {
    ErrorCode::Unauthorized.context(details)
}

impl Auth {
    /// `secret` signs the access tokens (HS256).
    pub fn new(cfg: &AuthConfig, secret: &[u8]) -> Auth {
        Auth {
            keys: token::Keys::new(secret),
            anonymous: cfg.anonymous_role.role(),
            users: cfg
                .users
                .iter()
                .map(|u| {
                    let user = User {
                        password_hash: u.password_hash.clone(),
                        role: u.role,
                    };
                    (u.username.clone(), user)
                })
                .collect(),
            access_ttl_ms: (cfg.access_ttl_secs * 1000) as i64,
            refresh_ttl_ms: (cfg.refresh_ttl_secs * 1000) as i64,
            refresh: Mutex::new(refresh::Store::new(cfg.max_refresh_tokens)),
            failures: Mutex::new(limiter::Failures::new(
                cfg.max_login_failures,
                (cfg.login_failure_window_secs * 1000) as i64,
            )),
            revocations: AtomicU64::new(0),
            known_addresses: Mutex::new(HashMap::new()),
            login_failures: AtomicU64::new(0),
            token_refusals: AtomicU64::new(0),
        }
    }

    pub fn login_failures(&self) -> u64 {
        self.login_failures.load(Ordering::Relaxed)
    }

    pub fn token_refusals(&self) -> u64 {
        self.token_refusals.load(Ordering::Relaxed)
    }

    /// The anonymous clients' role (`None`: they may do nothing).
    pub fn anonymous_role(&self) -> Option<Role> {
        self.anonymous
    }

    /// The principal for a request carrying `token` (an access token, or nothing). No token
    /// → anonymous; a token that is expired, forged, of another algorithm or revoked → 401
    /// (never silently anonymous: the client must learn to refresh).
    pub fn authenticate(&self, token: Option<&str>, now: i64) -> Result<Principal, ApiError> {
        let Some(token) = token else {
            return Ok(Principal::anonymous(self.anonymous));
        };
        let refused = |e: ApiError| {
            crate::metrics::add(&self.token_refusals, 1);
            e
        };
        let claims = self
            .keys
            .verify(token, now)
            .map_err(|e| refused(unauthorized(e.to_string())))?;
        if self.lock_refresh().is_revoked(&claims.fam) {
            return Err(refused(unauthorized("the token was revoked (logged out)")));
        }
        // A user removed from the configuration loses access at once.
        let user = self
            .users
            .get(&claims.sub)
            .ok_or_else(|| refused(unauthorized("the token's user no longer exists")))?;
        Ok(Principal {
            user: Some(claims.sub),
            // The configured role wins over the token's (a demoted user is demoted at once).
            role: Some(user.role),
            family: Some(claims.fam),
            expires_ms: Some(claims.exp.saturating_mul(1000)),
        })
    }

    /// `Authorization: Bearer <token>` → the token.
    pub fn bearer(header: Option<&str>) -> Option<&str> {
        let h = header?.trim();
        let (scheme, token) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// The stored hash to check `user`'s password against (`None`: no such user — the
    /// verifier then checks a dummy hash, so the answer takes as long either way).
    pub fn password_hash(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(|u| u.password_hash.as_str())
    }

    fn limiter_keys(ip: IpAddr, user: &str) -> [String; 2] {
        [format!("ip:{ip}"), format!("user:{user}")]
    }

    /// Refuses a login attempt while its address or its user name has failed too often
    /// (checked before the password is hashed: a refused attempt costs no CPU).
    pub fn login_permitted(&self, ip: IpAddr, user: &str, now: i64) -> Result<(), ApiError> {
        let keys = Auth::limiter_keys(ip, user);
        // From an address the user logged in from before, only the address's own failures
        // count: failures for the user from elsewhere cannot lock them out here.
        let known = self
            .known_addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .is_some_and(|a| a.contains(&ip));
        let keys = if known { &keys[..1] } else { &keys[..] };
        let wait = self.lock_failures().blocked(keys, now);
        match wait {
            None => Ok(()),
            Some(ms) => Err(ErrorCode::RateLimited.context(format!(
                "too many failed logins from this address or for this user; retry in {} s",
                (ms + 999) / 1000
            ))),
        }
    }

    /// The outcome of a password check: tokens, or 401 (recorded for the limiter).
    pub fn login(
        &self,
        user: &str,
        password_ok: bool,
        ip: IpAddr,
        now: i64,
        random: [u8; 32],
    ) -> Result<Tokens, ApiError> {
        let known = self.users.get(user);
        let Some(u) = known.filter(|_| password_ok) else {
            crate::metrics::add(&self.login_failures, 1);
            self.lock_failures()
                .record(&Auth::limiter_keys(ip, user), now);
            return Err(unauthorized("wrong user name or password"));
        };
        self.lock_failures().clear(&format!("user:{user}"));
        {
            let mut known = self
                .known_addresses
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Only configured users get here: the map is bounded by the configuration.
            let a = known.entry(user.to_string()).or_default();
            a.retain(|x| *x != ip);
            a.push_back(ip);
            if a.len() > KNOWN_ADDRESSES {
                a.pop_front();
            }
        }
        let family = hex(&random[..12]);
        let refresh =
            self.lock_refresh()
                .issue(&family, user, now, self.refresh_ttl_ms, &random[12..]);
        Ok(self.tokens(user, u.role, family, refresh, now))
    }

    /// A new token pair for a refresh token (which is used up: presenting it again revokes
    /// its whole family — a stolen token and its rightful owner cannot both go on).
    pub fn refresh(
        &self,
        refresh_token: &str,
        now: i64,
        random: [u8; 32],
    ) -> Result<Tokens, ApiError> {
        let mut store = self.lock_refresh();
        let (family, user) = store
            .redeem(refresh_token, now)
            .map_err(|e| unauthorized(e.to_string()))?;
        let Some(role) = self.users.get(&user).map(|u| u.role) else {
            store.revoke(&family, now);
            return Err(unauthorized("the token's user no longer exists"));
        };
        let refresh = store.issue(&family, &user, now, self.refresh_ttl_ms, &random[..20]);
        drop(store);
        Ok(self.tokens(&user, role, family, refresh, now))
    }

    /// Revokes the family of `refresh_token` (its access tokens stop working too); 401 when
    /// it names no live login (unknown, already ended, or evicted): a logout that revoked
    /// nothing must not answer success.
    pub fn logout_refresh(&self, refresh_token: &str, now: i64) -> Result<(), ApiError> {
        let mut store = self.lock_refresh();
        match store.family_of(refresh_token) {
            Some(family) => {
                store.revoke(&family, now);
                Ok(())
            }
            None => Err(unauthorized(
                "the refresh token names no live login (unknown, expired or already ended); nothing was revoked",
            )),
        }
    }

    /// Revokes a token family (logout with the access token).
    pub fn logout_family(&self, family: &str, now: i64) {
        self.lock_refresh().revoke(family, now);
    }

    fn tokens(&self, user: &str, role: Role, family: String, refresh: String, now: i64) -> Tokens {
        let claims = token::Claims {
            sub: user.to_string(),
            role: role.as_str().to_string(),
            fam: family,
            iat: now / 1000,
            exp: (now + self.access_ttl_ms) / 1000,
        };
        Tokens {
            access_token: self.keys.sign(&claims),
            refresh_token: refresh,
            expires_in: (self.access_ttl_ms / 1000) as u64,
            user: user.to_string(),
            role,
        }
    }

    /// Revocations made here since the last call: (family, until ms), for the shared log.
    pub fn take_revocations(&self) -> Vec<(String, i64)> {
        self.lock_refresh().take_outbox()
    }

    /// Revocations `take_revocations` gave that could not be written: kept for the next try.
    pub fn requeue_revocations(&self, revoked: Vec<(String, i64)>) {
        self.lock_refresh().requeue(revoked);
    }

    /// Revocations read from the shared log (other gateways', or this one's before a
    /// restart): open connections of those logins end at the next sweep.
    pub fn import_revocations(&self, revoked: &[(String, i64)], now: i64) {
        let mut store = self.lock_refresh();
        for (family, until) in revoked {
            store.import(family, *until, now);
        }
    }

    /// Whether the login `family` was ended.
    pub fn is_revoked(&self, family: &str) -> bool {
        self.lock_refresh().is_revoked(family)
    }

    /// How many logins were ended so far (moves on every revocation).
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::Relaxed)
    }

    fn lock_refresh(&self) -> RefreshGuard<'_> {
        RefreshGuard {
            store: self.refresh.lock().unwrap_or_else(|e| e.into_inner()),
            revocations: &self.revocations,
        }
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, limiter::Failures> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The locked refresh store; on release, publishes how many logins it has ended (every path
/// that revokes — logout, reuse, eviction — goes through it).
struct RefreshGuard<'a> {
    store: std::sync::MutexGuard<'a, refresh::Store>,
    revocations: &'a AtomicU64,
}

impl std::ops::Deref for RefreshGuard<'_> {
    type Target = refresh::Store;
    fn deref(&self) -> &refresh::Store {
        &self.store
    }
}

impl std::ops::DerefMut for RefreshGuard<'_> {
    fn deref_mut(&mut self) -> &mut refresh::Store {
        &mut self.store
    }
}

impl Drop for RefreshGuard<'_> {
    fn drop(&mut self) {
        self.revocations
            .store(self.store.revoked_total(), Ordering::Relaxed);
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
