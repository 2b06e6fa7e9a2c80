//! The physical ceiling: a minimal raw-TCP fan-out server (monoio, N threads, SO_REUSEPORT)
//! that sends every connection the same pre-built WebSocket text frame once per round — no
//! HTTP, no subscriptions, no per-client work beyond one send. The gateway is judged against it.

use crate::net::{self, Driver};
use crate::procfs;
use monoio::io::AsyncWriteRentExt;
use socket2::{Domain, Protocol, Socket, Type};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The shape of the pushed frame.
#[derive(Clone, Debug)]
pub struct Shape {
    pub channels: Vec<u32>,
    pub points: u32,
}

/// Appends `{"1":sent,"2":round,"3":…}` exactly as the writer writes it to Redis.
pub fn values_json(out: &mut String, sent_ms: f64, round: u64, ch: u32, points: u32) {
    use std::fmt::Write as _;
    let _ = write!(out, "{{\"1\":{sent_ms:.3},\"2\":{round}");
    for p in 3..=points.max(2) {
        let v = (round * 31 + u64::from(p) * 7 + u64::from(ch)) % 10_000;
        let _ = write!(out, ",\"{p}\":{}.{}", v / 10, v % 10);
    }
    out.push('}');
}

/// The whole frame (header + payload) for `round`, shaped like the gateway's `data_batch`
/// (`data_update` for a single channel).
pub fn build_frame(shape: &Shape, round: u64) -> Vec<u8> {
    use voltage_gateway::model::{ChannelId, DataType};
    use voltage_gateway::wire;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as f64 / 1000.0)
        .unwrap_or(0.0);
    // The gateway's own frame code, so the bytes are shaped exactly like its pushes.
    let iso = wire::iso(now as i64);
    let mut values = String::with_capacity(16 + 12 * shape.points as usize);
    let fragments: Vec<Vec<u8>> = shape
        .channels
        .iter()
        .map(|ch| {
            values.clear();
            values_json(&mut values, now, round, *ch, shape.points);
            let mut f = Vec::with_capacity(values.len() + 48);
            wire::values::write_update(
                &mut f,
                ChannelId(*ch),
                DataType::Telemetry,
                values.as_bytes(),
            );
            f
        })
        .collect();
    let refs: Vec<&[u8]> = fragments.iter().map(Vec::as_slice).collect();
    wire::ws::build_frame(round, &iso, &refs).to_vec()
}

/// Shared between the main thread and the server threads.
struct Shared {
    t0: Mutex<Option<Instant>>,
    period: Duration,
    stop_round: AtomicU64,
    accepted: AtomicU64,
    sends: AtomicU64,
    send_errors: AtomicU64,
    tids: Mutex<Vec<i32>>,
}

pub struct Ceiling {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// A single-threaded broadcast of the latest frame.
#[derive(Default)]
struct Bcast {
    seq: Cell<u64>,
    frame: RefCell<Rc<Vec<u8>>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Bcast {
    fn publish(&self, f: Vec<u8>) {
        *self.frame.borrow_mut() = Rc::new(f);
        self.seq.set(self.seq.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

struct Newer<'a> {
    bc: &'a Bcast,
    last: u64,
}

impl Future for Newer<'_> {
    type Output = (u64, Rc<Vec<u8>>);
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let s = self.bc.seq.get();
        if s > self.last {
            Poll::Ready((s, self.bc.frame.borrow().clone()))
        } else {
            self.bc.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }
}

async fn serve_conn(mut stream: monoio::net::TcpStream, bc: Rc<Bcast>, shared: Arc<Shared>) {
    let mut last = bc.seq.get();
    loop {
        let (seq, frame) = Newer { bc: &bc, last }.await;
        last = seq;
        let (r, _) = stream.write_all(frame).await;
        if r.is_err() {
            shared.send_errors.fetch_add(1, Relaxed);
            return;
        }
        shared.sends.fetch_add(1, Relaxed);
    }
}

async fn ticker(bc: Rc<Bcast>, shared: Arc<Shared>, shape: Shape) {
    let t0 = loop {
        if let Some(t) = *shared.t0.lock().unwrap() {
            break t;
        }
        monoio::time::sleep(Duration::from_millis(2)).await;
    };
    for k in 1u64.. {
        let target = t0 + shared.period.mul_f64((k - 1) as f64);
        let now = Instant::now();
        if target > now {
            monoio::time::sleep(target - now).await;
        }
        if k > shared.stop_round.load(Relaxed) {
            break;
        }
        bc.publish(build_frame(&shape, k));
    }
}

async fn server_thread(listener: std::net::TcpListener, shared: Arc<Shared>, shape: Shape) {
    net::set_blocking(listener.as_raw_fd(), net::is_uring());
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ceiling: listener: {e}");
            return;
        }
    };
    let bc = Rc::new(Bcast::default());
    monoio::spawn(ticker(bc.clone(), shared.clone(), shape));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                shared.accepted.fetch_add(1, Relaxed);
                monoio::spawn(serve_conn(stream, bc.clone(), shared.clone()));
            }
            Err(e) => {
                eprintln!("ceiling: accept: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

impl Ceiling {
    /// Starts `threads` server threads on 127.0.0.1:`port` (0 = a free port); frames are not
    /// sent until `arm`.
    pub fn start(
        port: u16,
        threads: usize,
        shape: Shape,
        rate_hz: f64,
        driver: Driver,
    ) -> Result<Ceiling, String> {
        let first = reuseport_listener(SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|e| format!("ceiling listen 127.0.0.1:{port}: {e}"))?;
        let addr = first.local_addr().map_err(|e| e.to_string())?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners
                .push(reuseport_listener(addr).map_err(|e| format!("ceiling listen {addr}: {e}"))?);
        }
        let shared = Arc::new(Shared {
            t0: Mutex::new(None),
            period: Duration::from_secs_f64(1.0 / rate_hz),
            stop_round: AtomicU64::new(u64::MAX),
            accepted: AtomicU64::new(0),
            sends: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            tids: Mutex::new(Vec::new()),
        });
        for (i, l) in listeners.into_iter().enumerate() {
            let (sh, shape) = (shared.clone(), shape.clone());
            std::thread::Builder::new()
                .name(format!("lt-ceiling-{i}"))
                .spawn(move || {
                    sh.tids.lock().unwrap().push(procfs::gettid());
                    if let Err(e) = net::block_on(driver, || server_thread(l, sh, shape)) {
                        eprintln!("ceiling thread {i}: {e}");
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        // Wait for the threads to report their ids.
        let deadline = Instant::now() + Duration::from_secs(5);
        while shared.tids.lock().unwrap().len() < threads && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Ceiling { addr, shared })
    }

    pub fn tids(&self) -> Vec<i32> {
        self.shared.tids.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Relaxed)
    }

    pub fn sends(&self) -> u64 {
        self.shared.sends.load(Relaxed)
    }

    pub fn send_errors(&self) -> u64 {
        self.shared.send_errors.load(Relaxed)
    }

    /// Round 1 goes out now, then one every period.
    pub fn arm(&self) {
        *self.shared.t0.lock().unwrap() = Some(Instant::now());
    }

    /// Rounds started so far.
    pub fn round_now(&self) -> u64 {
        match *self.shared.t0.lock().unwrap() {
            Some(t0) => (t0.elapsed().as_secs_f64() / self.shared.period.as_secs_f64()) as u64 + 1,
            None => 0,
        }
    }

    /// Stops at a round boundary every thread will reach; returns the final round once it is
    /// due (its sends may still be in flight).
    pub fn stop(&self) -> u64 {
        let Some(t0) = *self.shared.t0.lock().unwrap() else {
            self.shared.stop_round.store(0, Relaxed);
            return 0;
        };
        let period = self.shared.period;
        let due = (t0.elapsed().as_secs_f64() / period.as_secs_f64()) as u64 + 1;
        let last = due + 1;
        self.shared.stop_round.store(last, Relaxed);
        let when = t0 + period.mul_f64((last - 1) as f64) + Duration::from_millis(20);
        let now = Instant::now();
        if when > now {
            std::thread::sleep(when - now);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{self, Scanner};

    #[test]
    fn frame_scans_like_a_gateway_batch() {
        let shape = Shape {
            channels: vec![1, 2, 3],
            points: 5,
        };
        let f = build_frame(&shape, 7);
        let h = ws::parse_header(&f).unwrap();
        assert_eq!(h.total(), f.len());
        let p = &f[h.header_len..];
        assert_eq!(ws::classify(p), ws::Kind::Data);
        let mut got = Vec::new();
        let t1 = Scanner::default().scan(p, true, |u| got.push((u.channel, u.round)));
        assert!(t1.unwrap() > 1.7e12);
        assert_eq!(got, vec![(1, Some(7)), (2, Some(7)), (3, Some(7))]);
        let one = build_frame(
            &Shape {
                channels: vec![9],
                points: 2,
            },
            3,
        );
        let p = &one[ws::parse_header(&one).unwrap().header_len..];
        assert!(p.starts_with(br#"{"type":"data_update""#));
    }
}
