//! The `[auth]` section: who may log in, how long tokens live, what anonymous clients may
//! do — with its own validation (`config.rs` only loads and merges).

use super::principal::Role;
use crate::error::ConfigError;
use serde::Deserialize;

/// What anonymous clients (no token) may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousRole {
    None,
    Viewer,
    Operator,
    Admin,
}

impl AnonymousRole {
    pub fn role(self) -> Option<Role> {
        match self {
            AnonymousRole::None => None,
            AnonymousRole::Viewer => Some(Role::Viewer),
            AnonymousRole::Operator => Some(Role::Operator),
            AnonymousRole::Admin => Some(Role::Admin),
        }
    }
}

/// One user: `[[auth.users]]` with a name, an argon2id hash (`voltage-gateway hash-password`)
/// and a role.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
}

/// Login, tokens and what anonymous clients may do (PROTOCOL.md §5).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Role of clients without a token: `viewer` (default: the seed's examples work
    /// unchanged), `operator`, `admin`, or `none` (REST answers 401 and WebSocket upgrades are
    /// refused, except `/health`, `/health/ready`, the page, login and refresh).
    pub anonymous_role: AnonymousRole,
    /// The key that signs access tokens (HS256), at least 32 bytes. Or `secret_file` (the
    /// key is the file's content, trimmed), or the environment variable `VOLTAGE_AUTH_SECRET`
    /// (which wins). None of them: a random key per start (logged loudly: tokens do not
    /// survive a restart, and several gateways cannot share logins).
    pub secret: String,
    pub secret_file: String,
    /// Access tokens live this long (s). Default 900 (a stolen one is worth 15 minutes).
    pub access_ttl_secs: u64,
    /// Refresh tokens live this long (s). Default 604800 (7 days).
    pub refresh_ttl_secs: u64,
    /// Refresh tokens kept (each used or live one of each login); the soonest to expire
    /// make room. Default 10000.
    pub max_refresh_tokens: usize,
    /// Failed logins from one address, or for one user name, within the window before
    /// further attempts are refused with 429 until the window passes. Default 5 per 60 s.
    pub max_login_failures: u32,
    pub login_failure_window_secs: u64,
    pub users: Vec<UserConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            anonymous_role: AnonymousRole::Viewer,
            secret: String::new(),
            secret_file: String::new(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 7 * 24 * 3600,
            max_refresh_tokens: 10_000,
            max_login_failures: 5,
            login_failure_window_secs: 60,
            users: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Checks the section (the signing secret is checked where it is loaded, `config.rs`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = self;
        let err = |m: String| Err(ConfigError(m));
        if !(1..=86_400).contains(&a.access_ttl_secs) {
            return err("auth.access_ttl_secs must be in 1..=86400".into());
        }
        if a.refresh_ttl_secs < a.access_ttl_secs || a.refresh_ttl_secs > 90 * 86_400 {
            return err(
                "auth.refresh_ttl_secs must be >= access_ttl_secs and at most 90 days".into(),
            );
        }
        if a.max_refresh_tokens == 0
            || a.max_login_failures == 0
            || a.login_failure_window_secs == 0
        {
            return err("auth.max_refresh_tokens, auth.max_login_failures and auth.login_failure_window_secs must be positive".into());
        }
        let mut seen = std::collections::HashSet::new();
        for u in &a.users {
            if !valid_username(&u.username) {
                return err(format!(
                    "auth.users: user name '{}' must be 1-64 of A-Za-z0-9_.@-",
                    u.username
                ));
            }
            if !seen.insert(u.username.as_str()) {
                return err(format!("auth.users: user '{}' is listed twice", u.username));
            }
            if !super::password::is_argon2id(&u.password_hash) {
                return err(format!(
                    "auth.users: the password_hash of '{}' is not an argon2id hash (make one with: voltage-gateway hash-password)",
                    u.username
                ));
            }
        }
        Ok(())
    }
}

/// User names: 1–64 of `A-Za-z0-9_.@-`.
pub fn valid_username(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}
