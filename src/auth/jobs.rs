//! The sessions' Redis work, shared by every gateway on the site and kept across restarts:
//! the failed-login counters and remembered addresses (plain keys with TTLs), and the logins
//! themselves through the library's `auth_login`, `auth_refresh`, `auth_logout` (lua/README.md
//! — *Sessions*), which keep only hashes of refresh tokens.

use super::refresh::RefreshError;
use crate::job::{as_string, Job, JobError, Redis};

/// `auth:fail:{key}`: failures counted under a key (a source address, a user), expiring
/// with the window that began at the first.
pub fn failure_key(key: &str) -> String {
    format!("auth:fail:{key}")
}

/// `auth:known:{user}`: the addresses the user last logged in from.
pub fn known_key(user: &str) -> String {
    format!("auth:known:{user}")
}

fn login_key(family: &str) -> String {
    format!("auth:login:{family}")
}

/// How many failures each key holds now, and for how much longer (ms); whether `ip` is one
/// of the user's remembered addresses.
pub struct CheckLogin {
    pub keys: Vec<String>,
    pub user: String,
    pub ip: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    /// Per key (in the order asked): (failures, ms left of its window).
    pub counts: Vec<(u32, i64)>,
    pub known_address: bool,
}

impl Job for CheckLogin {
    type Output = Failures;

    fn run(self, redis: &mut Redis<'_>) -> Result<Failures, JobError> {
        let mut pipe = redis::pipe();
        for k in &self.keys {
            pipe.cmd("GET").arg(failure_key(k));
            pipe.cmd("PTTL").arg(failure_key(k));
        }
        pipe.cmd("LPOS").arg(known_key(&self.user)).arg(&self.ip);
        let replies: Vec<redis::Value> = pipe.query(redis.con)?;
        let (pairs, known) = replies.split_at(replies.len() - 1);
        Ok(Failures {
            counts: pairs
                .chunks(2)
                .map(|p| {
                    let n = as_string(&p[0]).and_then(|s| s.parse().ok()).unwrap_or(0);
                    let ttl = match p[1] {
                        redis::Value::Int(t) => t,
                        _ => -2,
                    };
                    (n, ttl)
                })
                .collect(),
            known_address: !matches!(known[0], redis::Value::Nil),
        })
    }
}

/// One more failure under each key; a key's window starts with its first failure.
pub struct RecordFailure {
    pub keys: Vec<String>,
    pub window_ms: i64,
}

impl Job for RecordFailure {
    type Output = ();

    fn run(self, redis: &mut Redis<'_>) -> Result<(), JobError> {
        let mut pipe = redis::pipe();
        for k in &self.keys {
            pipe.cmd("INCR").arg(failure_key(k)).ignore();
            pipe.cmd("PEXPIRE")
                .arg(failure_key(k))
                .arg(self.window_ms)
                .arg("NX")
                .ignore();
        }
        Ok(pipe.query(redis.con)?)
    }
}

/// Addresses remembered per user.
pub const KNOWN_ADDRESSES: usize = 8;

/// A new login (`auth_login`), the user's failures cleared and `ip` remembered for them.
/// Its output: the logins ended to make room.
pub struct StartLogin {
    pub family: String,
    pub user: String,
    pub token: String,
    pub ip: String,
    pub user_failure_key: String,
    pub max_per_user: usize,
    pub max_total: usize,
    pub now: i64,
    pub ttl_ms: i64,
}

impl Job for StartLogin {
    type Output = Vec<String>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Vec<String>, JobError> {
        let known = known_key(&self.user);
        let mut pipe = redis::pipe();
        pipe.cmd("FCALL")
            .arg("auth_login")
            .arg(1)
            .arg(login_key(&self.family))
            .arg(&self.user)
            .arg(&self.token)
            .arg(self.max_per_user)
            .arg(self.max_total)
            .arg(self.now)
            .arg(self.ttl_ms);
        pipe.cmd("DEL")
            .arg(failure_key(&self.user_failure_key))
            .ignore();
        pipe.cmd("LREM").arg(&known).arg(0).arg(&self.ip).ignore();
        pipe.cmd("RPUSH").arg(&known).arg(&self.ip).ignore();
        pipe.cmd("LTRIM")
            .arg(&known)
            .arg(-(KNOWN_ADDRESSES as i64))
            .arg(-1)
            .ignore();
        pipe.cmd("PEXPIRE").arg(&known).arg(self.ttl_ms).ignore();
        let (ended,): (Vec<String>,) = pipe.query(redis.con)?;
        Ok(ended)
    }
}

/// `auth_refresh`: `token` used up, `new_token` the login's next; the user, or why not.
#[derive(Debug)]
pub struct Refresh {
    pub family: String,
    pub token: String,
    pub new_token: String,
    pub now: i64,
    pub ttl_ms: i64,
}

impl Job for Refresh {
    type Output = Result<String, RefreshError>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Self::Output, JobError> {
        let reply: Vec<String> = redis::cmd("FCALL")
            .arg("auth_refresh")
            .arg(1)
            .arg(login_key(&self.family))
            .arg(&self.token)
            .arg(&self.new_token)
            .arg(self.now)
            .arg(self.ttl_ms)
            .query(redis.con)?;
        match reply.first().map(String::as_str) {
            Some("ok") if reply.len() == 2 => Ok(Ok(reply[1].clone())),
            Some("unknown") => Ok(Err(RefreshError::Unknown)),
            Some("expired") => Ok(Err(RefreshError::Expired)),
            Some("reused") => Ok(Err(RefreshError::Reused)),
            _ => Err(JobError::Unexpected("auth_refresh")),
        }
    }
}

/// `auth_logout`: ends the login `family` (with `token`, only when it is one of the login's
/// refresh tokens); whether a live login ended.
pub struct Logout {
    pub family: String,
    pub token: Option<String>,
    pub now: i64,
}

impl Job for Logout {
    type Output = bool;

    fn run(self, redis: &mut Redis<'_>) -> Result<bool, JobError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("auth_logout").arg(1).arg(login_key(&self.family));
        if let Some(t) = &self.token {
            cmd.arg(t);
        }
        let ended: i64 = cmd.arg(self.now).query(redis.con)?;
        Ok(ended == 1)
    }
}
