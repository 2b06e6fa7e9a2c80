//! WebSocket connections on a shard: the IO shell around the sans-IO [`Protocol`]. One task
//! per connection reads bytes into the protocol and writes what it answers, plus the
//! connection's entry in the shard's `Fanout`. Pushed frames are `Arc`s shared with every
//! other client of the same group; the queue holds refcounts, and the writer coalesces
//! everything queued into one write.

use super::inbox::{AlarmBatch, ShardEvent};
use super::notify::Notify;
use super::ShardCtx;
use crate::alarm::ActiveAlarms;
use crate::fanout::{ConnId, Fanout, Sink};
use crate::site::SourceStatus;
use crate::wire::close::Disconnect;
use crate::wire::{self, Frame};
use crate::ws::handshake::Upgrade;
use crate::ws::protocol::{Action, Flow, Mode, Protocol};
use crate::ws::registry::Owner;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The WebSocket side of one shard.
pub struct WsShard {
    pub fanout: Fanout,
    pub conns: HashMap<ConnId, Rc<WsConn>>,
    /// The active alarms after the last alarm batch this shard handled.
    pub alarms: Arc<ActiveAlarms>,
    /// Final acks for connections not yet heard from since their upgrade (see `deliver_ack`).
    pub held_acks: HashMap<ConnId, Vec<HeldAck>>,
}

/// A final control ack waiting until its connection has been heard from.
pub struct HeldAck {
    json: Vec<u8>,
    operator: Option<String>,
    entry: Option<crate::alarm::EventId>,
}

enum Chunk {
    Shared(Frame),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(f) => f,
            Chunk::Owned(v) => v,
        }
    }
}

/// One queued chunk as an io buffer: the common case (one push waiting) goes out with a plain
/// send, which skips the per-op iovec copy (an allocation) that the driver makes for `writev`.
struct ChunkBuf(Chunk);

// SAFETY: the bytes live in the `Arc`/`Vec` the wrapper owns; their heap storage does not move
// when the wrapper is moved, and nothing mutates them while the runtime owns the buffer.
unsafe impl monoio::buf::IoBuf for ChunkBuf {
    fn read_ptr(&self) -> *const u8 {
        self.0.bytes().as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.0.bytes().len()
    }
}

/// A batch of queued chunks written with one `writev`: shared frames go to the kernel straight
/// from their `Arc`, never copied per connection.
#[derive(Default)]
struct Batch {
    chunks: Vec<Chunk>,
    iovecs: Vec<libc::iovec>,
}

/// Most chunks in one `writev` (the kernel's IOV_MAX is 1024).
const MAX_IOVECS: usize = 512;

impl Batch {
    fn push(&mut self, chunk: Chunk) {
        let b = chunk.bytes();
        self.iovecs.push(libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        });
        self.chunks.push(chunk);
    }

    fn clear(&mut self) {
        self.iovecs.clear();
        self.chunks.clear();
    }

    fn len_bytes(&self) -> usize {
        self.iovecs.iter().map(|v| v.iov_len).sum()
    }
}

// SAFETY: every iovec points into a chunk owned by the batch (an `Arc<[u8]>` or a `Vec<u8>`
// whose heap storage does not move when the batch is moved), and `iovecs` is only changed
// through `push`/`clear`, never while the runtime owns the batch.
unsafe impl monoio::buf::IoVecBuf for Batch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

pub struct WsConn {
    pub id: ConnId,
    pub client_id: String,
    protocol: RefCell<Protocol>,
    out: RefCell<VecDeque<Chunk>>,
    /// Bytes queued or being written.
    queued: Cell<usize>,
    over_budget: Cell<bool>,
    writable: Notify,
    killed: Notify,
    /// A close frame is queued: no more data frames; the writer ends once the queue is empty.
    closing: Cell<Option<Instant>>,
    /// Closed because the peer stopped answering: the sweep waits only briefly for its reply.
    unresponsive: Cell<bool>,
    last_read: Cell<Instant>,
    last_ping: Cell<Instant>,
    /// The client has sent something since the upgrade: it read our 101 and is there. A
    /// client that gave up during the handshake (its timeout) never is, and final acks are
    /// not written into its dead socket: they wait for this, or go back when it ends.
    heard: Cell<bool>,
}

impl WsConn {
    fn push(&self, chunk: Chunk) {
        self.queued.set(self.queued.get() + chunk.bytes().len());
        self.out.borrow_mut().push_back(chunk);
        self.writable.notify();
    }

    /// Queues what the protocol produced, in order. Once a close frame is queued only
    /// protocol bytes (the close handshake) may follow.
    fn send(&self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Raw(bytes) => self.push(Chunk::Owned(bytes)),
                _ if self.closing.get().is_some() => {}
                Action::Reply(json) => self.push(Chunk::Owned(wire::frame::text(&json))),
                Action::Frame(f) => self.push(Chunk::Shared(f)),
                // Taken out by `on_bytes` (running needs the shard); none reach here.
                Action::Ask(_) => {}
            }
        }
    }

    /// Starts the close handshake for `why`; the connection ends when it completes (or
    /// after a grace period, see the sweep).
    pub fn close(&self, why: Disconnect) {
        if self.closing.get().is_some() {
            return;
        }
        let mut out = Vec::new();
        self.protocol.borrow_mut().close(why, &mut out);
        self.send(out);
        self.closing.set(Some(Instant::now()));
        self.unresponsive.set(why.peer_unresponsive());
        self.writable.notify();
    }

    pub fn kill(&self) {
        self.killed.notify();
    }
}

/// The fan-out's view of this shard's connections.
pub struct ConnSink<'a> {
    pub conns: &'a HashMap<ConnId, Rc<WsConn>>,
    pub budget: usize,
    /// This shard's counters (pushes skipped for clients over budget).
    pub counters: &'a crate::metrics::ShardCounters,
}

impl Sink for ConnSink<'_> {
    fn offer(&mut self, conn: ConnId, frame: &Frame) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return true;
        };
        if c.closing.get().is_some() {
            return true;
        }
        if c.queued.get() >= self.budget {
            c.over_budget.set(true);
            crate::metrics::bump(&self.counters.skipped, 1);
            return false;
        }
        c.push(Chunk::Shared(frame.clone()));
        true
    }

    fn kick(&mut self, conn: ConnId, why: Disconnect) {
        if let Some(c) = self.conns.get(&conn) {
            c.close(why);
        }
    }
}

/// Applies `f` to the fan-out with a sink over this shard's connections.
pub fn with_fanout<R>(ctx: &ShardCtx, f: impl FnOnce(&mut Fanout, &mut ConnSink<'_>) -> R) -> R {
    let mut ws = ctx.ws.borrow_mut();
    let WsShard { fanout, conns, .. } = &mut *ws;
    let mut sink = ConnSink {
        conns,
        budget: ctx.shared.config.ws.outbound_budget_bytes,
        counters: &ctx.shared.shard_counters[ctx.index],
    };
    f(fanout, &mut sink)
}

/// Closes `conn` on this shard, if it is here.
pub fn kick_local(ctx: &ShardCtx, conn: ConnId, why: Disconnect) {
    let c = ctx.ws.borrow().conns.get(&conn).cloned();
    if let Some(c) = c {
        c.close(why);
    }
}

/// The connection's client id: the requested one (replacing the same user's connection that
/// held it), or a generated one; `Err` when another user's connection holds it.
fn claim_client_id(
    ctx: &ShardCtx,
    requested: Option<String>,
    conn: ConnId,
    user: Option<&str>,
) -> Result<String, crate::ws::registry::HeldByAnother> {
    let owner = Owner {
        shard: ctx.index,
        conn,
    };
    let registry = &ctx.shared.registry;
    let Some(id) = requested else {
        return Ok(registry.generate(owner, user));
    };
    if let Some(old) = registry.claim(&id, owner, user)? {
        if old.shard == ctx.index {
            kick_local(ctx, old.conn, Disconnect::Replaced);
        } else if let Some(inbox) = ctx.shared.inboxes.get(old.shard) {
            inbox.push(ShardEvent::Kick {
                conn: old.conn,
                why: Disconnect::Replaced,
            });
        }
    }
    Ok(id)
}

/// An accepted upgrade: what it asked for, who it acts as, and whether it is the
/// conformance endpoint (messages are echoed back).
pub struct Opened {
    pub up: Upgrade,
    pub principal: crate::auth::Principal,
    pub echo: bool,
    /// The client's address.
    pub source: std::net::IpAddr,
}

/// Runs an upgraded connection `id` until it closes. `leftover` are bytes the client sent
/// after the handshake; `counted` keeps the connection counted (total and per IP) while it
/// lives.
pub async fn serve<G>(
    stream: TcpStream,
    id: ConnId,
    leftover: Vec<u8>,
    opened: Opened,
    ctx: Rc<ShardCtx>,
    counted: G,
) {
    let _counted = counted;
    let Opened {
        up,
        principal,
        echo,
        source,
    } = opened;
    let shared = ctx.shared.clone();
    let cfg = &shared.config.ws;
    let claimed = if echo {
        Ok(format!("echo_{id}"))
    } else {
        claim_client_id(&ctx, up.client_id.clone(), id, principal.user.as_deref())
    };
    let (client_id, taken) = match claimed {
        Ok(c) => (c, false),
        // Lost a race for the id against another user's connection (the upgrade checked it):
        // nothing was registered; the connection is closed at once.
        Err(_) => (format!("refused_{id}"), true),
    };
    let mode = if echo { Mode::Echo } else { Mode::Gateway };
    let limits = crate::ws::cmd::Limits {
        max_channels: cfg.max_channels,
        max_depth: cfg.max_json_depth,
        messages_per_sec: cfg.max_messages_per_sec,
        message_burst: cfg.message_burst,
        max_in_flight: shared.config.control.max_in_flight,
    };
    let peer = crate::ws::cmd::Peer {
        client_id: client_id.clone(),
        source,
    };
    let protocol = Protocol::new(
        id,
        mode,
        cfg.max_message_bytes,
        limits,
        principal,
        shared.auth.clone(),
        peer,
    );
    let now = Instant::now();
    let conn = Rc::new(WsConn {
        id,
        client_id: client_id.clone(),
        protocol: RefCell::new(protocol),
        out: RefCell::new(VecDeque::new()),
        queued: Cell::new(0),
        over_budget: Cell::new(false),
        writable: Notify::default(),
        killed: Notify::default(),
        closing: Cell::new(None),
        unresponsive: Cell::new(false),
        last_read: Cell::new(now),
        last_ping: Cell::new(now),
        heard: Cell::new(false),
    });
    {
        let mut ws = ctx.ws.borrow_mut();
        ws.conns.insert(id, conn.clone());
        if !echo {
            ws.fanout.add_member(id, up.audience.wants_data());
        }
    }
    shared.websockets[ctx.index].fetch_add(1, Ordering::Relaxed);
    if taken {
        conn.close(Disconnect::ClientIdTaken);
    } else {
        let now = crate::time::now_millis();
        let first = {
            let p = conn.protocol.borrow();
            let connected = p.connected(&client_id, up.audience, now);
            let status = p.status(&ctx.source.borrow(), now);
            connected.into_iter().chain(status).collect()
        };
        conn.send(first);
        if !echo {
            let mut out = Vec::new();
            let ask = conn.protocol.borrow_mut().start_alarms(
                up.audience.wants_alarms(),
                up.alarms_since,
                &ctx.ws.borrow().alarms,
                &mut out,
            );
            conn.send(out);
            if let Some(ask) = ask {
                monoio::spawn(replay_alarms(ctx.clone(), conn.clone(), ask));
            }
            // Final acks of this client's commands that came while it was away (of commands
            // this connection's user sent: another user's stay parked for them).
            let name = conn.protocol.borrow().principal().name().to_string();
            for json in shared.parked.take(&client_id, &name, Instant::now()) {
                deliver_ack(&ctx, &conn, json, None, None);
            }
            // An id asked for is the site's: claimed in Redis too (another gateway's holder
            // is replaced), bringing the acks that waited for it there.
            if up.client_id.is_some() {
                monoio::spawn(claim_site_wide(ctx.clone(), conn.clone(), name));
            }
        }
    }

    run(stream, leftover, &conn, &ctx).await;
    conn.kill();

    {
        let mut ws = ctx.ws.borrow_mut();
        ws.conns.remove(&id);
        ws.fanout.remove_member(id);
    }
    let held = ctx
        .ws
        .borrow_mut()
        .held_acks
        .remove(&id)
        .unwrap_or_default();
    if !echo && !taken {
        shared.registry.release(&client_id, id);
        if up.client_id.is_some() && shared.registry.holder(&client_id).is_none() {
            let job = crate::ws::jobs::Release {
                client_id: client_id.clone(),
                token: shared.conn_token(id),
            };
            let ctx = ctx.clone();
            monoio::spawn(async move {
                // Unreleased, the claim expires (another user may take the id then).
                let _ = ctx.run(id, job, CLAIM_DEADLINE).await;
            });
        }
    }
    // Acks it never got (it was not heard from): back to Redis, or routed again.
    let mut back = Vec::new();
    for a in held {
        match a.entry {
            Some(e) => back.push((e, a.operator)),
            None => shared.route_control_ack(&client_id, a.operator.as_deref(), a.json, None),
        }
    }
    give_back(&ctx, id, &client_id, back);
    shared.websockets[ctx.index].fetch_sub(1, Ordering::Relaxed);
}

/// Sends a final ack on `conn` once the client has been heard from since the upgrade; until
/// then it is held (and a ping asks for a sign of life: its pong will do). A connection that
/// ended or is closing (a claim answered late) gives it back.
fn deliver_ack(
    ctx: &Rc<ShardCtx>,
    conn: &WsConn,
    json: Vec<u8>,
    operator: Option<String>,
    entry: Option<crate::alarm::EventId>,
) {
    let gone = conn.closing.get().is_some() || !ctx.ws.borrow().conns.contains_key(&conn.id);
    if gone {
        return match entry {
            Some(e) => give_back(ctx, conn.id, &conn.client_id, vec![(e, operator)]),
            None => ctx
                .shared
                .route_control_ack(&conn.client_id, operator.as_deref(), json, None),
        };
    }
    if conn.heard.get() {
        return conn.send(vec![Action::Reply(json)]);
    }
    let first = {
        let mut ws = ctx.ws.borrow_mut();
        let held = ws.held_acks.entry(conn.id).or_default();
        held.push(HeldAck {
            json,
            operator,
            entry,
        });
        held.len() == 1
    };
    if first {
        let mut out = Vec::new();
        conn.protocol.borrow_mut().ping(&mut out);
        conn.send(out);
    }
}

/// How long a client-id claim (or release) may wait for the feed.
const CLAIM_DEADLINE: Duration = Duration::from_secs(5);

/// Claims the connection's client id in Redis; the acks that waited for it are sent. Another
/// user's connection on another gateway holding it closes this one (4003); Redis not
/// answering leaves the id claimed here only (the renewal claims it later).
async fn claim_site_wide(ctx: Rc<ShardCtx>, conn: Rc<WsConn>, user: String) {
    let shared = &ctx.shared;
    let job = crate::ws::jobs::Claim {
        client_id: conn.client_id.clone(),
        instance: shared.config.control.instance_id.clone(),
        token: shared.conn_token(conn.id),
        user,
    };
    match ctx.run(conn.id, job, CLAIM_DEADLINE).await {
        Ok(crate::ws::jobs::Claimed::Taken(acks)) => {
            let now = crate::time::now_millis();
            for r in acks {
                let json = wire::ws::control_ack_final(&r, now);
                deliver_ack(&ctx, &conn, json, r.operator, r.entry);
            }
        }
        Ok(crate::ws::jobs::Claimed::Held(_)) => conn.close(Disconnect::ClientIdTaken),
        Err(_) => {}
    }
}

/// Renews this gateway's client-id claims every `RENEW_EVERY_MS` (run by shard 0); a claim
/// found taken (a takeover message missed) closes its connection.
pub async fn renew_claims(ctx: Rc<ShardCtx>) {
    let every = Duration::from_millis(crate::ws::jobs::RENEW_EVERY_MS);
    loop {
        monoio::time::sleep(every).await;
        let shared = &ctx.shared;
        let claimed = shared.registry.claimed();
        if claimed.is_empty() {
            continue;
        }
        let instance = &shared.config.control.instance_id;
        let claims = claimed
            .iter()
            .map(|(id, o, user)| {
                (
                    id.clone(),
                    format!("{instance} {} {user}", shared.conn_token(o.conn)),
                )
            })
            .collect();
        // Answered to no connection of its own: conn 0 is never a connection's id.
        let Ok(lost) = ctx
            .run(0, crate::ws::jobs::Renew { claims }, CLAIM_DEADLINE)
            .await
        else {
            continue;
        };
        for id in lost {
            if let Some((_, o, _)) = claimed.iter().find(|(c, _, _)| *c == id) {
                shared.replaced_elsewhere(&id, &shared.conn_token(o.conn));
            }
        }
    }
}

/// How long a reconnecting client's alarm replay may wait for the feed.
const REPLAY_DEADLINE: Duration = Duration::from_secs(5);

/// Asks the feed for the alarm events a reconnecting client missed and sends them (then the
/// live ones held meanwhile).
async fn replay_alarms(ctx: Rc<ShardCtx>, conn: Rc<WsConn>, ask: crate::ws::alarms::ReplayRequest) {
    let range = ctx.run(conn.id, ask.job(), REPLAY_DEADLINE).await.ok();
    let mut out = Vec::new();
    let active = ctx.ws.borrow().alarms.clone();
    conn.protocol
        .borrow_mut()
        .on_alarm_replay(range, &active, crate::time::now_millis(), &mut out);
    conn.send(out);
}

/// New alarm events from the feed: every connection's protocol decides (sent, held for a
/// replay, or not wanted).
pub fn on_alarms(ctx: &ShardCtx, batch: &AlarmBatch) {
    let conns: Vec<Rc<WsConn>> = {
        let mut ws = ctx.ws.borrow_mut();
        ws.alarms = batch.active.clone();
        if batch.alarms.is_empty() {
            return;
        }
        ws.conns.values().cloned().collect()
    };
    for c in conns {
        let mut out = Vec::new();
        c.protocol.borrow_mut().on_alarms(&batch.alarms, &mut out);
        if !out.is_empty() {
            c.send(out);
        }
    }
}

/// A read that owns its half of the socket and its buffer, so the same pinned slot can be
/// refilled after each completion without a borrow outliving it.
async fn read_owned<R: AsyncReadRent>(
    mut rd: R,
    buf: Vec<u8>,
) -> (R, std::io::Result<usize>, Vec<u8>) {
    let (res, buf) = rd.read(buf).await;
    (rd, res, buf)
}

/// The connection's one task: a read stays in flight while queued frames are written, so a
/// viewer costs one task, one small read buffer and its queue. Input is only processed when
/// the queue is flushed, so a client that sends requests without reading the replies is
/// throttled by TCP backpressure rather than growing its queue. It ends when the peer is done
/// and the queue is flushed, or when killed (which the sweep does to stuck closes).
async fn run(stream: TcpStream, leftover: Vec<u8>, conn: &Rc<WsConn>, ctx: &Rc<ShardCtx>) {
    let budget = ctx.shared.config.ws.outbound_budget_bytes;
    let (rd, mut wr) = stream.into_split();
    let mut reading = leftover.is_empty() || on_bytes(conn, ctx, &leftover);
    // Client messages are small; a larger one just takes several reads. Every idle
    // connection holds this buffer (io_uring owns it while the read is pending).
    let read = std::pin::pin!(read_owned(rd, Vec::with_capacity(256)));
    let mut read = read;
    let mut batch = Batch::default();
    // Our close frame is out and the write side shut (FIN): the peer reads everything we sent,
    // then our EOF; we read and drop its input until its close frame, its EOF or the sweep's
    // deadline. Closing with unread input instead would make the kernel send RST, and the
    // peer's kernel would discard what it had not read yet — the close frame that says why.
    let mut half_closed = false;
    loop {
        if half_closed {
            // Nothing may follow the FIN (a pong the session still produced, say).
            let dropped: usize = conn
                .out
                .borrow_mut()
                .drain(..)
                .map(|c| c.bytes().len())
                .sum();
            conn.queued.set(conn.queued.get().saturating_sub(dropped));
        }
        let single = {
            let mut out = conn.out.borrow_mut();
            if out.len() == 1 {
                out.pop_front()
            } else {
                None
            }
        };
        if let Some(chunk) = single {
            let len = chunk.bytes().len();
            monoio::select! {
                r = wr.write_all(ChunkBuf(chunk)) => {
                    if r.0.is_err() {
                        break;
                    }
                }
                _ = conn.killed.wait_level() => break,
            }
            after_write(conn, ctx, len, 1, budget);
            continue;
        }
        if !conn.out.borrow().is_empty() {
            // Everything queued goes out in one writev (one syscall for many frames, no copies).
            {
                let mut out = conn.out.borrow_mut();
                let n = out.len().min(MAX_IOVECS);
                for chunk in out.drain(..n) {
                    batch.push(chunk);
                }
            }
            let len = batch.len_bytes();
            let frames = batch.chunks.len();
            monoio::select! {
                r = wr.write_vectored_all(batch) => {
                    let (res, b) = r;
                    batch = b;
                    batch.clear();
                    if res.is_err() {
                        break;
                    }
                }
                _ = conn.killed.wait_level() => break,
            }
            after_write(conn, ctx, len, frames, budget);
            continue;
        }
        if !reading {
            break;
        }
        if !half_closed && conn.protocol.borrow().is_closing() {
            half_closed = true;
            if wr.shutdown().await.is_err() {
                break;
            }
        }
        monoio::select! {
            r = &mut read => {
                let (rd, res, buf) = r;
                match res {
                    Ok(n) if n > 0 => {
                        conn.last_read.set(Instant::now());
                        reading = on_bytes(conn, ctx, &buf[..n]);
                        if reading {
                            read.set(read_owned(rd, buf));
                        }
                    }
                    _ => reading = false,
                }
                if !reading && conn.closing.get().is_none() {
                    // Nothing more will be read: flush what is queued, bounded by the sweep.
                    conn.closing.set(Some(Instant::now()));
                }
            }
            _ = conn.writable.wait() => {}
            _ = conn.killed.wait_level() => break,
        }
    }
    let _ = wr.shutdown().await;
}

/// `len` queued bytes left: a connection that was over its budget rejoins the fan-out.
fn after_write(conn: &WsConn, ctx: &ShardCtx, len: usize, frames: usize, budget: usize) {
    conn.queued.set(conn.queued.get() - len);
    if let Some(c) = ctx.shared.shard_counters.get(ctx.index) {
        crate::metrics::bump(&c.frames, frames as u64);
        crate::metrics::bump(&c.bytes, len as u64);
    }
    if conn.over_budget.get() && conn.queued.get() < budget / 2 {
        conn.over_budget.set(false);
        let now = crate::time::now_millis();
        with_fanout(ctx, |fan, sink| fan.drained(conn.id, now, sink));
    }
}

/// Hands bytes to the protocol and queues what it answers; false when the connection is over.
/// A panic while handling them closes this connection with 1011 instead of unwinding through
/// the shard (which would take every other connection on it down).
fn on_bytes(conn: &Rc<WsConn>, ctx: &Rc<ShardCtx>, bytes: &[u8]) -> bool {
    if !conn.heard.replace(true) {
        let held = ctx.ws.borrow_mut().held_acks.remove(&conn.id);
        for a in held.unwrap_or_default() {
            conn.send(vec![Action::Reply(a.json)]);
        }
    }
    let mut out = Vec::new();
    let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut ws = ctx.ws.borrow_mut();
        let now = crate::time::now_millis();
        conn.protocol
            .borrow_mut()
            .receive(bytes, now, &mut ws.fanout, &mut out)
    }));
    match handled {
        Ok(flow) => {
            let out = run_asks(conn, ctx, out);
            conn.send(out);
            if conn.protocol.borrow().is_closing() && conn.closing.get().is_none() {
                // The protocol closed it (rate limit, bad input): the sweep bounds how long its
                // input is drained while the peer reads what it was sent and replies.
                conn.closing.set(Some(Instant::now()));
            }
            flow == Flow::Open
        }
        Err(_) => {
            crate::log::error(&format!(
                "WebSocket connection {}: input handling panicked; closing it",
                conn.id
            ));
            conn.close(Disconnect::InternalError);
            false
        }
    }
}

/// Runs the jobs the protocol asked for, each in its own task: the protocol turns each
/// answer (or the timeout) into its replies; the other actions are returned in order.
fn run_asks(conn: &Rc<WsConn>, ctx: &Rc<ShardCtx>, out: Vec<Action>) -> Vec<Action> {
    if !out.iter().any(|a| matches!(a, Action::Ask(_))) {
        return out;
    }
    let mut rest = Vec::with_capacity(out.len());
    for a in out {
        match a {
            Action::Ask(ask) => {
                monoio::spawn(run_ask(ctx.clone(), conn.clone(), ask));
            }
            a => rest.push(a),
        }
    }
    rest
}

async fn run_ask(ctx: Rc<ShardCtx>, conn: Rc<WsConn>, ask: crate::ws::action::Ask) {
    let deadline = ask.deadline;
    let (job, then) = ask.split();
    let shared = &ctx.shared;
    let answer = ctx
        .ask(conn.id, deadline, |to| shared.feed.run(job, to))
        .await;
    let mut out = Vec::new();
    conn.protocol
        .borrow_mut()
        .answered(then, answer, crate::time::now_millis(), &mut out);
    conn.send(out);
}

/// A command's final ack for `conn`. Only to a connection still acting for the command's
/// sender; if it left (or is closing), or no longer acts for them (its login ended), an ack
/// taken from Redis goes back there (for the sender's next claim, on any gateway), one made
/// here is routed again by client id or parked.
pub fn control_ack(
    ctx: &Rc<ShardCtx>,
    conn: ConnId,
    client_id: &str,
    operator: Option<String>,
    json: Vec<u8>,
    entry: Option<crate::alarm::EventId>,
) {
    let c = ctx.ws.borrow().conns.get(&conn).cloned();
    let live = c.filter(|c| c.closing.get().is_none());
    if let Some(c) = &live {
        let name = c.protocol.borrow().principal().name().to_string();
        if super::shared::ack_for(operator.as_deref(), &name) {
            return deliver_ack(ctx, c, json, operator, entry);
        }
    }
    match (entry, live) {
        (Some(e), _) => give_back(ctx, conn, client_id, vec![(e, operator)]),
        (None, Some(_)) => {
            ctx.shared
                .parked
                .park(client_id, operator.as_deref(), json, Instant::now());
        }
        (None, None) => ctx
            .shared
            .route_control_ack(client_id, operator.as_deref(), json, None),
    }
}

/// Gives acks taken from Redis for the connection `conn` (that could not deliver them) back
/// to `ctl:acks:{client_id}`; the newer holder of the id, here or on another gateway, is told.
fn give_back(
    ctx: &Rc<ShardCtx>,
    conn: ConnId,
    client_id: &str,
    acks: Vec<(crate::alarm::EventId, Option<String>)>,
) {
    if acks.is_empty() {
        return;
    }
    let job = crate::ws::jobs::ReturnAcks {
        client_id: client_id.to_string(),
        token: ctx.shared.conn_token(conn),
        acks,
    };
    let ctx = ctx.clone();
    monoio::spawn(async move {
        if let Err(e) = ctx.run(0, job, CLAIM_DEADLINE).await {
            crate::log::warn_limited(
                "acks-give-back",
                &format!("final control acks could not be given back to Redis ({e}): lost"),
            );
        }
    });
}

/// Tells every WebSocket client of this shard the data source's new status.
pub fn broadcast_status(ctx: &ShardCtx, status: &SourceStatus) {
    let now = crate::time::now_millis();
    let conns: Vec<Rc<WsConn>> = ctx.ws.borrow().conns.values().cloned().collect();
    for c in conns {
        let msg = c.protocol.borrow().status(status, now);
        c.send(msg.into_iter().collect());
    }
}

/// The site's data was loaded: answers the subscription changes that waited for it.
pub fn resume_deferred(ctx: &ShardCtx) {
    let now = crate::time::now_millis();
    let conns: Vec<Rc<WsConn>> = ctx.ws.borrow().conns.values().cloned().collect();
    for c in conns {
        if !c.protocol.borrow().has_deferred() {
            continue;
        }
        let mut out = Vec::new();
        {
            let mut ws = ctx.ws.borrow_mut();
            c.protocol
                .borrow_mut()
                .resume(now, &mut ws.fanout, &mut out);
        }
        c.send(out);
    }
}

/// Ends the login of every connection of this shard whose login was revoked (at once on a
/// `LoginsRevoked`, and by the sweep whenever the revocation count moved).
pub fn end_revoked_logins(ctx: &ShardCtx) {
    let revocations = ctx.shared.auth.revocations();
    if ctx.revocations_seen.replace(revocations) == revocations {
        return;
    }
    let now = Instant::now();
    let conns: Vec<Rc<WsConn>> = ctx.ws.borrow().conns.values().cloned().collect();
    for c in conns {
        if c.closing.get().is_some() || c.protocol.borrow().principal().family.is_none() {
            continue;
        }
        check_login(&c, true, now);
    }
}

/// Ends `c`'s login if its token expired (or, with `revocations`, its login was revoked);
/// true when that closed the connection.
fn check_login(c: &WsConn, revocations: bool, now: Instant) -> bool {
    let mut out = Vec::new();
    c.protocol
        .borrow_mut()
        .check_expiry(crate::time::now_millis(), revocations, &mut out);
    if out.is_empty() {
        return false;
    }
    c.send(out);
    let closing = c.protocol.borrow().is_closing();
    if closing {
        c.closing.set(Some(now));
    }
    closing
}

/// Periodic liveness work for one shard: pings, idle timeouts, stuck close handshakes.
pub fn sweep(ctx: &ShardCtx) {
    end_revoked_logins(ctx);
    let cfg = &ctx.shared.config.ws;
    let ping_every = Duration::from_secs(cfg.ping_interval_secs);
    let idle = Duration::from_secs(cfg.idle_timeout_secs);
    let now = Instant::now();
    let conns: Vec<Rc<WsConn>> = ctx.ws.borrow().conns.values().cloned().collect();
    for c in conns {
        if let Some(since) = c.closing.get() {
            // A congested or silent peer will not answer its close frame either: don't wait
            // long for it (a peer that vanished without a FIN never will).
            let grace = if c.over_budget.get() || c.unresponsive.get() {
                1
            } else {
                5
            };
            if now.duration_since(since) > Duration::from_secs(grace) {
                c.kill();
            }
            continue;
        }
        if check_login(&c, false, now) {
            continue;
        }
        if now.duration_since(c.last_read.get()) > idle {
            c.close(Disconnect::IdleTimeout);
        } else if now.duration_since(c.last_ping.get()) >= ping_every {
            let mut out = Vec::new();
            c.protocol.borrow_mut().ping(&mut out);
            c.send(out);
            c.last_ping.set(now);
        }
    }
}
