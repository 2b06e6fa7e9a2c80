//! What is wrong with Redis, in words an operator can act on (logs, `/health/detailed`, the
//! WebSocket `status` and so the page's banner), and when to say it again. The client
//! library's own errors are kept as the source but rarely say what to do: a missing password
//! shows as `Protocol error: unauthenticated bulk length` (the library load is the first
//! command Redis refuses), a server that is not Redis as `Resource temporarily unavailable`,
//! Redis without Functions as a slice of the Lua source it echoes back.

use super::FeedError;
use std::fmt;
use std::time::{Duration, Instant};

/// The kinds of Redis failure the gateway tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Nothing accepts connections at the address.
    Refused,
    /// The host name does not resolve.
    UnknownHost,
    /// No TCP connection within the timeout.
    Unreachable,
    /// Connected, but the first command had no answer: not a Redis server, or a frozen one.
    NoAnswer,
    /// Connected, but the answer is not RESP.
    NotRedis,
    PasswordRequired,
    WrongPassword,
    /// An ACL refused a command.
    NoPermission,
    /// Redis older than 7, or FUNCTION disabled.
    NoFunctions,
    /// The library is not loaded and the gateway may not load it.
    LibraryMissing,
    /// A replica: the gateway writes, so it needs the master.
    ReadOnly,
    /// Redis is loading its data set.
    Loading,
    /// No sentinel names a master (all down, or none knows the name).
    NoMaster,
    /// Sentinel moved the master: the gateway follows.
    Failover,
    /// An established connection broke or stopped answering.
    Lost,
    Other,
}

/// One diagnosed failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    text: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Longest piece of a raw error quoted (Redis echoes a refused command's arguments).
const MAX_QUOTE: usize = 160;

fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `err` met talking to the Redis at `addr` (`host:port`, no credentials), with the
/// configured `timeout_ms`.
pub fn diagnose(err: &FeedError, addr: &str, timeout_ms: u64) -> Fault {
    let (kind, text) = match err {
        FeedError::LibraryMissing => (FaultKind::LibraryMissing, err.to_string()),
        FeedError::NoFunctions { version } => (
            FaultKind::NoFunctions,
            format!(
                "Redis ≥ 7 with Functions required: the server at {addr} ({}) has no FUNCTION/FCALL command",
                version
                    .as_deref()
                    .map_or("version unknown".to_string(), |v| format!("version {v}"))
            ),
        ),
        FeedError::UnexpectedReply(what) => (
            FaultKind::Other,
            format!("Redis at {addr} answered {what} with something the gateway cannot read"),
        ),
        FeedError::NoMaster { .. } => (FaultKind::NoMaster, err.to_string()),
        FeedError::NotMaster { .. } => (FaultKind::ReadOnly, err.to_string()),
        FeedError::MasterMoved { .. } => (FaultKind::Failover, err.to_string()),
        FeedError::Handshake(e) => redis_fault(e, addr, timeout_ms, true),
        FeedError::Redis(e) => redis_fault(e, addr, timeout_ms, false),
    };
    Fault { kind, text }
}

fn redis_fault(
    e: &redis::RedisError,
    addr: &str,
    timeout_ms: u64,
    handshake: bool,
) -> (FaultKind, String) {
    let code = e.code().unwrap_or("");
    let detail = e.detail().unwrap_or("");
    let raw = e.to_string();
    // A connect that timed out (ETIMEDOUT), unlike a read that did (EAGAIN on a socket
    // timeout); the library keeps the io::Error out of reach, its text is what tells.
    let connect_timed_out = e.is_timeout() && raw.to_ascii_lowercase().contains("timed out");
    if code == "NOAUTH" || raw.contains("unauthenticated") || raw.contains("NOAUTH") {
        return (
            FaultKind::PasswordRequired,
            format!(
                "Redis at {addr} requires a password: give it in the URL \
                 (redis://:PASSWORD@{addr}, or redis://USER:PASSWORD@{addr} for an ACL user; \
                 also VOLTAGE_REDIS_URL)"
            ),
        );
    }
    if e.kind() == redis::ErrorKind::AuthenticationFailed || code == "WRONGPASS" {
        return (
            FaultKind::WrongPassword,
            format!("Redis at {addr} refused the URL's credentials (wrong password or user)"),
        );
    }
    if code == "NOPERM" {
        return (
            FaultKind::NoPermission,
            format!(
                "the gateway's Redis user at {addr} lacks a permission it needs: {}",
                quote(detail)
            ),
        );
    }
    if code == "READONLY" {
        return (
            FaultKind::ReadOnly,
            format!("Redis at {addr} is a read-only replica: the gateway needs the master"),
        );
    }
    if code == "LOADING" {
        return (
            FaultKind::Loading,
            format!("Redis at {addr} is loading its data set into memory"),
        );
    }
    if e.is_connection_refusal() {
        return (
            FaultKind::Refused,
            format!("nothing accepts connections at {addr} (connection refused): is redis-server running there?"),
        );
    }
    if raw.contains("lookup address") || raw.contains("Name or service not known") {
        return (
            FaultKind::UnknownHost,
            format!("cannot resolve the host of {addr}"),
        );
    }
    if connect_timed_out && handshake {
        return (
            FaultKind::Unreachable,
            format!("{addr} did not accept a connection within {timeout_ms} ms (host down, or a firewall?)"),
        );
    }
    if e.is_timeout() {
        return if handshake {
            (
                FaultKind::NoAnswer,
                format!("{addr} accepted the connection but did not answer within {timeout_ms} ms: is it a Redis server?"),
            )
        } else {
            (
                FaultKind::Lost,
                format!("Redis at {addr} stopped answering (nothing within {timeout_ms} ms)"),
            )
        };
    }
    if e.kind() == redis::ErrorKind::Parse {
        return (
            FaultKind::NotRedis,
            format!("{addr} answered, but not in the Redis protocol: is it a Redis server?"),
        );
    }
    if e.is_connection_dropped() || e.is_io_error() {
        let why = if handshake {
            "closed the connection at once: is it a Redis server?"
        } else {
            "connection lost"
        };
        return (
            FaultKind::Lost,
            format!("Redis at {addr}: {why} ({})", quote(&raw)),
        );
    }
    (
        FaultKind::Other,
        format!("Redis at {addr}: {}", quote(&raw)),
    )
}

/// When a failing Redis is worth a log line: its first failure, each change of what is wrong,
/// a reminder at growing intervals while it lasts, and its recovery. Pure: `now` is passed in.
#[derive(Debug, Default)]
pub struct OutageLog {
    /// The outage in progress: what is wrong, since when, failed attempts, next reminder.
    current: Option<Outage>,
    /// The last connection succeeded once already (a recovery, not a first connect).
    connected_once: bool,
}

#[derive(Debug)]
struct Outage {
    fault: Fault,
    since: Instant,
    attempts: u32,
    remind_at: Instant,
    remind_every: Duration,
}

/// First reminder while an outage lasts; each next one twice as late, up to `REMIND_MAX`.
const REMIND_FIRST: Duration = Duration::from_secs(30);
const REMIND_MAX: Duration = Duration::from_secs(600);

impl OutageLog {
    /// An attempt failed with `fault`: the line to log at WARN, if any.
    pub fn failed(&mut self, fault: &Fault, now: Instant) -> Option<String> {
        match &mut self.current {
            None => {
                self.current = Some(Outage {
                    fault: fault.clone(),
                    since: now,
                    attempts: 1,
                    remind_at: now + REMIND_FIRST,
                    remind_every: REMIND_FIRST,
                });
                let when = if self.connected_once {
                    "Redis unavailable"
                } else {
                    "cannot connect to Redis"
                };
                Some(format!("{when}: {fault}"))
            }
            Some(o) => {
                o.attempts += 1;
                if o.fault != *fault {
                    o.fault = fault.clone();
                    return Some(format!("Redis still unavailable, now: {fault}"));
                }
                if now < o.remind_at {
                    return None;
                }
                o.remind_every = (o.remind_every * 2).min(REMIND_MAX);
                o.remind_at = now + o.remind_every;
                Some(format!(
                    "Redis still unavailable after {} attempts in {} s: {fault}",
                    o.attempts,
                    now.duration_since(o.since).as_secs()
                ))
            }
        }
    }

    /// An attempt succeeded: the line to log at INFO, if any.
    pub fn connected(&mut self, addr: &str, now: Instant) -> Option<String> {
        let first = !std::mem::replace(&mut self.connected_once, true);
        match self.current.take() {
            Some(o) => Some(format!(
                "Redis at {addr} {} after {} s ({} failed attempts)",
                if first { "connected" } else { "reconnected" },
                now.duration_since(o.since).as_secs(),
                o.attempts
            )),
            None if first => Some(format!("connected to Redis at {addr}")),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> FeedError {
        FeedError::Handshake(redis::RedisError::from(std::io::Error::from(kind)))
    }

    #[test]
    fn words_for_what_the_client_library_says() {
        let f = diagnose(&io(std::io::ErrorKind::ConnectionRefused), "h:1", 500);
        assert_eq!(f.kind, FaultKind::Refused);
        assert!(f.to_string().contains("nothing accepts connections at h:1"));
        let f = diagnose(&io(std::io::ErrorKind::WouldBlock), "h:1", 500);
        assert_eq!(f.kind, FaultKind::NoAnswer);
        assert!(f.to_string().contains("is it a Redis server?"), "{f}");
        let later = FeedError::Redis(redis::RedisError::from(std::io::Error::from(
            std::io::ErrorKind::WouldBlock,
        )));
        assert_eq!(diagnose(&later, "h:1", 500).kind, FaultKind::Lost);
        let f = diagnose(&io(std::io::ErrorKind::TimedOut), "h:1", 500);
        assert_eq!(f.kind, FaultKind::Unreachable);
        let f = diagnose(
            &FeedError::NoFunctions {
                version: Some("6.2.1".into()),
            },
            "h:1",
            1,
        );
        assert_eq!(
            f.to_string(),
            "Redis ≥ 7 with Functions required: the server at h:1 (version 6.2.1) has no FUNCTION/FCALL command"
        );
        let auth = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "x"));
        assert_eq!(
            diagnose(&FeedError::Handshake(auth), "h:1", 1).kind,
            FaultKind::WrongPassword
        );
    }

    #[test]
    fn long_errors_are_cut() {
        let long = "x".repeat(10_000);
        assert_eq!(quote(&long).chars().count(), MAX_QUOTE + 1);
        assert_eq!(quote("short"), "short");
        assert_eq!(quote(&"é".repeat(200)).chars().count(), MAX_QUOTE + 1);
    }

    #[test]
    fn an_outage_is_logged_when_it_starts_changes_and_ends_then_rarely() {
        let t0 = Instant::now();
        let refused = diagnose(&io(std::io::ErrorKind::ConnectionRefused), "h:1", 1);
        let silent = diagnose(&io(std::io::ErrorKind::WouldBlock), "h:1", 1);
        let mut log = OutageLog::default();
        let first = log.failed(&refused, t0).unwrap();
        assert!(
            first.starts_with("cannot connect to Redis: nothing accepts"),
            "{first}"
        );
        // Retries every 100 ms … 5 s say nothing for the first 30 s.
        let mut t = t0;
        let mut lines = 0;
        while t < t0 + Duration::from_secs(29) {
            t += Duration::from_millis(100);
            lines += usize::from(log.failed(&refused, t).is_some());
        }
        assert_eq!(lines, 0);
        let changed = log.failed(&silent, t).unwrap();
        assert!(
            changed.starts_with("Redis still unavailable, now:"),
            "{changed}"
        );
        // Reminders at 30 s, then 60, 120 … 600 s apart: about 10 lines in an hour.
        let mut reminders = Vec::new();
        while t < t0 + Duration::from_secs(3600) {
            t += Duration::from_secs(1);
            if let Some(l) = log.failed(&silent, t) {
                reminders.push(l);
            }
        }
        assert!((6..=12).contains(&reminders.len()), "{reminders:?}");
        assert!(
            reminders[0].contains("still unavailable after"),
            "{reminders:?}"
        );
        let up = log.connected("h:1", t).unwrap();
        assert!(
            up.starts_with("Redis at h:1 connected after 3600 s"),
            "{up}"
        );
        assert_eq!(log.connected("h:1", t), None);
        // A later outage is a loss, and its end a reconnect.
        assert!(log
            .failed(&refused, t)
            .unwrap()
            .starts_with("Redis unavailable:"));
        assert!(log
            .connected("h:1", t)
            .unwrap()
            .contains("reconnected after 0 s"));
    }

    #[test]
    fn a_first_connect_is_logged_once() {
        let mut log = OutageLog::default();
        let now = Instant::now();
        assert_eq!(
            log.connected("h:1", now).as_deref(),
            Some("connected to Redis at h:1")
        );
        assert_eq!(log.connected("h:1", now), None);
    }
}
