//! Shards: one thread per core, each a monoio runtime with its own SO_REUSEPORT listener and
//! the connections it accepted. Nothing is shared between shards but the immutable state the
//! feed publishes, so a connection's whole life runs on one core without locks.

mod conn;
pub mod inbox;
pub mod listener;
mod notify;
pub mod shared;
pub mod ws_conn;

use crate::config::DriverKind;
use crate::error::Upstream;
use crate::fanout::{ConnId, Fanout};
use crate::feed::ReplyTo;
use crate::job::{Answer, Job};
use crate::log;
use crate::shutdown::Shutdown;
use crate::site::tick::Tick;
use crate::site::{DependencyHealth, SourceStatus};
use crate::wire::close::Disconnect;
use inbox::ShardEvent;
use notify::Notify;
pub use shared::Shared;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The io driver the shards actually run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Legacy,
}

/// `--driver uring` on a kernel that refuses io_uring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringUnavailable;

impl std::fmt::Display for UringUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "--driver uring: io_uring is not available on this kernel (disabled by sysctl \
             kernel.io_uring_disabled, seccomp, or too old); use --driver legacy or auto",
        )
    }
}

impl std::error::Error for UringUnavailable {}

/// A shard that could not start: which one, what it was doing, and the OS error.
#[derive(Debug)]
pub struct ShardFailed {
    pub shard: usize,
    pub doing: &'static str,
    pub source: std::io::Error,
}

impl std::fmt::Display for ShardFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {}: {}: {}", self.shard, self.doing, self.source)
    }
}

impl std::error::Error for ShardFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl Driver {
    /// `auto` → io_uring when the kernel allows it; an explicit `uring` that the kernel
    /// refuses is an error, so a deployment never silently runs on the slower driver.
    pub fn resolve(kind: DriverKind) -> Result<Driver, UringUnavailable> {
        let uring_ok = monoio::utils::detect_uring();
        match kind {
            DriverKind::Auto if uring_ok => Ok(Driver::Uring),
            DriverKind::Auto | DriverKind::Legacy => Ok(Driver::Legacy),
            DriverKind::Uring if uring_ok => Ok(Driver::Uring),
            DriverKind::Uring => Err(UringUnavailable),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Legacy => "legacy (epoll)",
        }
    }
}

/// What every task on one shard shares (single-threaded: `Rc`, `Cell`).
pub struct ShardCtx {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub shutdown: Arc<Shutdown>,
    /// Responses being written right now; shutdown waits for them.
    pub in_flight: Cell<usize>,
    pub ws: RefCell<ws_conn::WsShard>,
    /// Work waiting for its answer (the feed's, the verifier's, the querier's), by
    /// (connection, request number).
    replies: RefCell<HashMap<(ConnId, u64), Rc<ReplySlot>>>,
    next_request: Cell<u64>,
    /// Redis's health as last heard from the feed.
    redis: RefCell<Arc<DependencyHealth>>,
    /// What this shard's WebSocket clients were last told about the data source.
    pub source: RefCell<SourceStatus>,
    /// `Auth::revocations` when this shard's connections were last checked against it.
    pub revocations_seen: Cell<u64>,
}

/// Where the feed's answer to one request lands.
#[derive(Default)]
struct ReplySlot {
    reply: Cell<Option<Answer>>,
    ready: Notify,
}

impl ShardCtx {
    /// Recomputes the data source's status from Redis's health and whether this shard's view
    /// of the site is loaded; on a change, every WebSocket client is told.
    pub fn source_changed(&self) {
        let loaded = self.ws.borrow().fanout.is_loaded();
        let status = self.shared.source_status(&self.redis.borrow(), loaded);
        if *self.source.borrow() != status {
            ws_conn::broadcast_status(self, &status);
            *self.source.borrow_mut() = status;
        }
    }

    /// Runs `job` in the feed on behalf of `conn`, waiting at most `deadline` for its output.
    pub async fn run<J: Job>(
        &self,
        conn: ConnId,
        job: J,
        deadline: Duration,
    ) -> Result<J::Output, Upstream> {
        let answer = self
            .ask(conn, deadline, |to| self.shared.feed.run(Box::new(job), to))
            .await;
        crate::job::take(answer)
    }

    /// Sends work with `send` (false: not accepted) on behalf of `conn` and waits at most
    /// `deadline` for the answer through this shard's inbox.
    pub async fn ask(
        &self,
        conn: ConnId,
        deadline: Duration,
        send: impl FnOnce(ReplyTo) -> bool,
    ) -> Result<Answer, Upstream> {
        let seq = self.next_request.get() + 1;
        self.next_request.set(seq);
        let slot = Rc::new(ReplySlot::default());
        self.replies.borrow_mut().insert((conn, seq), slot.clone());
        let to = ReplyTo {
            shard: self.index,
            conn,
            seq,
        };
        let reply = if send(to) {
            monoio::select! {
                _ = slot.ready.wait() => slot.reply.take().ok_or(Upstream::TimedOut),
                _ = monoio::time::sleep(deadline) => Err(Upstream::TimedOut),
            }
        } else {
            Err(Upstream::Busy)
        };
        self.replies.borrow_mut().remove(&(conn, seq));
        reply
    }

    /// Hands an answer to the connection waiting for it (a late one finds nobody).
    fn deliver(&self, to: ReplyTo, reply: Answer) {
        let slot = self.replies.borrow().get(&(to.conn, to.seq)).cloned();
        if let Some(slot) = slot {
            slot.reply.set(Some(reply));
            slot.ready.notify();
        }
    }
}

/// Starts shard `index` on its own thread; `ready` hears `Ok` once it accepts connections.
pub fn spawn(
    index: usize,
    listener: std::net::TcpListener,
    driver: Driver,
    shared: Arc<Shared>,
    shutdown: Arc<Shutdown>,
    ready: Sender<Result<(), ShardFailed>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || {
            let redis = shared.published.redis.load_full();
            let initial = Arc::new(Tick::new(
                shared.published.snapshot.load_full(),
                &[],
                crate::time::now_millis(),
            ));
            let ws = &shared.config.ws;
            let source = shared.source_status(&redis, initial.snapshot.loaded);
            let fanout = Fanout::new(initial, (ws.slow_close_secs * 1000) as i64, ws.max_channels);
            let alarms = shared.published.alarms.load_full();
            let ctx = Rc::new(ShardCtx {
                index,
                shared,
                shutdown,
                in_flight: Cell::new(0),
                ws: RefCell::new(ws_conn::WsShard {
                    fanout,
                    conns: HashMap::new(),
                    alarms,
                    held_acks: HashMap::new(),
                }),
                replies: RefCell::new(HashMap::new()),
                next_request: Cell::new(0),
                redis: RefCell::new(redis),
                source: RefCell::new(source),
                revocations_seen: Cell::new(0),
            });
            let started = match driver {
                Driver::Uring => uring_runtime(true)
                    .or_else(|_| uring_runtime(false))
                    .map(|mut rt| rt.block_on(run(listener, ctx, ready.clone()))),
                Driver::Legacy => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .map(|mut rt| rt.block_on(run(listener, ctx, ready.clone()))),
            };
            if let Err(e) = started {
                let _ = ready.send(Err(ShardFailed {
                    shard: index,
                    doing: match driver {
                        Driver::Uring => "starting the io_uring runtime",
                        Driver::Legacy => "starting the epoll runtime",
                    },
                    source: e,
                }));
            }
        })
}

/// An io_uring runtime. With `defer`, completions are processed only when the shard asks for
/// them (DEFER_TASKRUN + SINGLE_ISSUER, Linux 6.1+) instead of interrupting it as task work:
/// measured here as less CPU per delivered frame. Older kernels refuse the flags; the caller
/// then falls back to a plain ring. Public so `voltage-loadtest` runs on the very same rings.
pub fn uring_runtime(
    defer: bool,
) -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let mut urb = io_uring::IoUring::builder();
    if defer {
        urb.setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun();
    }
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(4096)
        .uring_builder(urb)
        .enable_timer()
        .build()
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn run(
    listener: std::net::TcpListener,
    ctx: Rc<ShardCtx>,
    ready: Sender<Result<(), ShardFailed>>,
) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(ShardFailed {
                shard: ctx.index,
                doing: "taking over its listener",
                source: e,
            }));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    monoio::spawn(events(ctx.clone()));
    monoio::spawn(sweeper(ctx.clone()));
    if ctx.index == 0 {
        monoio::spawn(ws_conn::renew_claims(ctx.clone()));
    }
    let mut last_warn: Option<Instant> = None;
    loop {
        monoio::select! {
            _ = ctx.shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    monoio::spawn(conn::serve(stream, peer, ctx.clone()));
                }
                Err(e) if is_resource_exhaustion(&e) => {
                    // Out of fds or memory: retrying at once would spin a core at 100%.
                    if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        log::warn_limited("accept-failed", &format!("shard {}: accept failed: {e}; backing off", ctx.index));
                        last_warn = Some(Instant::now());
                    }
                    monoio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {} // the peer gave up before we accepted (ECONNABORTED and kin)
            }
        }
    }
    drop(listener);
    // Stop accepting, tell WebSocket clients we are going away, then let responses being
    // written finish; idle keep-alive connections close when the runtime drops their tasks.
    let conns: Vec<_> = ctx.ws.borrow().conns.values().cloned().collect();
    for c in conns {
        c.close(Disconnect::Shutdown);
    }
    let deadline = Instant::now() + Duration::from_millis(ctx.shared.config.shutdown_grace_ms);
    while (ctx.in_flight.get() > 0 || !ctx.ws.borrow().conns.is_empty())
        && Instant::now() < deadline
    {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Applies the feed's ticks and answers and other shards' commands, and runs the fan-out's
/// timers.
async fn events(ctx: Rc<ShardCtx>) {
    let inbox = ctx.shared.inboxes[ctx.index].clone();
    loop {
        let due = ctx.ws.borrow().fanout.next_due();
        let wait = due.map(|t| t - crate::time::now_millis());
        let events = match wait {
            Some(ms) if ms <= 0 => Vec::new(),
            Some(ms) => monoio::select! {
                evs = inbox.recv() => evs,
                _ = monoio::time::sleep(Duration::from_millis(ms as u64)) => Vec::new(),
                _ = ctx.shutdown.wait() => return,
            },
            None => monoio::select! {
                evs = inbox.recv() => evs,
                _ = ctx.shutdown.wait() => return,
            },
        };
        for ev in events {
            match ev {
                ShardEvent::Tick(t) => {
                    let was_loaded = ctx.ws.borrow().fanout.is_loaded();
                    ws_conn::with_fanout(&ctx, |fan, sink| fan.on_tick(t, sink));
                    if !was_loaded && ctx.ws.borrow().fanout.is_loaded() {
                        ws_conn::resume_deferred(&ctx);
                    }
                    ctx.source_changed();
                }
                ShardEvent::Source(health) => {
                    *ctx.redis.borrow_mut() = health;
                    ctx.source_changed();
                }
                ShardEvent::Alarms(batch) => ws_conn::on_alarms(&ctx, &batch),
                ShardEvent::Catalog(catalog) => ctx
                    .ws
                    .borrow_mut()
                    .fanout
                    .set_configured(Arc::new(catalog.ids())),
                ShardEvent::ControlAck {
                    conn,
                    client_id,
                    operator,
                    json,
                    entry,
                } => ws_conn::control_ack(&ctx, conn, &client_id, operator, json, entry),
                ShardEvent::Kick { conn, why } => ws_conn::kick_local(&ctx, conn, why),
                ShardEvent::LoginsRevoked => ws_conn::end_revoked_logins(&ctx),
                ShardEvent::Reply { to, reply } => ctx.deliver(to, reply),
            }
        }
        let now = crate::time::now_millis();
        if ctx.ws.borrow().fanout.next_due().is_some_and(|t| t <= now) {
            ws_conn::with_fanout(&ctx, |fan, sink| fan.on_timer(now, sink));
        }
    }
}

/// Liveness: pings, idle timeouts and stuck closes, once a second.
async fn sweeper(ctx: Rc<ShardCtx>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_secs(1)) => {
                ws_conn::sweep(&ctx);
                // The feed lagging (or catching up) changes the status without an event.
                ctx.source_changed();
            }
            _ = ctx.shutdown.wait() => return,
        }
    }
}
