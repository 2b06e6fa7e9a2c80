//! Who is asking and what they may do (PROTOCOL.md §5): roles, the principal a request or a
//! WebSocket acts as, and [`Auth`] — the configured users, the access-token keys, the logins
//! ended (the logins and the failed-login counters themselves are in Redis: `jobs.rs`). Pure: time comes in as `now` (Unix ms); the
//! password hashing, which takes tens of milliseconds, runs on the shell's verifier thread.

pub mod config;
pub mod jobs;
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

/// The site's users, keys and token state, shared by every shard. The logins themselves and
/// the failed-login counters are in Redis (`jobs.rs`); the handlers run those jobs and hand
/// their answers back here.
pub struct Auth {
    keys: token::Keys,
    anonymous: Option<Role>,
    users: HashMap<String, User>,
    access_ttl_ms: i64,
    refresh_ttl_ms: i64,
    max_logins: usize,
    max_failures: u32,
    failure_window_ms: i64,
    revoked: Mutex<refresh::Revoked>,
    /// Revocations so far: open connections re-check their login when it moves.
    revocations: AtomicU64,
    /// Refused logins and refused tokens, for `/metrics`.
    login_failures: AtomicU64,
    token_refusals: AtomicU64,
}

fn unauthorized(details: impl Into<String>) -> ApiError {
    ErrorCode::Unauthorized.context(details)
}

/// A login whose password was right, waiting for Redis to start it (`jobs::StartLogin`).
#[derive(Debug)]
pub struct PendingLogin {
    user: String,
    role: Role,
    family: String,
    refresh_token: String,
}

/// A refresh waiting for Redis to use up the old token (`jobs::Refresh`).
#[derive(Debug)]
pub struct PendingRefresh {
    family: String,
    refresh_token: String,
}

/// The key failures from `ip` count under: the address, or an IPv6 address's /64 (one
/// host holds a whole /64, so counting single addresses would let it guess on forever).
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
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
            max_logins: cfg.max_refresh_tokens.max(1),
            max_failures: cfg.max_login_failures.max(1),
            failure_window_ms: (cfg.login_failure_window_secs * 1000).max(1) as i64,
            revoked: Mutex::new(refresh::Revoked::default()),
            revocations: AtomicU64::new(0),
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
        if self.is_revoked(&claims.fam) {
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

    /// The keys an attempt's failures count under: its address, and its user when that is a
    /// configured one (names nobody has cannot grow the counters).
    fn failure_keys(&self, ip: IpAddr, user: &str) -> Vec<String> {
        let mut keys = vec![address_key(ip)];
        if self.users.contains_key(user) {
            keys.push(format!("user:{user}"));
        }
        keys
    }

    /// What to read before a login attempt (checked before the password is hashed: a
    /// refused attempt costs no CPU).
    pub fn check_login(&self, ip: IpAddr, user: &str) -> jobs::CheckLogin {
        jobs::CheckLogin {
            keys: self.failure_keys(ip, user),
            user: user.to_string(),
            ip: ip.to_string(),
        }
    }

    /// Refuses the attempt while its address or its user has failed too often. From an
    /// address the user logged in from before, only the address's own failures count:
    /// failures for the user from elsewhere cannot lock them out there.
    pub fn login_gate(&self, seen: &jobs::Failures) -> Result<(), ApiError> {
        let counted = if seen.known_address { 1 } else { usize::MAX };
        let wait = seen
            .counts
            .iter()
            .take(counted)
            .filter(|(n, ttl)| *n >= self.max_failures && *ttl > 0)
            .map(|(_, ttl)| *ttl)
            .max();
        match wait {
            None => Ok(()),
            Some(ms) => Err(ErrorCode::RateLimited.context(format!(
                "too many failed logins from this address or for this user; retry in {} s",
                (ms + 999) / 1000
            ))),
        }
    }

    /// A wrong name or password: counted (metrics, and in Redis for the limit).
    pub fn login_failed(&self, ip: IpAddr, user: &str) -> jobs::RecordFailure {
        crate::metrics::add(&self.login_failures, 1);
        jobs::RecordFailure {
            keys: self.failure_keys(ip, user),
            window_ms: self.failure_window_ms,
        }
    }

    /// A right password for `user`: the login to start in Redis, and what its tokens need.
    /// `None` when the user is not configured (the password check then failed anyway).
    pub fn start_login(
        &self,
        user: &str,
        ip: IpAddr,
        now: i64,
        random: [u8; 32],
    ) -> Option<(jobs::StartLogin, PendingLogin)> {
        let u = self.users.get(user)?;
        let family = hex(&random[..12]);
        let refresh_token = format!("rt_{family}.{}", hex(&random[12..]));
        let job = jobs::StartLogin {
            family: family.clone(),
            user: user.to_string(),
            token: refresh_token.clone(),
            ip: ip.to_string(),
            user_failure_key: format!("user:{user}"),
            max_per_user: refresh::MAX_PER_USER.min(self.max_logins),
            max_total: self.max_logins,
            now,
            ttl_ms: self.refresh_ttl_ms,
        };
        let pending = PendingLogin {
            user: user.to_string(),
            role: u.role,
            family,
            refresh_token,
        };
        Some((job, pending))
    }

    /// The login started (`ended`: the logins it ended to make room): its tokens.
    pub fn logged_in(&self, p: PendingLogin, ended: &[String], now: i64) -> Tokens {
        for family in ended {
            self.ended_here(family, now);
        }
        self.tokens(&p.user, p.role, p.family, p.refresh_token, now)
    }

    /// What to ask Redis for a refresh with `refresh_token`; refused at once when malformed
    /// or its login is known to have ended.
    pub fn refresh(
        &self,
        refresh_token: &str,
        now: i64,
        random: [u8; 32],
    ) -> Result<(jobs::Refresh, PendingRefresh), ApiError> {
        let family = refresh::family_in(refresh_token)
            .ok_or_else(|| unauthorized(refresh::RefreshError::Unknown.to_string()))?;
        if self.is_revoked(family) {
            return Err(unauthorized(refresh::RefreshError::Revoked.to_string()));
        }
        let new_token = format!("rt_{family}.{}", hex(&random[..20]));
        let job = jobs::Refresh {
            family: family.to_string(),
            token: refresh_token.to_string(),
            new_token: new_token.clone(),
            now,
            ttl_ms: self.refresh_ttl_ms,
        };
        let pending = PendingRefresh {
            family: family.to_string(),
            refresh_token: new_token,
        };
        Ok((job, pending))
    }

    /// Redis's answer to a refresh: a new pair, or 401 (a reused token ended the login).
    pub fn refreshed(
        &self,
        p: PendingRefresh,
        outcome: Result<String, refresh::RefreshError>,
        now: i64,
    ) -> Result<Tokens, ApiError> {
        let user = outcome.map_err(|e| {
            if e == refresh::RefreshError::Reused {
                self.ended_here(&p.family, now);
            }
            unauthorized(e.to_string())
        })?;
        let role = self
            .users
            .get(&user)
            .map(|u| u.role)
            .ok_or_else(|| unauthorized("the token's user no longer exists"))?;
        Ok(self.tokens(&user, role, p.family, p.refresh_token, now))
    }

    /// What to ask Redis to end a login: by a refresh token of it (`None` when the token is
    /// malformed: nothing to end), or by the family of a verified access token.
    pub fn logout(
        &self,
        refresh_token: Option<&str>,
        family: Option<&str>,
        now: i64,
    ) -> Option<jobs::Logout> {
        let (family, token) = match refresh_token {
            Some(t) => (refresh::family_in(t)?, Some(t.to_string())),
            None => (family?, None),
        };
        Some(jobs::Logout {
            family: family.to_string(),
            token,
            now,
        })
    }

    /// A login ended by this gateway: refused here at once (the others read it from the log).
    pub fn ended_here(&self, family: &str, now: i64) {
        self.import_revocations(&[(family.to_string(), now + refresh::REVOKED_FOR_MS)], now);
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

    /// Revocations read from the shared log (other gateways', or this one's before a
    /// restart): open connections of those logins end at the next sweep.
    pub fn import_revocations(&self, revoked: &[(String, i64)], now: i64) {
        let mut r = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        for (family, until) in revoked {
            r.end(family, *until, now);
        }
        self.revocations.store(r.total(), Ordering::Relaxed);
    }

    /// Whether the login `family` was ended.
    pub fn is_revoked(&self, family: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(family)
    }

    /// How many logins were ended so far (moves on every revocation).
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::Relaxed)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
