//! `rest`: keep-alive HTTP/1.1 GET loops, one request in flight per connection.

use crate::net::{self, Driver};
use crate::procfs;
use crate::report::{self, progress, si, CpuWindow, ServerCpu, Table, Ticker};
use crate::stats::{round, Histogram};
use crate::writer::Writer;
use crate::ws;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct RestOpts {
    pub addr: String,
    pub connections: usize,
    pub paths: Vec<String>,
    pub duration: f64,
    pub threads: usize,
    pub redis: Option<String>,
    pub points: u32,
    pub server_pid: Option<i32>,
    pub driver: Driver,
    pub timeout: f64,
    pub pipeline: usize,
    pub client_bound_pct: f64,
}

#[derive(Default)]
struct Ctr {
    requests: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    connects: AtomicU64,
}

struct Ctx {
    addr: SocketAddr,
    requests: Vec<Rc<Vec<u8>>>,
    timeout: Duration,
    pipeline: usize,
    stop: Arc<AtomicBool>,
    ctr: Arc<Ctr>,
    lat: RefCell<Histogram>,
    status: RefCell<BTreeMap<u16, u64>>,
    reasons: RefCell<BTreeMap<String, u64>>,
    live: Cell<usize>,
}

impl Ctx {
    fn reason(&self, r: String) {
        *self.reasons.borrow_mut().entry(r).or_insert(0) += 1;
    }
}

/// One pipelined batch: `n` requests written at once, `n` responses read back.
async fn one_batch(
    ctx: &Ctx,
    stream: &mut monoio::net::TcpStream,
    buf: &mut Vec<u8>,
    req: Rc<Vec<u8>>,
    n: usize,
) -> Result<bool, String> {
    let t = Instant::now();
    let (r, _) = stream.write_all(req).await;
    if let Err(e) = r {
        return Err(format!("write: {}", e.kind()));
    }
    buf.clear();
    let mut off = 0;
    let mut done = 0;
    loop {
        // Every complete response in the buffer.
        while done < n {
            let Some((status, head)) = ws::parse_http_head(&buf[off..]) else {
                break;
            };
            let h = &buf[off..off + head];
            let close = ws::connection_close(h);
            let body = match ws::content_length(h) {
                Some(b) => b,
                None if close => break, // close-delimited: ends at EOF
                None => 0,
            };
            if buf.len() - off < head + body {
                break;
            }
            off += head + body;
            done += 1;
            ctx.lat.borrow_mut().record(t.elapsed().as_micros() as u64);
            *ctx.status.borrow_mut().entry(status).or_insert(0) += 1;
            ctx.ctr.requests.fetch_add(1, Relaxed);
            if close {
                return Ok(true);
            }
        }
        if done == n {
            return Ok(false);
        }
        let len = buf.len();
        if buf.capacity() - len < 4096 {
            buf.reserve(16384);
        }
        let b = std::mem::take(buf);
        let (r, s) = stream.read(b.slice_mut(len..)).await;
        *buf = s.into_inner();
        match r {
            Ok(0) => {
                if let Some((status, _)) = ws::parse_http_head(&buf[off..]) {
                    ctx.lat.borrow_mut().record(t.elapsed().as_micros() as u64);
                    *ctx.status.borrow_mut().entry(status).or_insert(0) += 1;
                    ctx.ctr.requests.fetch_add(1, Relaxed);
                    return Ok(true);
                }
                return Err("EOF".into());
            }
            Ok(n) => {
                ctx.ctr.bytes.fetch_add(n as u64, Relaxed);
            }
            Err(e) => return Err(format!("read: {}", e.kind())),
        }
        if buf.len() - off > 64 << 20 {
            return Err("response over 64 MiB".into());
        }
    }
}

async fn conn_task(ctx: Rc<Ctx>, index: usize) {
    let mut buf = Vec::with_capacity(16384);
    let mut k = index;
    'outer: while !ctx.stop.load(Relaxed) {
        let mut stream = match net::connect(ctx.addr, None, ctx.timeout).await {
            Ok(s) => s,
            Err(e) => {
                ctx.ctr.errors.fetch_add(1, Relaxed);
                ctx.reason(format!("connect: {}", e.kind()));
                monoio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        ctx.ctr.connects.fetch_add(1, Relaxed);
        while !ctx.stop.load(Relaxed) {
            let req = ctx.requests[k % ctx.requests.len()].clone();
            k += 1;
            let out = monoio::time::timeout(
                ctx.timeout,
                one_batch(&ctx, &mut stream, &mut buf, req, ctx.pipeline),
            )
            .await;
            match out {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => continue 'outer,
                Ok(Err(e)) => {
                    ctx.ctr.errors.fetch_add(1, Relaxed);
                    ctx.reason(e);
                    continue 'outer;
                }
                Err(_) => {
                    ctx.ctr.errors.fetch_add(1, Relaxed);
                    ctx.reason("request timed out".into());
                    continue 'outer;
                }
            }
        }
    }
    ctx.live.set(ctx.live.get() - 1);
}

struct ThreadOut {
    lat: Histogram,
    status: BTreeMap<u16, u64>,
    reasons: BTreeMap<String, u64>,
}

async fn thread_main(ctx: Rc<Ctx>, conns: Vec<usize>) -> ThreadOut {
    for i in conns {
        ctx.live.set(ctx.live.get() + 1);
        monoio::spawn(conn_task(ctx.clone(), i));
    }
    while !ctx.stop.load(Relaxed) {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + ctx.timeout + Duration::from_secs(1);
    while ctx.live.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    ThreadOut {
        lat: ctx.lat.borrow().clone(),
        status: ctx.status.borrow().clone(),
        reasons: ctx.reasons.borrow().clone(),
    }
}

/// Channel ids named by `/api/channels/{id}/…` paths.
fn channels_in(paths: &[String]) -> Vec<u32> {
    let mut v: Vec<u32> = paths
        .iter()
        .filter_map(|p| {
            p.strip_prefix("/api/channels/")?
                .split(['/', '?'])
                .next()?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

pub fn run(o: &RestOpts) -> Result<(Value, String), String> {
    let addr = net::loopback_addr(&o.addr)?;
    if o.connections == 0 || o.paths.is_empty() {
        return Err("need at least one connection and one --path".into());
    }
    net::check_fd_budget(o.connections, "rest")?;
    if let Some(url) = &o.redis {
        net::loopback_redis(url)?;
        let chans = channels_in(&o.paths);
        if !chans.is_empty() {
            let mut w = Writer::connect(url, chans.clone(), o.points)?;
            w.write_round()?;
            progress(format!(
                "[seed] wrote {} points to channels {chans:?}",
                o.points
            ));
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let server = ServerCpu::find(o.server_pid, addr.port());
    // Batch i: `pipeline` consecutive paths starting at path i (round-robin).
    let pipeline = o.pipeline.max(1);
    let requests: Vec<Vec<u8>> = (0..o.paths.len())
        .map(|i| {
            (0..pipeline)
                .flat_map(|j| {
                    let p = &o.paths[(i + j) % o.paths.len()];
                    format!("GET {p} HTTP/1.1\r\nHost: {}\r\n\r\n", o.addr).into_bytes()
                })
                .collect()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ctrs: Vec<Arc<Ctr>> = (0..o.threads).map(|_| Arc::default()).collect();
    let rss_before = server.pid().and_then(procfs::rss_kib);
    let cpu = CpuWindow::start(server.clone());
    let mut srv_tick = Ticker::new(server.ticks());
    let mut cli_tick = Ticker::new(report::client_ticks(&server));
    let start = Instant::now();
    let mut joins = Vec::new();
    for (t, ctr) in ctrs.iter().enumerate() {
        let conns: Vec<usize> = (t..o.connections).step_by(o.threads).collect();
        let (stop, ctr, requests, driver) = (stop.clone(), ctr.clone(), requests.clone(), o.driver);
        let timeout = Duration::from_secs_f64(o.timeout);
        joins.push(
            std::thread::Builder::new()
                .name(format!("lt-rest-{t}"))
                .spawn(move || {
                    net::block_on(driver, move || {
                        let ctx = Rc::new(Ctx {
                            addr,
                            requests: requests.into_iter().map(Rc::new).collect(),
                            timeout,
                            pipeline,
                            stop,
                            ctr,
                            lat: RefCell::default(),
                            status: RefCell::default(),
                            reasons: RefCell::default(),
                            live: Cell::new(0),
                        });
                        thread_main(ctx, conns)
                    })
                })
                .map_err(|e| e.to_string())?,
        );
    }
    let sum = |f: fn(&Ctr) -> &AtomicU64| ctrs.iter().map(|c| f(c).load(Relaxed)).sum::<u64>();
    let end = start + Duration::from_secs_f64(o.duration);
    let mut prev = 0;
    let mut next = start + Duration::from_secs(1);
    while Instant::now() < end {
        let wake = next.min(end);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
        if Instant::now() >= next {
            next += Duration::from_secs(1);
            let r = sum(|c| &c.requests);
            progress(format!(
                "[{:>4.0}/{}s] requests {}/s  errors {}  connects {}  server {:.0}%  client {:.0}% cpu",
                start.elapsed().as_secs_f64(),
                o.duration,
                si((r - prev) as f64),
                sum(|c| &c.errors),
                sum(|c| &c.connects),
                srv_tick.pct(server.ticks()),
                cli_tick.pct(report::client_ticks(&server)),
            ));
            prev = r;
        }
    }
    let requests_done = sum(|c| &c.requests);
    let bytes = sum(|c| &c.bytes);
    let secs = start.elapsed().as_secs_f64();
    let cpu_res = cpu.finish();
    stop.store(true, Relaxed);
    let mut lat = Histogram::default();
    let mut status: BTreeMap<u16, u64> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut drivers = Vec::new();
    for j in joins {
        let (out, d) = j.join().map_err(|_| "rest thread panicked".to_string())??;
        lat.merge(&out.lat);
        for (k, v) in out.status {
            *status.entry(k).or_insert(0) += v;
        }
        for (k, v) in out.reasons {
            *reasons.entry(k).or_insert(0) += v;
        }
        if !drivers.contains(&d) {
            drivers.push(d);
        }
    }
    let rss_after = server.pid().and_then(procfs::rss_kib);
    let errors = sum(|c| &c.errors);
    let connects = sum(|c| &c.connects);
    let rps = requests_done as f64 / secs;
    let client_bound = cpu_res.client_pct > o.client_bound_pct;
    let per_req = |pct: f64| cpu_res.us_per(pct, requests_done);

    let mut t = Table::default();
    t.section("setup");
    t.row("target", format!("{addr}  paths {:?}", o.paths));
    t.row(
        "connections / threads",
        format!("{} / {} ({})", o.connections, o.threads, drivers.join(",")),
    );
    t.section(&format!("results ({secs:.1} s)"));
    t.row("requests", format!("{requests_done} ({}/s)", si(rps)));
    t.row("bytes received", report::mb(bytes as f64 / secs));
    t.row(
        "status counts",
        status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("  "),
    );
    t.row("errors / connects", format!("{errors} / {connects}"));
    t.row("latency", lat.line_ms());
    t.section("server");
    report::server_rss_rows(&mut t, server.pid(), rss_before, rss_after);
    report::cpu_rows(
        &mut t,
        &cpu_res,
        (
            "CPU per request",
            format!("{:.2} µs", per_req(cpu_res.server_pct)),
        ),
        Some((
            "CPU per request",
            format!("{:.2} µs", per_req(cpu_res.client_pct)),
        )),
        false,
        client_bound,
    );
    let non2xx: u64 = status
        .iter()
        .filter(|(k, _)| !(200..300).contains(*k))
        .map(|(_, v)| v)
        .sum();
    if non2xx > 0 {
        t.warn(format!("{non2xx} responses were not 2xx"));
    }
    if errors > 0 {
        t.warn(format!("{errors} request errors"));
    }
    if !reasons.is_empty() {
        t.section("error reasons");
        for (k, v) in &reasons {
            t.row(k, v);
        }
    }
    let json = json!({
        "mode": "rest",
        "target": addr.to_string(),
        "driver": drivers,
        "config": {"connections": o.connections, "pipeline": pipeline, "paths": o.paths, "duration_s": o.duration, "threads": o.threads},
        "seconds": round(secs, 3),
        "requests": requests_done,
        "requests_per_s": round(rps, 1),
        "bytes_per_s": round(bytes as f64 / secs, 0),
        "status": status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "errors": errors,
        "connects": connects,
        "error_reasons": reasons,
        "latency": lat.summary_ms(),
        "server": {
            "pid": server.pid(), "rss_kib_before": rss_before, "rss_kib_after": rss_after,
            "cpu_pct": round(cpu_res.server_pct, 1), "cpu_us_per_request": round(per_req(cpu_res.server_pct), 3),
            "threads": report::threads_json(&cpu_res.server_threads),
        },
        "client": {
            "cpu_pct": round(cpu_res.client_pct, 1), "client_bound": client_bound,
            "cpu_us_per_request": round(per_req(cpu_res.client_pct), 3),
        },
        "warnings": t.warnings,
    });
    Ok((json, t.render("rest results")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn channels_from_paths() {
        let p = vec![
            "/api/channels/1001/realtime".to_string(),
            "/api/channels/7?x=1".to_string(),
            "/health".to_string(),
            "/api/channels/1001/status".to_string(),
        ];
        assert_eq!(super::channels_in(&p), vec![7, 1001]);
    }
}
