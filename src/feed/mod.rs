//! The Redis feed: one thread owns the Redis conversation. When a write wakes it (or every
//! tick) it asks `netsrv_collect_data` what was written since its cursor, reads those hashes
//! with one pipelined round trip, and publishes a new immutable snapshot for the shards.
//! Between collects it waits on its one [`inbox`]: a stop, wake-ups, and shards' requests,
//! answered to the address they carry.
//!
//! This file is the feed's life (connect, collect rounds, waiting, running jobs); what one
//! round reads is beside it: `collect` (changes and the catalog), `alarms`, `control`
//! (command results), `revocations`, `wake` (the wake-up subscriber), and what it hands the
//! shards, `published`. The Redis work clients ask for is not here: it is jobs beside their
//! features (`crate::job`).
//!
//! Why one thread: Redis is the single source of truth and one pipelined conversation is
//! both the cheapest for Redis and the simplest to keep ordered; shards never wait on it.
//! When Redis is down the last snapshot keeps being served and health says `degraded`.

pub mod alarms;
mod collect;
pub mod control;
mod desk;
mod error;
pub mod fault;
pub mod inbox;
pub mod library;
mod published;
pub mod revocations;
pub mod sentinel;
pub mod stream;
mod wake;

use crate::alarm::{ActiveAlarms, Alarm};
use crate::config::Config;
pub use crate::job::{as_string, as_u64, hash_fields, is_connection_error};
use crate::log;
use crate::site::change::Change;
use crate::site::store::Store;
use crate::site::{DependencyHealth, Snapshot};
pub use collect::{parse_collect_reply, Collected};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use error::no_functions;
pub use error::FeedError;
use inbox::Event;
pub use inbox::{FeedHandle, Postman, ReplyTo};
pub use published::{AlarmSink, CatalogSink, ChangeSink, ControlSink, HealthSink, Published};
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use wake::WAKE_CHANNEL;

/// The user holding a client id here, if any.
type Holder = Box<dyn Fn(&str) -> Option<String> + Send>;
/// Receives what other gateways send this one.
type PeerSink = Box<dyn FnMut(&str) + Send>;

/// Least time between two collects that wake-ups start: a site writing continuously would
/// otherwise have the feed collect (and every shard take a tick) after nearly every write.
const WAKE_MIN_GAP: Duration = Duration::from_millis(2);

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
    /// Receives the final acks taken for senders connected here (routed to them).
    on_control: Option<ControlSink>,
    /// The user a client id is held by on this gateway (`None`: not connected here).
    holder: Option<Holder>,
    /// Receives messages on this gateway's own channel.
    on_peer: Option<PeerSink>,
    /// What jobs use of the feed (the command tracker among it).
    desk: desk::Desk,
    /// A resync was cut short: the next collect rebuilds the site from cursor 0.
    force_resync: bool,
    /// The `WAKE_CHANNEL` subscription.
    wake: wake::Waking,
    /// Redis's `host:port` (never the credentials), for what is logged and shown.
    redis_addr: String,
    /// Where to connect: the configured URL, or the master the sentinels name.
    locator: sentinel::Locator,
    /// The URL the data connection was opened with (the wake-up subscriber uses the same).
    data_url: String,
    /// With Sentinel: the master connected to (or last connected to), and the watcher.
    master: Option<sentinel::MasterAddr>,
    watch: Option<sentinel::Watch>,
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
        // Validated with the configuration; a direct URL the client library refuses shows
        // as a failed connect.
        let target = crate::redis_url::RedisTarget::parse(&config.redis_url)
            .unwrap_or_else(|_| crate::redis_url::RedisTarget::Direct(config.redis_url.clone()));
        let locator =
            sentinel::Locator::new(target, Duration::from_millis(config.redis_timeout_ms));
        let redis_addr = locator.describe();
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
            recheck_acks: Vec::new(),
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
            holder: None,
            on_peer: None,
            desk,
            force_resync: false,
            wake: wake::Waking::new(),
            redis_addr,
            data_url: String::new(),
            locator,
            master: None,
            watch: None,
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

    /// Who holds a client id on this gateway: the senders whose final acks it takes.
    pub fn holders(mut self, f: impl Fn(&str) -> Option<String> + Send + 'static) -> Self {
        self.holder = Some(Box::new(f));
        self
    }

    /// Messages other gateways send this one (`gw:instance:{instance_id}`).
    pub fn on_peer(mut self, f: impl FnMut(&str) + Send + 'static) -> Self {
        self.on_peer = Some(Box::new(f));
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
        if let Some(s) = self.locator.sentinels() {
            match sentinel::Watch::spawn(s.clone(), self.handle.clone()) {
                Ok(w) => self.watch = Some(w),
                // Failovers are still followed when the connection drops.
                Err(e) => log::warn(&format!("cannot start the Sentinel watcher: {e}")),
            }
        }
        loop {
            let result = self.connect().and_then(|mut con| {
                backoff = Duration::from_millis(100).min(max_backoff);
                self.session(&mut con)
            });
            self.wake.stop();
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
            match ev {
                Event::Stop => return Ok(Waited::Stop),
                Event::Woken { generation } if wakeable && self.wake.current(generation) => {
                    return Ok(Waited::Woken)
                }
                Event::Woken { .. } => {}
                Event::Subscribed { generation } if self.wake.current(generation) => {
                    self.wake.subscribed();
                    // Collect at once: only a collect made while subscribed arms the
                    // library's hint, and until then writes would wait for the tick.
                    if wakeable {
                        return Ok(Waited::Woken);
                    }
                }
                Event::WakeLost { generation, why } if self.wake.current(generation) => {
                    // The data connection is unaffected: poll, and subscribe again later.
                    self.wake.lost(&why, self.config.tick_ms);
                }
                Event::Subscribed { .. } | Event::WakeLost { .. } => {}
                Event::Peer { message } => match message.strip_prefix("acks ") {
                    // Acks given back for a client id a connection here holds now.
                    Some(client_id) => match con.as_deref_mut() {
                        Some(c) => self.take_waiting_acks(c, std::iter::once(client_id))?,
                        None if self.desk.recheck_acks.len() < desk::RECHECK_MAX => {
                            self.desk.recheck_acks.push(client_id.to_string())
                        }
                        None => {}
                    },
                    None => {
                        if let Some(f) = self.on_peer.as_mut() {
                            f(&message);
                        }
                    }
                },
                Event::Master { addr } => match (&con, &self.master) {
                    // Connected to another server than the one the sentinels name now: it
                    // was demoted (or cut off), so leave it.
                    (Some(_), Some(current)) if *current != addr => {
                        return Err(FeedError::MasterMoved {
                            from: crate::redis_url::host_port(&current.0, current.1),
                            to: crate::redis_url::host_port(&addr.0, addr.1),
                        })
                    }
                    (Some(_), _) => {}
                    // Disconnected: a master is named, connect now rather than after the backoff.
                    (None, _) => return Ok(Waited::Woken),
                },
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

    /// The data connection: to the configured Redis or the master the sentinels name (checked
    /// to be one), with the Function library made current.
    fn connect(&mut self) -> Result<redis::Connection, FeedError> {
        let located = self.locator.locate()?;
        self.redis_addr = located.addr;
        let mut con = connect_url(&located.url, self.config.redis_timeout_ms)?;
        if let Some(master) = located.master {
            let role = sentinel::role(&mut con).map_err(FeedError::Handshake)?;
            if role != "master" {
                return Err(FeedError::NotMaster {
                    addr: self.redis_addr.clone(),
                    role,
                });
            }
            if self.master.as_ref().is_some_and(|m| *m != master) {
                // A promoted replica may be behind what was read from the old master (its
                // seq even below the cursor): everything is read again from it.
                log::warn(&format!(
                    "Redis master moved to {}; resynchronising from it",
                    self.redis_addr
                ));
                self.after_failover();
            }
            self.master = Some(master);
        }
        self.data_url = located.url;
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

    /// Connected to another master than before: a promoted replica holds what was replicated
    /// to it, which may be less than what was read. The site, the active alarms and the
    /// readers' cursors are read again from it (like a reset, but its commands were not lost:
    /// their records were replicated or their senders still get a timeout).
    fn after_failover(&mut self) {
        self.force_resync = true;
        self.alarms.reset();
        self.desk.results.reset();
        self.revocations.reset();
    }

    /// Starts a `WAKE_CHANNEL` subscriber when configured and the library in Redis publishes
    /// there.
    fn start_subscriber(&mut self, con: &mut redis::Connection) {
        let enabled =
            self.config.wake && library::version(con).is_some_and(|v| v >= library::WAKE_SINCE);
        let (url, timeout_ms) = (&self.data_url, self.config.redis_timeout_ms);
        let connect = || connect_url(url, timeout_ms);
        self.wake.start(
            enabled,
            connect,
            &self.handle,
            self.config.tick_ms,
            &self.config.control.instance_id,
        );
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
            self.poll_results(con)?;
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
            if self.config.wake && self.wake.due(Instant::now()) {
                self.start_subscriber(con);
            }
        }
    }
}

/// A connection to `url` with the configured timeouts (the wake-up subscription uses it as
/// is), checked with a `PING`: the client library ignores what its own start-up commands are
/// answered, so a password Redis wants, or a server that is not Redis, shows here.
fn connect_url(url: &str, timeout_ms: u64) -> Result<redis::Connection, FeedError> {
    let timeout = Duration::from_millis(timeout_ms);
    let client = redis::Client::open(url)?;
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
