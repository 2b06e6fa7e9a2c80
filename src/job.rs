//! Jobs: typed units of Redis work. A job owns its commands and turns the replies into its own
//! output; the feed thread runs any job the same way (`Feed::run_job`) and sorts what went
//! wrong — no connection, a dropped one, a refusal by Redis or the library, an unreadable
//! reply — once, into [`Upstream`]. Each feature keeps its jobs beside it (`catalog/jobs.rs`,
//! `control/jobs.rs`, …); shards ask with `ShardCtx::run(conn, job, deadline)`, handlers with
//! `api::Step::redis(job, …)`. This file is the seam between the two sides: the trait, the
//! narrow view of the feed a job gets ([`Redis`]), and the type-erased form the inbox carries.

use crate::control::rate::ControlRate;
use crate::error::Upstream;
use std::any::Any;
use std::time::{Duration, Instant};

/// A job's answer on its way back to the asker (the typed result inside, see [`take`]).
pub type Answer = Box<dyn Any + Send>;

pub trait Job: Send + 'static {
    type Output: Send + 'static;

    /// Does the work over `redis`. A Redis error is returned as is: the feed sorts it.
    fn run(self, redis: &mut Redis<'_>) -> Result<Self::Output, JobError>;
}

/// What went wrong in a job, before the feed sorts it for the asker.
#[derive(Debug)]
pub enum JobError {
    Redis(redis::RedisError),
    /// Redis answered something the job cannot read (names the command).
    Unexpected(&'static str),
}

impl From<redis::RedisError> for JobError {
    fn from(e: redis::RedisError) -> Self {
        JobError::Redis(e)
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Redis(e) => e.fmt(f),
            JobError::Unexpected(what) => write!(f, "unexpected reply from {what}"),
        }
    }
}

impl std::error::Error for JobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JobError::Redis(e) => Some(e),
            JobError::Unexpected(_) => None,
        }
    }
}

/// What a job may use: the feed's connection and the few services of the feed that work on
/// behalf of a client needs.
pub struct Redis<'a> {
    pub con: &'a mut redis::Connection,
    pub desk: &'a mut dyn Desk,
}

/// The feed's state that jobs read or change (the feed implements it).
pub trait Desk {
    /// The configured channels changed: the feed reads them again before the answer
    /// leaves, so the shards know the new catalog before the client can act on it.
    fn catalog_changed(&mut self);
    /// The last measured round trip and when (reused for a moment).
    fn last_ping(&mut self) -> &mut Option<(Instant, Duration)>;
    /// How many commands a user and an address may send (both doors share it).
    fn control_rate(&mut self) -> &mut ControlRate;
    /// This gateway's instance id (its commands' results come back to it).
    fn instance(&self) -> &str;
    /// How long a command may take before it times out.
    fn control_timeout_ms(&self) -> u64;
    /// A command was queued: count it and track it for its final ack.
    fn queued(
        &mut self,
        command_id: &str,
        client_id: &str,
        request_id: Option<&str>,
        operator: Option<&str>,
    );
}

impl Redis<'_> {
    /// Asks the feed to read the configured channels again before answering.
    pub fn catalog_changed(&mut self) {
        self.desk.catalog_changed();
    }
}

/// A `PING` measured this recently answers further asks: however often health checks come,
/// the feed spends at most ten round trips a second on them, not its collect time.
const PING_REUSE: Duration = Duration::from_millis(100);

/// A live `PING` on the feed's connection, timed (reused for 100 ms).
pub struct Ping;

impl Job for Ping {
    type Output = Duration;

    fn run(self, redis: &mut Redis<'_>) -> Result<Duration, JobError> {
        if let Some((at, rtt)) = *redis.desk.last_ping() {
            if at.elapsed() < PING_REUSE {
                return Ok(rtt);
            }
        }
        let t = Instant::now();
        redis::cmd("PING").query::<redis::Value>(redis.con)?;
        let rtt = t.elapsed();
        *redis.desk.last_ping() = Some((Instant::now(), rtt));
        Ok(rtt)
    }
}

/// A job with its type erased, as the inbox carries it.
pub trait Erased: Send {
    /// Runs over `redis` (`None`: no connection) → the answer, and the error that broke the
    /// connection if one did (the feed then reconnects).
    fn run_erased(
        self: Box<Self>,
        redis: Option<&mut Redis<'_>>,
    ) -> (Answer, Option<redis::RedisError>);

    /// The job itself, for a look at it before it runs (tests).
    fn as_any(&self) -> &dyn Any;
}

impl<J: Job> Erased for J {
    fn run_erased(
        self: Box<Self>,
        redis: Option<&mut Redis<'_>>,
    ) -> (Answer, Option<redis::RedisError>) {
        let Some(redis) = redis else {
            return (answer::<J>(Err(Upstream::Unavailable)), None);
        };
        let (result, broke) = match (*self).run(redis) {
            Ok(v) => (Ok(v), None),
            Err(e) => {
                let (why, broke) = sort(e);
                (Err(why), broke)
            }
        };
        (answer::<J>(result), broke)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn answer<J: Job>(result: Result<J::Output, Upstream>) -> Answer {
    Box::new(result)
}

/// The typed result inside `answer` (a job's answer, or what the asker got instead).
pub fn take<T: Send + 'static>(answer: Result<Answer, Upstream>) -> Result<T, Upstream> {
    match answer?.downcast::<Result<T, Upstream>>() {
        Ok(r) => *r,
        Err(_) => Err(Upstream::Failed("an answer of the wrong kind".into())),
    }
}

/// The failure as the asker sees it, and the error when the connection itself broke.
fn sort(e: JobError) -> (Upstream, Option<redis::RedisError>) {
    match e {
        JobError::Redis(e) if is_connection_error(&e) => (Upstream::Unavailable, Some(e)),
        JobError::Redis(e) if e.code().is_some() => {
            let text = format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""));
            (Upstream::Refused(text.trim().to_string()), None)
        }
        other => (Upstream::Failed(other.to_string()), None),
    }
}

// Reading replies: shared by the jobs and the feed's own reading.

/// Whether `e` means the connection is gone (rather than a refused command).
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    // READONLY: the server became a replica (a Sentinel failover); reconnect to the master.
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.code() == Some("READONLY")
}

pub fn as_u64(v: &redis::Value) -> Option<u64> {
    match v {
        redis::Value::Int(n) => u64::try_from(*n).ok(),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

pub fn as_string(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The (field, value) pairs of an `HGETALL` reply (RESP2 array or RESP3 map).
pub fn hash_fields(v: redis::Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    let bytes = |v: redis::Value| match v {
        redis::Value::BulkString(b) => b,
        redis::Value::SimpleString(s) => s.into_bytes(),
        redis::Value::Int(n) => n.to_string().into_bytes(),
        _ => Vec::new(),
    };
    match v {
        redis::Value::Array(items) => {
            let mut it = items.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(val)) = (it.next(), it.next()) {
                out.push((bytes(k), bytes(val)));
            }
            out
        }
        redis::Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| (bytes(k), bytes(v)))
            .collect(),
        _ => Vec::new(),
    }
}
