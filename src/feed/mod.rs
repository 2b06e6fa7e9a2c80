//! The Redis feed: one thread owns the Redis connection. Every tick it asks
//! `netsrv_collect_data` what was written since its cursor, reads those hashes with one
//! pipelined round trip, and publishes a new immutable snapshot for the shards.
//!
//! Why one thread: Redis is the single source of truth and one pipelined conversation is
//! both the cheapest for Redis and the simplest to keep ordered; shards never wait on it.
//! When Redis is down the last snapshot keeps being served and health says `degraded`.

pub mod library;
pub mod store;

use crate::log;
use crate::state::{DependencyHealth, Shared, Snapshot};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Change, Store};

/// The pub/sub channel the library publishes on when a write follows a caught-up collect.
pub const WAKE_CHANNEL: &str = "netsrv:wake";

/// Least time between two collects that wake-ups start: a site writing continuously would
/// otherwise have the feed collect (and every shard take a tick) after nearly every write.
const WAKE_MIN_GAP: Duration = Duration::from_millis(2);

/// Longest the feed blocks on the subscription before checking whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// How often a missing wake-up subscription is attempted again (the tick covers meanwhile).
const WAKE_RETRY: Duration = Duration::from_secs(5);

/// What one `netsrv_collect_data` call returned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub epoch: String,
    pub head_seq: u64,
    pub next_cursor: u64,
    pub reset: bool,
    pub more: bool,
    /// Dirty members (`1001:T`) in seq order.
    pub members: Vec<String>,
}

fn as_u64(v: &redis::Value) -> Option<u64> {
    match v {
        redis::Value::Int(n) => u64::try_from(*n).ok(),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn as_string(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Decodes the flat reply `{epoch, head, next, reset, more, member, score, …}`.
pub fn parse_collect_reply(v: &redis::Value) -> Option<Collected> {
    let redis::Value::Array(items) = v else {
        return None;
    };
    if items.len() < 5 || (items.len() - 5) % 2 != 0 {
        return None;
    }
    Some(Collected {
        epoch: as_string(&items[0])?,
        head_seq: as_u64(&items[1])?,
        next_cursor: as_u64(&items[2])?,
        reset: as_u64(&items[3])? != 0,
        more: as_u64(&items[4])? != 0,
        members: items[5..]
            .chunks(2)
            .map(|pair| as_string(&pair[0]))
            .collect::<Option<Vec<_>>>()?,
    })
}

fn hash_fields(v: redis::Value) -> Vec<(Vec<u8>, Vec<u8>)> {
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

fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// `HGETALL comsrv:{member}` for every member in one pipelined round trip. If Redis refuses
/// one of them (a key of the wrong type), the members are read one by one and the unreadable
/// ones count as empty, so one bad key cannot stall the feed for the whole site.
fn read_hashes(
    con: &mut redis::Connection,
    members: &[String],
) -> Result<Vec<redis::Value>, FeedError> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for m in members {
        pipe.cmd("HGETALL").arg(format!("comsrv:{m}"));
    }
    match pipe.query(con) {
        Ok(hashes) => Ok(hashes),
        Err(e) if is_connection_error(&e) => Err(e.into()),
        Err(_) => members
            .iter()
            .map(|m| {
                let key = format!("comsrv:{m}");
                match redis::cmd("HGETALL").arg(&key).query::<redis::Value>(con) {
                    Ok(v) => Ok(v),
                    Err(e) if is_connection_error(&e) => Err(e.into()),
                    Err(e) => {
                        log::warn(&format!("skipping unreadable hash {key}: {e}"));
                        Ok(redis::Value::Nil)
                    }
                }
            })
            .collect(),
    }
}

/// A feed failure, worded for `/health/detailed`.
#[derive(Debug)]
pub struct FeedError(pub String);

impl From<redis::RedisError> for FeedError {
    fn from(e: redis::RedisError) -> Self {
        FeedError(e.to_string())
    }
}

/// Called with each published snapshot and the changes it carries.
pub type ChangeSink = Box<dyn FnMut(&Arc<Snapshot>, &[Change]) + Send>;

/// The feed thread's state. `run` is its whole life.
pub struct Feed {
    shared: Arc<Shared>,
    stop: Receiver<()>,
    store: Store,
    cursor: u64,
    epoch: String,
    /// Receives each published batch of changes (the WebSocket fan-out subscribes here).
    on_changes: Option<ChangeSink>,
    /// A resync was cut short: the next collect rebuilds the site from cursor 0.
    force_resync: bool,
    /// The feed listens on `WAKE_CHANNEL`: collects ask the library to publish the next write.
    wake_active: bool,
    /// A subscription failure was logged and has not been followed by a success yet.
    wake_warned: std::cell::Cell<bool>,
}

impl Feed {
    pub fn new(shared: Arc<Shared>, stop: Receiver<()>) -> Feed {
        Feed {
            shared,
            stop,
            store: Store::default(),
            cursor: 0,
            epoch: String::new(),
            on_changes: None,
            force_resync: false,
            wake_active: false,
            wake_warned: std::cell::Cell::new(false),
        }
    }

    pub fn on_changes(mut self, f: impl FnMut(&Arc<Snapshot>, &[Change]) + Send + 'static) -> Self {
        self.on_changes = Some(Box::new(f));
        self
    }

    fn set_health(&self, healthy: bool, message: String) {
        let cur = self.shared.redis.load();
        if cur.healthy != healthy || cur.message != message {
            self.shared
                .redis
                .store(Arc::new(DependencyHealth { healthy, message }));
        }
    }

    /// Waits up to `d`; true when asked to stop.
    fn wait(&self, d: Duration) -> bool {
        !matches!(self.stop.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }

    /// Runs until the stop channel fires or is dropped.
    pub fn run(mut self) {
        let cfg = self.shared.config.clone();
        let max_backoff = Duration::from_millis(cfg.reconnect_max_ms);
        let mut backoff = Duration::from_millis(100).min(max_backoff);
        loop {
            let result = self.connect().and_then(|mut con| {
                backoff = Duration::from_millis(100).min(max_backoff);
                self.session(&mut con)
            });
            match result {
                Ok(()) => return,
                Err(e) => {
                    let msg = format!("Redis unavailable: {}; serving the last known state", e.0);
                    if self.shared.redis.load().healthy {
                        log::warn(&msg);
                    }
                    self.set_health(false, msg);
                }
            }
            if self.wait(backoff) {
                return;
            }
            backoff = (backoff * 2).min(max_backoff);
        }
    }

    /// The data connection: a plain one, with the Function library made current.
    fn connect(&self) -> Result<redis::Connection, FeedError> {
        let cfg = &self.shared.config;
        let mut con = self.connect_plain()?;
        if cfg.load_functions {
            if let library::LoadOutcome::Loaded { previous } = library::ensure(&mut con)? {
                log::info(&format!(
                    "loaded Function library voltage v{} into Redis (was {})",
                    library::VERSION,
                    previous.map_or("absent".to_string(), |v| format!("v{v}"))
                ));
            }
        }
        Ok(con)
    }

    /// The connection for the `WAKE_CHANNEL` subscription, when configured and the library in
    /// Redis publishes there; `None` means poll every tick (logged, never fatal).
    fn wake_connection(&self, con: &mut redis::Connection) -> Option<redis::Connection> {
        let cfg = &self.shared.config;
        if !cfg.wake || library::version(con).is_none_or(|v| v < library::WAKE_SINCE) {
            return None;
        }
        self.connect_plain()
            .map_err(|e| self.wake_failed(&e.0))
            .ok()
    }

    /// Logged once per outage (the retry every `WAKE_RETRY` stays quiet until it succeeds).
    fn wake_failed(&self, why: &str) {
        if !self.wake_warned.replace(true) {
            log::warn(&format!(
                "{WAKE_CHANNEL} subscription failed ({why}); polling every {} ms, retrying every {} s",
                self.shared.config.tick_ms,
                WAKE_RETRY.as_secs()
            ));
        }
    }

    /// One connected period: collect every tick — or at once when a write wakes us — until
    /// stopped (Ok) or Redis fails (Err). A lost or refused subscription is retried every
    /// `WAKE_RETRY` while the tick carries on.
    fn session(&mut self, con: &mut redis::Connection) -> Result<(), FeedError> {
        loop {
            let mut wake_con = self.wake_connection(con);
            // The `PubSub` must live as long as the subscription: dropping it unsubscribes.
            let wake = wake_con.as_mut().and_then(|c| {
                let mut ps = c.as_pubsub();
                match ps.subscribe(WAKE_CHANNEL) {
                    Ok(()) => {
                        if self.wake_warned.replace(false) {
                            log::info(&format!("{WAKE_CHANNEL} subscription restored"));
                        }
                        Some(ps)
                    }
                    Err(e) => {
                        self.wake_failed(&e.to_string());
                        None
                    }
                }
            });
            if self.collect_loop(con, wake)? {
                return Ok(());
            }
        }
    }

    /// Collects until stopped (`Ok(true)`), until the subscription is lost or, without one,
    /// `WAKE_RETRY` has passed (`Ok(false)`: the caller subscribes again), or Redis fails.
    fn collect_loop(
        &mut self,
        con: &mut redis::Connection,
        mut wake: Option<redis::PubSub<'_>>,
    ) -> Result<bool, FeedError> {
        let tick = self.shared.config.tick();
        let retry_at = Instant::now() + WAKE_RETRY;
        self.wake_active = wake.is_some();
        loop {
            let started = Instant::now();
            self.collect_until_current(con)?;
            self.set_health(true, "Redis connection successful".into());
            let Some(ps) = wake.as_mut() else {
                if self.wait(tick.saturating_sub(started.elapsed())) {
                    return Ok(true);
                }
                if self.shared.config.wake && Instant::now() >= retry_at {
                    return Ok(false);
                }
                continue;
            };
            // Until the tick is due, in slices short enough to notice a stop promptly.
            let due = started + tick;
            let mut interrupted = 0;
            let woken = loop {
                let rest = due.saturating_duration_since(Instant::now());
                if rest.is_zero() {
                    break Ok(false);
                }
                match wait_for_wake(ps, rest.min(STOP_CHECK)) {
                    Ok(Wake::Woken) => break Ok(true),
                    Ok(Wake::Interrupted) if interrupted < MAX_INTERRUPTED => interrupted += 1,
                    Ok(Wake::Interrupted) => {
                        break Err("interrupted repeatedly".to_string());
                    }
                    Ok(Wake::TimedOut) => {}
                    Err(e) => break Err(e.to_string()),
                }
                if self.wait(Duration::ZERO) {
                    return Ok(true);
                }
            };
            match woken {
                Ok(true) => {
                    if self.wait(WAKE_MIN_GAP.saturating_sub(started.elapsed())) {
                        return Ok(true);
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    // The data connection is unaffected: poll, and subscribe again later.
                    self.wake_failed(&e);
                    wake = None;
                    self.wake_active = false;
                }
            }
        }
    }

    /// A connection with the configured timeouts (the wake-up subscription uses it as is).
    fn connect_plain(&self) -> Result<redis::Connection, FeedError> {
        let cfg = &self.shared.config;
        let timeout = Duration::from_millis(cfg.redis_timeout_ms);
        let client = redis::Client::open(cfg.redis_url.as_str())?;
        let con = client.get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(timeout))?;
        con.set_write_timeout(Some(timeout))?;
        Ok(con)
    }

    fn call_collect(&self, con: &mut redis::Connection) -> redis::RedisResult<redis::Value> {
        redis::cmd("FCALL")
            .arg("netsrv_collect_data")
            .arg(3)
            .arg("netsrv:seq")
            .arg("netsrv:dirty")
            .arg("netsrv:epoch")
            .arg(self.cursor)
            .arg(&self.epoch)
            .arg(self.shared.config.collect_batch)
            .arg(if self.wake_active {
                &["1"][..]
            } else {
                &[][..]
            })
            .query(con)
    }

    /// Collects batches until the cursor reaches Redis's head, then publishes once.
    fn collect_until_current(&mut self, con: &mut redis::Connection) -> Result<(), FeedError> {
        let mut changes = Vec::new();
        // Some while a reset is being read: the site is rebuilt from scratch (so channels
        // that vanished are dropped) and published only when complete.
        let mut fresh: Option<Store> = None;
        if self.force_resync {
            self.cursor = 0;
            fresh = Some(Store::default());
        }
        let result = self.collect_batches(con, &mut changes, &mut fresh);
        match (result.is_ok(), fresh) {
            (true, Some(new)) => {
                changes = self.store.diff(&new);
                self.store = new;
                self.force_resync = false;
            }
            // A resync cut short by an error starts over on the next attempt.
            (false, Some(_)) => self.force_resync = true,
            _ => {}
        }
        // Even after an error, what was applied to the store is published: otherwise those
        // changes would never reach clients (the retry sees no difference any more).
        let first_load = !self.shared.snapshot.load().loaded;
        if !changes.is_empty() || (first_load && result.is_ok()) {
            let snap = Arc::new(Snapshot {
                seq: self.cursor,
                epoch: self.epoch.clone(),
                loaded: true,
                channels: self.store.channels.clone(),
            });
            self.shared.snapshot.store(snap.clone());
            if let Some(f) = self.on_changes.as_mut() {
                f(&snap, &changes);
            }
        }
        result
    }

    fn collect_batches(
        &mut self,
        con: &mut redis::Connection,
        changes: &mut Vec<Change>,
        fresh: &mut Option<Store>,
    ) -> Result<(), FeedError> {
        loop {
            let reply = match self.call_collect(con) {
                Err(e) if library::is_missing_function(&e) && self.shared.config.load_functions => {
                    log::warn("Function library missing in Redis (flushed?); reloading it");
                    library::load(con)?;
                    self.call_collect(con)?
                }
                Err(e) if library::is_missing_function(&e) => {
                    return Err(FeedError(
                        "netsrv_collect_data is not loaded in Redis and --no-load-functions is set"
                            .into(),
                    ))
                }
                other => other?,
            };
            let c = parse_collect_reply(&reply)
                .ok_or_else(|| FeedError("unexpected reply from netsrv_collect_data".into()))?;
            if c.reset {
                log::warn(&format!(
                    "Redis was reset or replaced (epoch '{}' -> '{}'); resynchronising",
                    self.epoch, c.epoch
                ));
                *fresh = Some(Store::default());
                changes.clear();
            }
            let hashes = read_hashes(con, &c.members)?;
            for (m, h) in c.members.iter().zip(hashes) {
                let fields = hash_fields(h);
                match fresh.as_mut() {
                    Some(f) => drop(f.apply(m, &fields)),
                    None => changes.extend(self.store.apply(m, &fields)),
                }
            }
            self.epoch = c.epoch;
            self.cursor = c.next_cursor;
            if !c.more {
                return Ok(());
            }
        }
    }
}

/// What waiting on the wake-up subscription gave.
enum Wake {
    Woken,
    TimedOut,
    /// EINTR and kin: nothing was read and the subscription stands.
    Interrupted,
}

/// Waits up to `d` for a wake-up message.
fn wait_for_wake(ps: &mut redis::PubSub<'_>, d: Duration) -> redis::RedisResult<Wake> {
    if d.is_zero() {
        return Ok(Wake::TimedOut);
    }
    ps.set_read_timeout(Some(d))?;
    match ps.get_message() {
        Ok(_) => Ok(Wake::Woken),
        Err(e) if e.is_timeout() => Ok(Wake::TimedOut),
        Err(e) if matches!(e.retry_method(), redis::RetryMethod::RetryImmediately) => {
            Ok(Wake::Interrupted)
        }
        Err(e) => Err(e),
    }
}

/// Interruptions in a row after which the subscription is treated as broken (a persistent
/// error that merely looks transient must not turn the wait into a busy loop).
const MAX_INTERRUPTED: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value as V;

    #[test]
    fn parses_collect_reply() {
        let bulk = |s: &str| V::BulkString(s.as_bytes().to_vec());
        let reply = V::Array(vec![
            bulk("e1"),
            V::Int(7),
            V::Int(7),
            V::Int(0),
            V::Int(0),
            bulk("1001:T"),
            V::Int(6),
            bulk("1002:S"),
            V::Int(7),
        ]);
        let c = parse_collect_reply(&reply).unwrap();
        assert_eq!(c.epoch, "e1");
        assert_eq!(c.head_seq, 7);
        assert_eq!(c.members, vec!["1001:T", "1002:S"]);
        assert!(!c.reset && !c.more);
        assert!(parse_collect_reply(&V::Array(vec![bulk("e")])).is_none());
        assert!(parse_collect_reply(&V::Int(1)).is_none());
    }

    #[test]
    fn hash_fields_pairs() {
        let f = hash_fields(V::Array(vec![
            V::BulkString(b"1".to_vec()),
            V::BulkString(b"2.5".to_vec()),
        ]));
        assert_eq!(f, vec![(b"1".to_vec(), b"2.5".to_vec())]);
    }
}
