//! The Redis feed: one thread owns the Redis conversation. When a write wakes it (or every
//! tick) it asks `netsrv_collect_data` what was written since its cursor, reads those hashes
//! with one pipelined round trip, and publishes a new immutable snapshot for the shards.
//! Between collects it waits on its one [`inbox`]: a stop, wake-ups, and shards' requests,
//! answered to the address they carry.
//!
//! Why one thread: Redis is the single source of truth and one pipelined conversation is
//! both the cheapest for Redis and the simplest to keep ordered; shards never wait on it.
//! When Redis is down the last snapshot keeps being served and health says `degraded`.

pub mod alarms;
pub mod control;
mod desk;
pub mod fault;
pub mod inbox;
pub mod library;
pub mod revocations;
pub mod stream;
mod wake;

use crate::alarm::{ActiveAlarms, Alarm};
use crate::config::Config;
use crate::log;
use crate::site::change::Change;
use crate::site::store::Store;
use crate::site::{DependencyHealth, Snapshot};
use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use inbox::Event;
pub use inbox::{FeedHandle, Postman, ReplyTo};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wake::Subscriber;

/// The pub/sub channel the library publishes on when a write follows a caught-up collect.
pub const WAKE_CHANNEL: &str = "netsrv:wake";

/// Least time between two collects that wake-ups start: a site writing continuously would
/// otherwise have the feed collect (and every shard take a tick) after nearly every write.
const WAKE_MIN_GAP: Duration = Duration::from_millis(2);

/// How often a missing wake-up subscription is attempted again (the tick covers meanwhile).
const WAKE_RETRY: Duration = Duration::from_secs(5);

/// How often the feed checks `cfg:version` for configuration changes made elsewhere.
const CATALOG_CHECK: Duration = Duration::from_secs(1);

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

pub use crate::job::{as_string, as_u64, hash_fields, is_connection_error};

/// Redis does not know FUNCTION/FCALL: the error, with the version it reports.
fn no_functions(con: &mut redis::Connection) -> FeedError {
    FeedError::NoFunctions {
        version: library::server_version(con),
    }
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

/// Why a connected period of the feed ended. Worded for `/health/detailed`; the Redis error
/// is kept as the source.
#[derive(Debug)]
pub enum FeedError {
    Redis(redis::RedisError),
    /// Connecting, or the first command on a new connection, failed: what answered may not be
    /// a Redis server at all.
    Handshake(redis::RedisError),
    /// Redis has no Functions (older than 7, or FUNCTION disabled); its version if it said.
    NoFunctions {
        version: Option<String>,
    },
    /// Redis answered something the feed cannot read (names the command).
    UnexpectedReply(&'static str),
    /// The library is missing and the gateway may not load it.
    LibraryMissing,
}

/// The feed's readers (streams, the alarm log) serve jobs too.
impl From<FeedError> for crate::job::JobError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::Redis(e) | FeedError::Handshake(e) => crate::job::JobError::Redis(e),
            FeedError::UnexpectedReply(what) => crate::job::JobError::Unexpected(what),
            FeedError::NoFunctions { .. } | FeedError::LibraryMissing => {
                crate::job::JobError::Unexpected("the Function library")
            }
        }
    }
}

impl From<redis::RedisError> for FeedError {
    fn from(e: redis::RedisError) -> Self {
        FeedError::Redis(e)
    }
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedError::Redis(e) | FeedError::Handshake(e) => e.fmt(f),
            FeedError::NoFunctions { version } => write!(
                f,
                "Redis has no Functions (version {})",
                version.as_deref().unwrap_or("unknown")
            ),
            FeedError::UnexpectedReply(what) => write!(f, "unexpected reply from {what}"),
            FeedError::LibraryMissing => f.write_str(
                "netsrv_collect_data is not loaded in Redis and --no-load-functions is set",
            ),
        }
    }
}

impl std::error::Error for FeedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FeedError::Redis(e) | FeedError::Handshake(e) => Some(e),
            _ => None,
        }
    }
}

/// What the feed publishes for the shards: the latest snapshot and Redis's health, each
/// replaced whole (readers never lock).
pub struct Published {
    pub snapshot: ArcSwap<Snapshot>,
    pub redis: ArcSwap<DependencyHealth>,
    /// The active alarms (empty until read from Redis).
    pub alarms: ArcSwap<ActiveAlarms>,
    /// The configured channels (`cfg:channels`).
    pub catalog: ArcSwap<crate::catalog::Catalog>,
    /// The feed's counters (`/metrics`).
    pub feed: crate::metrics::FeedCounters,
}

impl Published {
    pub fn new() -> Arc<Published> {
        Arc::new(Published {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            redis: ArcSwap::from_pointee(DependencyHealth {
                healthy: false,
                message: "Connecting to Redis".into(),
            }),
            alarms: ArcSwap::from_pointee(ActiveAlarms::default()),
            catalog: ArcSwap::from_pointee(crate::catalog::Catalog::default()),
            feed: Default::default(),
        })
    }
}

/// Called with each published snapshot and the changes it carries.
pub type ChangeSink = Box<dyn FnMut(&Arc<Snapshot>, &[Change]) + Send>;

/// Called with each batch of new alarm events and the active set after them.
pub type AlarmSink = Box<dyn FnMut(&[Arc<Alarm>], &Arc<ActiveAlarms>) + Send>;

/// Called with the final states of this instance's commands, in order.
pub type ControlSink = Box<dyn FnMut(Vec<crate::control::ControlResult>) + Send>;

/// Called with Redis's health each time it changes.
pub type HealthSink = Box<dyn FnMut(&Arc<DependencyHealth>) + Send>;
/// Called with the configured channels when they change.
pub type CatalogSink = Box<dyn FnMut(&Arc<crate::catalog::Catalog>) + Send>;

/// How a wait on the inbox ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waited {
    Deadline,
    Woken,
    Stop,
}

/// The feed thread's state. `run` is its whole life.
pub struct Feed {
    config: Arc<Config>,
    published: Arc<Published>,
    inbox: Receiver<Event>,
    /// For the wake-up subscribers, which send into the same inbox.
    handle: FeedHandle,
    postman: Postman,
    store: Store,
    cursor: u64,
    epoch: String,
    /// Receives each published batch of changes (the WebSocket fan-out subscribes here).
    on_changes: Option<ChangeSink>,
    /// Receives each change of Redis's health (WebSocket clients are told).
    on_health: Option<HealthSink>,
    /// Receives the configured channels when they change.
    on_catalog: Option<CatalogSink>,
    /// `cfg:version` when the catalog was last read (`None`: never), and when it was checked
    /// (`None`: check at the next opportunity).
    catalog_version: Option<Option<i64>>,
    catalog_checked: Option<Instant>,
    /// Receives new alarm events (every alarm-receiving WebSocket client is sent them).
    on_alarms: Option<AlarmSink>,
    alarms: alarms::AlarmReader,
    /// Receives this instance's command results (routed to their senders).
    on_control: Option<ControlSink>,
    /// What jobs use of the feed (the command tracker among it).
    desk: desk::Desk,
    /// A resync was cut short: the next collect rebuilds the site from cursor 0.
    force_resync: bool,
    /// The running `WAKE_CHANNEL` subscriber, if any.
    subscriber: Option<Subscriber>,
    generation: u64,
    /// It confirmed its subscription: collects ask the library to publish the next write.
    wake_active: bool,
    /// When to try subscribing again after a failure.
    wake_retry_at: Instant,
    /// A subscription failure was logged and has not been followed by a success yet.
    wake_warned: bool,
    /// Redis's `host:port` (never the credentials), for what is logged and shown.
    redis_addr: String,
    /// When Redis's failures and recoveries are logged.
    outage: fault::OutageLog,
    /// The logins ended on any gateway (`None`: no `Auth` attached, as in unit tests).
    auth: Option<Arc<crate::auth::Auth>>,
    revocations: revocations::RevocationLog,
}

impl Feed {
    /// `inbox` is the receiving side of `handle`; `postman` delivers answers to shards.
    pub fn new(
        config: Arc<Config>,
        published: Arc<Published>,
        (handle, inbox): (FeedHandle, Receiver<Event>),
        postman: Postman,
    ) -> Feed {
        let instance = config.control.instance_id.clone();
        let redis_addr = redis::Client::open(config.redis_url.as_str()).map_or_else(
            |_| "the configured address".to_string(),
            |c| c.get_connection_info().addr().to_string(),
        );
        let desk = desk::Desk {
            catalog_changed: false,
            last_ping: None,
            results: control::ResultReader::new(instance),
            control_rate: crate::control::rate::ControlRate::new(
                config.control.max_per_sec,
                config.control.burst,
            ),
            control_timeout_ms: config.control.timeout_ms,
            published: published.clone(),
        };
        Feed {
            config,
            published,
            inbox,
            handle,
            postman,
            store: Store::default(),
            cursor: 0,
            epoch: String::new(),
            on_changes: None,
            on_health: None,
            on_catalog: None,
            catalog_version: None,
            catalog_checked: None,
            on_alarms: None,
            alarms: alarms::AlarmReader::default(),
            on_control: None,
            desk,
            force_resync: false,
            subscriber: None,
            generation: 0,
            wake_active: false,
            wake_retry_at: Instant::now(),
            wake_warned: false,
            redis_addr,
            outage: fault::OutageLog::default(),
            auth: None,
            revocations: revocations::RevocationLog::default(),
        }
    }

    pub fn on_changes(mut self, f: impl FnMut(&Arc<Snapshot>, &[Change]) + Send + 'static) -> Self {
        self.on_changes = Some(Box::new(f));
        self
    }

    pub fn on_alarms(
        mut self,
        f: impl FnMut(&[Arc<Alarm>], &Arc<ActiveAlarms>) + Send + 'static,
    ) -> Self {
        self.on_alarms = Some(Box::new(f));
        self
    }

    pub fn on_control(
        mut self,
        f: impl FnMut(Vec<crate::control::ControlResult>) + Send + 'static,
    ) -> Self {
        self.on_control = Some(Box::new(f));
        self
    }

    /// Shares `auth`'s ended logins with every gateway on this Redis (and keeps them across
    /// restarts) through `auth:revocations`.
    pub fn with_auth(mut self, auth: Arc<crate::auth::Auth>) -> Self {
        self.auth = Some(auth);
        self
    }

    pub fn on_health(mut self, f: impl FnMut(&Arc<DependencyHealth>) + Send + 'static) -> Self {
        self.on_health = Some(Box::new(f));
        self
    }

    pub fn on_catalog(
        mut self,
        f: impl FnMut(&Arc<crate::catalog::Catalog>) + Send + 'static,
    ) -> Self {
        self.on_catalog = Some(Box::new(f));
        self
    }

    fn set_health(&mut self, healthy: bool, message: String) {
        let cur = self.published.redis.load();
        if cur.healthy != healthy || cur.message != message {
            let new = Arc::new(DependencyHealth { healthy, message });
            self.published.redis.store(new.clone());
            if let Some(f) = self.on_health.as_mut() {
                f(&new);
            }
        }
    }

    /// Runs until told to stop.
    pub fn run(mut self) {
        let max_backoff = Duration::from_millis(self.config.reconnect_max_ms);
        let mut backoff = Duration::from_millis(100).min(max_backoff);
        loop {
            let result = self.connect().and_then(|mut con| {
                backoff = Duration::from_millis(100).min(max_backoff);
                self.session(&mut con)
            });
            self.stop_subscriber();
            self.desk.last_ping = None;
            match result {
                Ok(()) => return,
                Err(e) => {
                    crate::metrics::bump(&self.published.feed.errors, 1);
                    let fault = fault::diagnose(&e, &self.redis_addr, self.config.redis_timeout_ms);
                    log::debug(&format!("Redis attempt failed: {fault} ({e})"));
                    if let Some(line) = self.outage.failed(&fault, Instant::now()) {
                        log::warn(&format!(
                            "{line}; retrying every {} s at most",
                            max_backoff.as_secs_f32()
                        ));
                    }
                    let held = if self.published.snapshot.load().loaded {
                        "serving the last known state"
                    } else {
                        "no data loaded yet"
                    };
                    self.set_health(false, format!("Redis unavailable: {fault}; {held}"));
                }
            }
            // Disconnected: requests are answered (Redis is down), wake-ups ignored.
            if let Ok(Waited::Stop) = self.wait_until(Instant::now() + backoff, None, false) {
                return;
            }
            backoff = (backoff * 2).min(max_backoff);
        }
    }

    /// Waits on the inbox until `deadline`, handling what arrives: requests are answered
    /// (over `con` when connected), subscriber news updates how collects run. A wake-up ends
    /// the wait when `wakeable`. An error is a Redis failure met while answering.
    fn wait_until(
        &mut self,
        deadline: Instant,
        mut con: Option<&mut redis::Connection>,
        wakeable: bool,
    ) -> Result<Waited, FeedError> {
        loop {
            // A stream of requests (a command storm) must not postpone the next collect: once
            // the tick is due, collect first and answer the rest after it.
            if Instant::now() >= deadline {
                return Ok(Waited::Deadline);
            }
            let ev = match self.inbox.recv_deadline(deadline) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout) => return Ok(Waited::Deadline),
                Err(RecvTimeoutError::Disconnected) => return Ok(Waited::Stop),
            };
            let current = |g: u64| self.subscriber.as_ref().is_some_and(|s| s.generation == g);
            match ev {
                Event::Stop => return Ok(Waited::Stop),
                Event::Woken { generation } if wakeable && current(generation) => {
                    return Ok(Waited::Woken)
                }
                Event::Woken { .. } => {}
                Event::Subscribed { generation } if current(generation) => {
                    self.wake_active = true;
                    if std::mem::take(&mut self.wake_warned) {
                        log::info(&format!("{WAKE_CHANNEL} subscription restored"));
                    }
                    // Collect at once: only a collect made while subscribed arms the
                    // library's hint, and until then writes would wait for the tick.
                    if wakeable {
                        return Ok(Waited::Woken);
                    }
                }
                Event::WakeLost { generation, why } if current(generation) => {
                    // The data connection is unaffected: poll, and subscribe again later.
                    self.stop_subscriber();
                    self.wake_failed(&why);
                }
                Event::Subscribed { .. } | Event::WakeLost { .. } => {}
                Event::Run { job, reply_to } => self.run_job(job, reply_to, con.as_deref_mut())?,
            }
        }
    }

    /// Runs a shard's job and posts its answer to the asker; a job that changed the
    /// configured channels has them read again first. An error is one that broke the
    /// connection (the job's asker was answered `Unavailable`).
    fn run_job(
        &mut self,
        job: Box<dyn crate::job::Erased>,
        reply_to: ReplyTo,
        con: Option<&mut redis::Connection>,
    ) -> Result<(), FeedError> {
        let (answer, broke) = match con {
            None => job.run_erased(None),
            Some(con) => {
                let (answer, broke) = job.run_erased(Some(&mut crate::job::Redis {
                    con,
                    desk: &mut self.desk,
                }));
                if std::mem::take(&mut self.desk.catalog_changed) && broke.is_none() {
                    self.catalog_checked = None;
                    let _ = self.poll_catalog(con);
                }
                (answer, broke)
            }
        };
        (self.postman)(reply_to, answer);
        broke.map_or(Ok(()), |e| Err(e.into()))
    }

    /// The data connection: a plain one, with the Function library made current.
    fn connect(&self) -> Result<redis::Connection, FeedError> {
        let mut con = self.connect_plain()?;
        if self.config.load_functions {
            let outcome = match library::ensure(&mut con) {
                Err(e) if library::is_unknown_command(&e) => return Err(no_functions(&mut con)),
                other => other?,
            };
            if let library::LoadOutcome::Loaded { previous } = outcome {
                log::info(&format!(
                    "loaded Function library voltage v{} into Redis (was {})",
                    library::VERSION,
                    previous.map_or("absent".to_string(), |v| format!("v{v}"))
                ));
            }
        }
        Ok(con)
    }

    /// Starts a `WAKE_CHANNEL` subscriber when configured and the library in Redis publishes
    /// there; a failure is logged once per outage and retried after `WAKE_RETRY`.
    fn start_subscriber(&mut self, con: &mut redis::Connection) {
        self.wake_retry_at = Instant::now() + WAKE_RETRY;
        if !self.config.wake || library::version(con).is_none_or(|v| v < library::WAKE_SINCE) {
            return;
        }
        self.generation += 1;
        let spawned = self
            .connect_plain()
            .map_err(|e| e.to_string())
            .and_then(|c| {
                Subscriber::spawn(self.generation, c, self.handle.clone())
                    .map_err(|e| e.to_string())
            });
        match spawned {
            Ok(s) => self.subscriber = Some(s),
            Err(why) => self.wake_failed(&why),
        }
    }

    fn stop_subscriber(&mut self) {
        self.subscriber = None;
        self.wake_active = false;
    }

    /// Logged once per outage (the retry every `WAKE_RETRY` stays quiet until it succeeds).
    fn wake_failed(&mut self, why: &str) {
        self.wake_retry_at = Instant::now() + WAKE_RETRY;
        if !std::mem::replace(&mut self.wake_warned, true) {
            log::warn(&format!(
                "{WAKE_CHANNEL} subscription failed ({why}); polling every {} ms, retrying every {} s",
                self.config.tick_ms,
                WAKE_RETRY.as_secs()
            ));
        }
    }

    /// One connected period: collect every tick — or at once when a write wakes us — until
    /// stopped (Ok) or Redis fails (Err). Between collects the feed waits on its inbox.
    fn session(&mut self, con: &mut redis::Connection) -> Result<(), FeedError> {
        let tick = self.config.tick();
        self.start_subscriber(con);
        // Every ended login still in the log holds again on this connection — read before
        // the first collect, so a gateway is never ready (loaded) before it knows them.
        self.revocations.reset();
        if let Some(auth) = &self.auth {
            self.revocations.sync(con, auth)?;
        }
        loop {
            let started = Instant::now();
            self.collect_until_current(con)?;
            let f = &self.published.feed;
            crate::metrics::bump(&f.collects, 1);
            f.last_collect_us.store(
                started.elapsed().as_micros() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            f.last_collect_ms.store(
                crate::time::now_millis().max(0) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            self.poll_alarms(con)?;
            self.poll_catalog(con)?;
            if let Some(auth) = &self.auth {
                self.revocations.sync(con, auth)?;
            }
            let results = self.desk.results.poll(con)?;
            for r in &results {
                let f = &self.published.feed;
                let c = match r.status.as_str() {
                    "executed" => &f.control_executed,
                    "failed" => &f.control_failed,
                    _ => &f.control_timeout,
                };
                crate::metrics::bump(c, 1);
            }
            if !results.is_empty() {
                if let Some(f) = self.on_control.as_mut() {
                    f(results);
                }
            }
            // Healthy once a whole round worked (a connection that fails its first collect is
            // still the same outage).
            if let Some(line) = self.outage.connected(&self.redis_addr, Instant::now()) {
                log::info(&line);
            }
            self.set_health(true, "Redis connection successful".into());
            match self.wait_until(started + tick, Some(con), true)? {
                Waited::Stop => return Ok(()),
                // Collects at least `WAKE_MIN_GAP` apart (wake-ups meanwhile are absorbed).
                Waited::Woken => {
                    if self.wait_until(started + WAKE_MIN_GAP, Some(con), false)? == Waited::Stop {
                        return Ok(());
                    }
                }
                Waited::Deadline => {}
            }
            if self.subscriber.is_none() && self.config.wake && Instant::now() >= self.wake_retry_at
            {
                self.start_subscriber(con);
            }
        }
    }

    /// Reads the configured channels again when `cfg:version` moved (checked about once a
    /// second: another gateway's change shows within that; this gateway's at once).
    fn poll_catalog(&mut self, con: &mut redis::Connection) -> Result<(), FeedError> {
        if self
            .catalog_checked
            .is_some_and(|t| t.elapsed() < CATALOG_CHECK)
        {
            return Ok(());
        }
        self.catalog_checked = Some(Instant::now());
        let version: Option<i64> = redis::cmd("GET")
            .arg(crate::catalog::VERSION_KEY)
            .query(con)
            .unwrap_or(None);
        if self.catalog_version == Some(version) {
            return Ok(());
        }
        let fields = hash_fields(
            redis::cmd("HGETALL")
                .arg(crate::catalog::CHANNELS_KEY)
                .query::<redis::Value>(con)?,
        );
        self.catalog_version = Some(version);
        let catalog = Arc::new(crate::catalog::Catalog::from_fields(&fields));
        self.published.catalog.store(catalog.clone());
        if let Some(f) = self.on_catalog.as_mut() {
            f(&catalog);
        }
        Ok(())
    }

    /// A connection with the configured timeouts (the wake-up subscription uses it as is),
    /// checked with a `PING`: the client library ignores what its own start-up commands are
    /// answered, so a password Redis wants, or a server that is not Redis, shows here.
    fn connect_plain(&self) -> Result<redis::Connection, FeedError> {
        let cfg = &self.config;
        let timeout = Duration::from_millis(cfg.redis_timeout_ms);
        let client = redis::Client::open(cfg.redis_url.as_str())?;
        let handshake = |e| FeedError::Handshake(e);
        let mut con = client
            .get_connection_with_timeout(timeout)
            .map_err(handshake)?;
        con.set_read_timeout(Some(timeout)).map_err(handshake)?;
        con.set_write_timeout(Some(timeout)).map_err(handshake)?;
        redis::cmd("PING")
            .query::<()>(&mut con)
            .map_err(handshake)?;
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
            .arg(self.config.collect_batch)
            .arg(if self.wake_active {
                &["1"][..]
            } else {
                &[][..]
            })
            .query(con)
    }

    /// Reads new alarm events and hands them on with the active set after them.
    fn poll_alarms(&mut self, con: &mut redis::Connection) -> Result<(), FeedError> {
        if let Some(new) = self.alarms.poll(con)? {
            let f = &self.published.feed;
            for a in &new {
                let c = match a.event.status {
                    crate::alarm::AlarmStatus::Triggered => &f.alarm_triggers,
                    crate::alarm::AlarmStatus::Recovered => &f.alarm_recoveries,
                    crate::alarm::AlarmStatus::Acknowledged => &f.alarm_acks,
                };
                crate::metrics::bump(c, 1);
            }
            let active = self.alarms.active().clone();
            self.published.alarms.store(active.clone());
            if let Some(f) = self.on_alarms.as_mut() {
                f(&new, &active);
            }
        }
        Ok(())
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
        let first_load = !self.published.snapshot.load().loaded;
        if !changes.is_empty() || (first_load && result.is_ok()) {
            let snap = Arc::new(Snapshot {
                seq: self.cursor,
                epoch: self.epoch.clone(),
                loaded: true,
                channels: self.store.channels.clone(),
            });
            self.published.snapshot.store(snap.clone());
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
                Err(e) if library::is_missing_function(&e) && self.config.load_functions => {
                    log::warn("Function library missing in Redis (flushed?); reloading it");
                    library::load(con)?;
                    self.call_collect(con)?
                }
                Err(e) if library::is_missing_function(&e) => {
                    return Err(FeedError::LibraryMissing)
                }
                Err(e) if library::is_unknown_command(&e) => return Err(no_functions(con)),
                other => other?,
            };
            let c = parse_collect_reply(&reply)
                .ok_or(FeedError::UnexpectedReply("netsrv_collect_data"))?;
            if c.reset {
                log::warn(&format!(
                    "Redis was reset or replaced (epoch '{}' -> '{}'); resynchronising",
                    self.epoch, c.epoch
                ));
                *fresh = Some(Store::default());
                changes.clear();
                self.alarms.reset();
                self.desk.results.reset();
                self.revocations.reset();
                // Commands Redis lost with the reset end now, once each, with the reason.
                let lost = self.desk.results.lost_in_reset();
                if !lost.is_empty() {
                    log::warn(&format!(
                        "{} control commands in flight were lost with the reset; their senders are told they failed",
                        lost.len()
                    ));
                    crate::metrics::bump(&self.published.feed.control_failed, lost.len() as u64);
                    if let Some(f) = self.on_control.as_mut() {
                        f(lost);
                    }
                }
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
