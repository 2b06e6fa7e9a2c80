//! The lean WebSocket reader: one task per connection on a per-thread monoio runtime, a
//! per-connection receive buffer reused for every read, frame headers parsed by hand in place,
//! and per-(client, channel) round tracking for duplicates, conflation and loss.

use crate::net;
use crate::stats::Histogram;
use crate::ws::{self, Kind, Rng, Scanner};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which channels client `i` subscribes to.
#[derive(Clone, Debug)]
pub enum ChannelPlan {
    /// Every client the same channels.
    Same(Vec<u32>),
    /// Each client `count` pseudo-random channels out of `base .. base + m`.
    Mixed { base: u32, m: u32, count: u32 },
}

impl ChannelPlan {
    pub fn channels_for(&self, i: usize) -> Vec<u32> {
        match self {
            ChannelPlan::Same(v) => v.clone(),
            ChannelPlan::Mixed { base, m, count } => {
                let mut rng = Rng::new(0xC0FFEE ^ (i as u64).wrapping_mul(0x1000_0001));
                let (m, count) = (*m, (*count).min(*m));
                let mut out: Vec<u32> = if count * 2 > m {
                    let mut all: Vec<u32> = (0..m).collect();
                    for k in 0..count as usize {
                        let j = k + (rng.next_u64() % (m as u64 - k as u64)) as usize;
                        all.swap(k, j);
                    }
                    all.truncate(count as usize);
                    all
                } else {
                    let mut set = std::collections::BTreeSet::new();
                    while set.len() < count as usize {
                        set.insert((rng.next_u64() % m as u64) as u32);
                    }
                    set.into_iter().collect()
                };
                out.iter_mut().for_each(|c| *c += base);
                out.sort_unstable();
                out
            }
        }
    }
}

/// Everything a client thread needs to know.
pub struct ClientCfg {
    /// Client `i` connects to `addrs[i % len]` (several gateways of one site).
    pub addrs: Vec<SocketAddr>,
    pub host: String,
    pub path: String,
    /// Raw TCP (the ceiling server): no upgrade, no subscribe; frames from the first byte.
    pub raw: bool,
    pub interval: u32,
    pub plan: ChannelPlan,
    pub sources: usize,
    pub source_first: u8,
    /// Sample latency from one data frame in `sample` (per thread).
    pub sample: u32,
    /// Connect + upgrade + subscribe + snapshot must finish within this.
    pub setup_timeout: Duration,
    /// Clients in setup at once, per thread.
    pub connect_concurrency: usize,
    pub recv_buf: usize,
}

macro_rules! counters {
    ($($f:ident),* $(,)?) => {
        /// Shared progress counters of one client thread (read by the main thread every second).
        #[derive(Default)]
        pub struct Counters { $(pub $f: AtomicU64,)* }

        /// A plain copy of `Counters`.
        #[derive(Default, Clone, Copy, Debug)]
        pub struct Snap { $(pub $f: u64,)* }

        impl Counters {
            pub fn snap(&self) -> Snap {
                Snap { $($f: self.$f.load(Relaxed),)* }
            }
        }

        impl Snap {
            pub fn add(&mut self, o: &Snap) {
                $(self.$f += o.$f;)*
            }

            pub fn minus(&self, o: &Snap) -> Snap {
                Snap { $($f: self.$f.saturating_sub(o.$f),)* }
            }
        }
    };
}

counters!(
    started,
    tcp_connected,
    upgraded,
    subscribed,
    fail_connect,
    fail_upgrade,
    fail_setup,
    fail_timeout,
    sub_errors,
    data_frames,
    bytes,
    updates,
    dups,
    skipped,
    no_round,
    unknown_channel,
    pings,
    other_msgs,
    unexpected_closes,
    closed_ok,
);

impl Snap {
    /// Clients whose setup ended (subscribed or failed).
    pub fn setup_done(&self) -> u64 {
        self.subscribed
            + self.fail_connect
            + self.fail_upgrade
            + self.fail_setup
            + self.fail_timeout
    }

    pub fn setup_failed(&self) -> u64 {
        self.fail_connect + self.fail_upgrade + self.fail_setup + self.fail_timeout
    }
}

/// The sum over threads.
pub fn sum(ctrs: &[Arc<Counters>]) -> Snap {
    let mut s = Snap::default();
    for c in ctrs {
        s.add(&c.snap());
    }
    s
}

fn add(c: &AtomicU64, v: u64) {
    if v != 0 {
        c.fetch_add(v, Relaxed);
    }
}

/// Main thread → client threads.
#[derive(Default)]
pub struct Control {
    /// Stop launching (storm) / close everything and return (fan-out).
    pub stop: AtomicBool,
    /// The last round the writer (or ceiling server) produced; set before `stop`.
    pub final_round: AtomicU64,
}

/// One client's state that outlives its task.
pub struct Slot {
    pub fd: Cell<i32>,
    pub live: Cell<bool>,
    pub subscribed: Cell<bool>,
    pub frames: Cell<u64>,
    /// (channel, last round seen), sorted by channel.
    pub rounds: RefCell<Vec<(u32, u64)>>,
}

impl Slot {
    pub fn new(channels: &[u32]) -> Self {
        Slot {
            fd: Cell::new(-1),
            live: Cell::new(true),
            subscribed: Cell::new(false),
            frames: Cell::new(0),
            rounds: RefCell::new(channels.iter().map(|c| (*c, 0)).collect()),
        }
    }
}

/// Per-thread context shared by its client tasks.
pub struct Ctx {
    pub cfg: Arc<ClientCfg>,
    pub ctr: Arc<Counters>,
    pub scanner: Scanner,
    pub lat: RefCell<Histogram>,
    pub snap: RefCell<Histogram>,
    pub sample_ctr: Cell<u32>,
    pub rng: RefCell<Rng>,
    pub stopping: Cell<bool>,
    pub connecting: Cell<usize>,
    pub live: Cell<usize>,
    pub reasons: RefCell<BTreeMap<String, u64>>,
    pub first_error: RefCell<Option<String>>,
}

impl Ctx {
    pub fn new(cfg: Arc<ClientCfg>, ctr: Arc<Counters>, seed: u64) -> Rc<Self> {
        Rc::new(Ctx {
            cfg,
            ctr,
            scanner: Scanner::default(),
            lat: RefCell::default(),
            snap: RefCell::default(),
            sample_ctr: Cell::new(0),
            rng: RefCell::new(Rng::new(seed)),
            stopping: Cell::new(false),
            connecting: Cell::new(0),
            live: Cell::new(0),
            reasons: RefCell::default(),
            first_error: RefCell::default(),
        })
    }

    pub fn reason(&self, r: impl Into<String>) {
        *self.reasons.borrow_mut().entry(r.into()).or_insert(0) += 1;
    }

    fn mask(&self) -> u32 {
        self.rng.borrow_mut().next_u64() as u32
    }
}

pub fn now_unix_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as f64)
        .unwrap_or(0.0)
}

#[derive(Debug)]
pub enum Fail {
    Connect(String),
    Http(u16),
    Protocol(&'static str),
    Closed(Option<u16>),
    Eof,
    Io(String),
}

impl Fail {
    pub fn describe(&self) -> String {
        match self {
            Fail::Connect(e) => format!("connect: {e}"),
            Fail::Http(s) => format!("upgrade answered HTTP {s}"),
            Fail::Protocol(p) => format!("protocol: {p}"),
            Fail::Closed(Some(c)) => format!("close frame {c}"),
            Fail::Closed(None) => "close frame".into(),
            Fail::Eof => "EOF".into(),
            Fail::Io(e) => format!("io: {e}"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    AwaitConnected,
    AwaitAck,
    AwaitSnapshot,
    Live,
}

/// One connection being read.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    pub out: Vec<u8>,
    pub state: State,
    pub channels: Vec<u32>,
}

/// Processes every complete frame in `buf`; returns (bytes consumed, bytes the partial frame
/// at the end needs in total).
fn process(
    ctx: &Ctx,
    slot: &Slot,
    state: &mut State,
    channels: &[u32],
    buf: &[u8],
    out: &mut Vec<u8>,
) -> Result<(usize, usize), Fail> {
    let mut off = 0;
    loop {
        let Some(h) = ws::parse_header(&buf[off..]) else {
            return Ok((off, 14));
        };
        if h.masked {
            return Err(Fail::Protocol("masked server frame"));
        }
        if h.payload_len > ws::MAX_FRAME {
            return Err(Fail::Protocol("frame over 16 MiB"));
        }
        if buf.len() - off < h.total() {
            return Ok((off, h.total()));
        }
        let p = &buf[off + h.header_len..off + h.total()];
        off += h.total();
        match h.opcode {
            ws::OP_PING => {
                ws::write_masked(out, ws::OP_PONG, p, ctx.mask());
                add(&ctx.ctr.pings, 1);
            }
            ws::OP_PONG => {}
            ws::OP_CLOSE => {
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                return Err(Fail::Closed(code));
            }
            ws::OP_TEXT | ws::OP_BIN | ws::OP_CONT => text(ctx, slot, state, channels, p, out),
            _ => return Err(Fail::Protocol("reserved opcode")),
        }
    }
}

fn text(ctx: &Ctx, slot: &Slot, state: &mut State, channels: &[u32], p: &[u8], out: &mut Vec<u8>) {
    let kind = ws::classify(p);
    match (*state, kind) {
        (State::Live, Kind::Data) => data(ctx, slot, p, false),
        (State::AwaitConnected, Kind::Connected) => {
            let msg = ws::subscribe_message(channels, ctx.cfg.interval);
            ws::write_masked(out, ws::OP_TEXT, &msg, ctx.mask());
            *state = State::AwaitAck;
        }
        (State::AwaitAck, Kind::SubscribeAck) => *state = State::AwaitSnapshot,
        (State::AwaitAck | State::AwaitSnapshot, Kind::Data) => {
            data(ctx, slot, p, true);
            *state = State::Live;
        }
        (_, Kind::Error) => {
            add(&ctx.ctr.sub_errors, 1);
            let mut first = ctx.first_error.borrow_mut();
            if first.is_none() {
                *first = Some(String::from_utf8_lossy(&p[..p.len().min(300)]).into_owned());
            }
        }
        _ => add(&ctx.ctr.other_msgs, 1),
    }
}

/// A data frame: rounds per channel, and a latency sample one frame in `sample`.
fn data(ctx: &Ctx, slot: &Slot, p: &[u8], snapshot: bool) {
    let sample = !snapshot && {
        let n = ctx.sample_ctr.get() + 1;
        if n >= ctx.cfg.sample {
            ctx.sample_ctr.set(0);
            true
        } else {
            ctx.sample_ctr.set(n);
            false
        }
    };
    let (mut updates, mut dups, mut skipped, mut no_round, mut unknown) = (0u64, 0, 0, 0, 0);
    let mut rounds = slot.rounds.borrow_mut();
    let t1 = ctx.scanner.scan(p, sample, |u| {
        updates += 1;
        let Some(r) = u.round else {
            no_round += 1;
            return;
        };
        let i = match rounds.binary_search_by_key(&u.channel, |e| e.0) {
            Ok(i) => i,
            Err(_) => {
                unknown += 1;
                return;
            }
        };
        let last = rounds[i].1;
        if snapshot {
            rounds[i].1 = r.max(last);
        } else if r <= last {
            dups += 1;
        } else {
            skipped += r - last - 1;
            rounds[i].1 = r;
        }
    });
    drop(rounds);
    if let Some(t1) = t1 {
        let lat = (now_unix_us() - t1 * 1000.0).max(0.0);
        ctx.lat.borrow_mut().record(lat as u64);
    }
    if !snapshot {
        slot.frames.set(slot.frames.get() + 1);
        let c = &ctx.ctr;
        add(&c.data_frames, 1);
        add(&c.updates, updates);
        add(&c.dups, dups);
        add(&c.skipped, skipped);
        add(&c.no_round, no_round);
        add(&c.unknown_channel, unknown);
    }
}

/// One `recv` appended to `c.buf`'s spare capacity (the caller reserves it), counted.
async fn read_more(ctx: &Ctx, c: &mut Conn) -> Result<(), Fail> {
    let len = c.buf.len();
    let buf = std::mem::take(&mut c.buf);
    let (res, slice) = c.stream.read(buf.slice_mut(len..)).await;
    c.buf = slice.into_inner();
    match res {
        Ok(0) => Err(Fail::Eof),
        Ok(n) => {
            add(&ctx.ctr.bytes, n as u64);
            Ok(())
        }
        Err(e) => Err(Fail::Io(e.kind().to_string())),
    }
}

/// Reads and processes frames; with `until_live`, returns once the snapshot arrived.
pub async fn pump(ctx: &Ctx, slot: &Slot, c: &mut Conn, until_live: bool) -> Result<(), Fail> {
    let mut need = 0usize;
    loop {
        if until_live && c.state == State::Live {
            return Ok(());
        }
        // Room for a large recv, and for the whole of a partial frame.
        let want = need.max(c.buf.len() + ctx.cfg.recv_buf / 4);
        if c.buf.capacity() < want {
            c.buf.reserve(want.max(ctx.cfg.recv_buf) - c.buf.len());
        }
        read_more(ctx, c).await?;
        let (consumed, n) = process(ctx, slot, &mut c.state, &c.channels, &c.buf, &mut c.out)?;
        need = n;
        if consumed == c.buf.len() {
            c.buf.clear();
        } else if consumed > 0 {
            c.buf.copy_within(consumed.., 0);
            c.buf.truncate(c.buf.len() - consumed);
        }
        if !c.out.is_empty() {
            let out = std::mem::take(&mut c.out);
            let (res, mut out) = c.stream.write_all(out).await;
            res.map_err(|e| Fail::Io(e.kind().to_string()))?;
            out.clear();
            c.out = out;
        }
    }
}

/// Connect, upgrade, wait for `connected`, subscribe, wait for the snapshot (or, raw, just
/// connect). `slot.fd` is set as soon as there is a socket.
pub async fn setup(ctx: &Ctx, slot: &Slot, index: usize, channels: Vec<u32>) -> Result<Conn, Fail> {
    let cfg = &ctx.cfg;
    let src = net::source_for(index, cfg.sources, cfg.source_first);
    let addr = cfg.addrs[index % cfg.addrs.len()];
    let stream = net::connect(addr, src, cfg.setup_timeout)
        .await
        .map_err(|e| Fail::Connect(e.kind().to_string()))?;
    slot.fd.set(stream.as_raw_fd());
    add(&ctx.ctr.tcp_connected, 1);
    let mut c = Conn {
        stream,
        buf: Vec::with_capacity(cfg.recv_buf),
        out: Vec::new(),
        state: if cfg.raw {
            State::Live
        } else {
            State::AwaitConnected
        },
        channels,
    };
    if cfg.raw {
        return Ok(c);
    }
    let req = ws::upgrade_request(&cfg.host, &cfg.path, index as u64 ^ 0x5eed);
    let (res, _) = c.stream.write_all(req).await;
    res.map_err(|e| Fail::Io(e.kind().to_string()))?;
    // The response head; bytes after it are frames.
    loop {
        if c.buf.capacity() - c.buf.len() < 1024 {
            c.buf.reserve(4096);
        }
        read_more(ctx, &mut c).await?;
        if let Some((status, head)) = ws::parse_http_head(&c.buf) {
            if status != 101 {
                return Err(Fail::Http(status));
            }
            c.buf.drain(..head);
            break;
        }
        if c.buf.len() > 16384 {
            return Err(Fail::Protocol("upgrade response head too large"));
        }
    }
    add(&ctx.ctr.upgraded, 1);
    // Frames that came with the head.
    let (consumed, _) = process(ctx, slot, &mut c.state, &c.channels, &c.buf, &mut c.out)?;
    c.buf.drain(..consumed);
    if !c.out.is_empty() {
        let out = std::mem::take(&mut c.out);
        let (res, mut out) = c.stream.write_all(out).await;
        res.map_err(|e| Fail::Io(e.kind().to_string()))?;
        out.clear();
        c.out = out;
    }
    pump(ctx, slot, &mut c, true).await?;
    Ok(c)
}

/// Counts a setup failure by kind.
pub fn count_setup_failure(
    ctx: &Ctx,
    r: &Result<Result<Conn, Fail>, monoio::time::error::Elapsed>,
) {
    let c = &ctx.ctr;
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(f @ Fail::Connect(_))) => {
            add(&c.fail_connect, 1);
            ctx.reason(f.describe());
        }
        Ok(Err(f @ Fail::Http(_))) => {
            add(&c.fail_upgrade, 1);
            ctx.reason(f.describe());
        }
        Ok(Err(f)) => {
            add(&c.fail_setup, 1);
            ctx.reason(format!("during setup: {}", f.describe()));
        }
        Err(_) => {
            add(&c.fail_timeout, 1);
            ctx.reason("setup timed out");
        }
    }
}

/// A fan-out client: set up, then read until the thread stops.
async fn hold(ctx: Rc<Ctx>, slot: Rc<Slot>, index: usize, channels: Vec<u32>) {
    let t0 = Instant::now();
    let r = monoio::time::timeout(ctx.cfg.setup_timeout, setup(&ctx, &slot, index, channels)).await;
    ctx.connecting.set(ctx.connecting.get() - 1);
    count_setup_failure(&ctx, &r);
    if let Ok(Ok(mut conn)) = r {
        slot.subscribed.set(true);
        add(&ctx.ctr.subscribed, 1);
        ctx.snap
            .borrow_mut()
            .record(t0.elapsed().as_micros() as u64);
        let end = pump(&ctx, &slot, &mut conn, false).await;
        if let Err(f) = end {
            if !ctx.stopping.get() {
                add(&ctx.ctr.unexpected_closes, 1);
                ctx.reason(format!("unexpected: {}", f.describe()));
            }
        }
    }
    slot.fd.set(-1);
    slot.live.set(false);
    ctx.live.set(ctx.live.get() - 1);
}

/// What a fan-out client thread hands back.
#[derive(Default)]
pub struct ThreadResult {
    pub held: u64,
    pub lost_clients: u64,
    pub lost_pairs: u64,
    pub frames_per_client: Vec<u64>,
    /// Per address (`ClientCfg::addrs`): clients held at the end, frames they received.
    pub per_instance: Vec<(u64, u64)>,
    pub lat: Histogram,
    pub snap: Histogram,
    pub reasons: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub driver: &'static str,
}

/// A fan-out client thread: start `ids` (at most `connect_concurrency` in setup at once),
/// hold them until `ctl.stop`, then close them and tally per-client results.
pub async fn fanout_thread(
    cfg: Arc<ClientCfg>,
    ids: Vec<usize>,
    ctl: Arc<Control>,
    ctr: Arc<Counters>,
) -> ThreadResult {
    let ctx = Ctx::new(
        cfg.clone(),
        ctr.clone(),
        ids.first().copied().unwrap_or(0) as u64 + 1,
    );
    let mut slots: Vec<Rc<Slot>> = Vec::with_capacity(ids.len());
    let mut slot_ids: Vec<usize> = Vec::with_capacity(ids.len());
    for id in ids {
        while ctx.connecting.get() >= cfg.connect_concurrency && !ctl.stop.load(Relaxed) {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        if ctl.stop.load(Relaxed) {
            break;
        }
        let channels = cfg.plan.channels_for(id);
        let slot = Rc::new(Slot::new(&channels));
        slots.push(slot.clone());
        slot_ids.push(id);
        ctx.connecting.set(ctx.connecting.get() + 1);
        ctx.live.set(ctx.live.get() + 1);
        add(&ctr.started, 1);
        monoio::spawn(hold(ctx.clone(), slot, id, channels));
    }
    while !ctl.stop.load(Relaxed) {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    // Tally before closing: held = subscribed and still open now.
    let final_round = ctl.final_round.load(Relaxed);
    let mut res = ThreadResult {
        per_instance: vec![(0, 0); cfg.addrs.len()],
        ..ThreadResult::default()
    };
    for (s, id) in slots.iter().zip(&slot_ids) {
        let k = id % cfg.addrs.len();
        res.per_instance[k].1 += s.frames.get();
        if !(s.subscribed.get() && s.live.get()) {
            // Failed setups and unexpected closes are counted on their own.
            res.frames_per_client.push(s.frames.get());
            continue;
        }
        res.held += 1;
        res.per_instance[k].0 += 1;
        let rounds = s.rounds.borrow();
        let lost = rounds.iter().filter(|(_, r)| *r < final_round).count() as u64;
        if lost > 0 {
            res.lost_clients += 1;
            res.lost_pairs += lost;
        }
        res.frames_per_client.push(s.frames.get());
    }
    ctx.stopping.set(true);
    for s in &slots {
        let fd = s.fd.get();
        if fd >= 0 {
            // SAFETY: fd belongs to a live task of this thread (reset to -1 before it closes).
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while ctx.live.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    res.lat = ctx.lat.borrow().clone();
    res.snap = ctx.snap.borrow().clone();
    res.reasons = ctx.reasons.borrow().clone();
    res.first_error = ctx.first_error.borrow().clone();
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_plans_are_distinct_sorted_in_range() {
        let p = ChannelPlan::Mixed {
            base: 100,
            m: 50,
            count: 10,
        };
        let a = p.channels_for(1);
        let b = p.channels_for(2);
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|c| (100..150).contains(c)));
        assert_ne!(a, b);
        let dense = ChannelPlan::Mixed {
            base: 1,
            m: 12,
            count: 10,
        };
        let d = dense.channels_for(3);
        assert_eq!(d.len(), 10);
        assert!(d.windows(2).all(|w| w[0] < w[1]));
    }
}
