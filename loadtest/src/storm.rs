//! `connect-storm`: R new WebSocket sessions per second, each connect → upgrade → subscribe →
//! snapshot → clean close (close frame, wait for the server's close frame).

use crate::client::{self, ChannelPlan, ClientCfg, Counters, Ctx, Fail, Slot};
use crate::net::{self, Driver};
use crate::procfs;
use crate::report::{self, progress, si, CpuWindow, ServerCpu, Table, Ticker};
use crate::stats::{round, Histogram};
use crate::writer::Writer;
use crate::ws;
use monoio::io::AsyncWriteRentExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct StormOpts {
    pub addr: String,
    pub path: String,
    pub rate: f64,
    pub duration: f64,
    pub channels: u32,
    pub channel_base: u32,
    pub interval: u32,
    pub threads: usize,
    pub sources: Option<usize>,
    pub source_first: u8,
    pub redis: Option<String>,
    pub points: u32,
    pub server_pid: Option<i32>,
    pub timeout: f64,
    pub driver: Driver,
    pub client_bound_pct: f64,
}

async fn one(ctx: Rc<Ctx>, index: usize, skipped_close: Rc<AtomicU64>) {
    let t0 = Instant::now();
    let channels = match &ctx.cfg.plan {
        ChannelPlan::Same(v) => v.clone(),
        p => p.channels_for(index),
    };
    let slot = Slot::new(&channels);
    let r = monoio::time::timeout(
        ctx.cfg.setup_timeout,
        client::setup(&ctx, &slot, index, channels),
    )
    .await;
    client::count_setup_failure(&ctx, &r);
    if let Ok(Ok(mut conn)) = r {
        ctx.ctr.subscribed.fetch_add(1, Relaxed);
        ctx.snap
            .borrow_mut()
            .record(t0.elapsed().as_micros() as u64);
        // Clean close: our close frame, then the server's.
        let mut out = Vec::with_capacity(16);
        let mask = (t0.elapsed().as_nanos() as u32) ^ (index as u32).wrapping_mul(2_654_435_761);
        ws::write_masked(&mut out, ws::OP_CLOSE, &1000u16.to_be_bytes(), mask);
        let (w, _) = conn.stream.write_all(out).await;
        if w.is_err() {
            ctx.reason("close: write failed");
        } else {
            let end = monoio::time::timeout(
                Duration::from_secs(2),
                client::pump(&ctx, &slot, &mut conn, false),
            )
            .await;
            match end {
                Ok(Err(Fail::Closed(_))) => {
                    ctx.ctr.closed_ok.fetch_add(1, Relaxed);
                }
                Ok(Err(f)) => ctx.reason(format!("close handshake: {}", f.describe())),
                Ok(Ok(())) => {}
                Err(_) => {
                    skipped_close.fetch_add(1, Relaxed);
                    ctx.reason("close handshake: no close frame within 2 s");
                }
            }
        }
    }
    slot.fd.set(-1);
    ctx.live.set(ctx.live.get() - 1);
}

struct ThreadOut {
    snap: Histogram,
    reasons: BTreeMap<String, u64>,
    first_error: Option<String>,
    over_limit: u64,
}

#[allow(clippy::too_many_arguments)]
async fn thread_main(
    cfg: Arc<ClientCfg>,
    ctr: Arc<Counters>,
    first: usize,
    stride: usize,
    rate: f64,
    duration: Duration,
    max_inflight: usize,
    skipped_close: Arc<AtomicU64>,
) -> ThreadOut {
    let ctx = Ctx::new(cfg.clone(), ctr.clone(), first as u64 + 7);
    let sc = Rc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut over_limit = 0;
    let period = Duration::from_secs_f64(1.0 / rate);
    for k in 0u64.. {
        let target = t0 + period.mul_f64(k as f64);
        if target >= t0 + duration {
            break;
        }
        let now = Instant::now();
        if target > now {
            monoio::time::sleep(target - now).await;
        }
        if ctx.live.get() >= max_inflight {
            over_limit += 1;
            continue;
        }
        ctx.live.set(ctx.live.get() + 1);
        ctr.started.fetch_add(1, Relaxed);
        monoio::spawn(one(ctx.clone(), first + k as usize * stride, sc.clone()));
    }
    let deadline = Instant::now() + cfg.setup_timeout + Duration::from_secs(3);
    while ctx.live.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    skipped_close.fetch_add(sc.load(Relaxed), Relaxed);
    let out = ThreadOut {
        snap: ctx.snap.borrow().clone(),
        reasons: ctx.reasons.borrow().clone(),
        first_error: ctx.first_error.borrow().clone(),
        over_limit,
    };
    out
}

pub fn run(o: &StormOpts) -> Result<(Value, String), String> {
    let addr = net::loopback_addr(&o.addr)?;
    if !(o.rate > 0.0 && o.rate <= 20_000.0) {
        return Err("--rate must be in (0, 20000] connections per second".into());
    }
    let limit = net::raise_fd_limit() as usize;
    let max_inflight = (limit.saturating_sub(100) / o.threads).max(1);
    let total = (o.rate * o.duration).ceil() as usize;
    let sources = o.sources.unwrap_or(total.div_ceil(20_000)).max(1);
    let channels: Vec<u32> = (o.channel_base..o.channel_base + o.channels).collect();
    if let Some(url) = &o.redis {
        net::loopback_redis(url)?;
        let mut w = Writer::connect(url, channels.clone(), o.points)?;
        w.write_round()?;
        progress(format!(
            "[seed] wrote one round to {} channels",
            channels.len()
        ));
        std::thread::sleep(Duration::from_millis(300));
    }
    let server = ServerCpu::find(o.server_pid, addr.port());
    let cfg = Arc::new(ClientCfg {
        addrs: vec![addr],
        host: o.addr.clone(),
        path: o.path.clone(),
        raw: false,
        interval: o.interval,
        plan: ChannelPlan::Same(channels),
        sources,
        source_first: o.source_first,
        sample: 1,
        setup_timeout: Duration::from_secs_f64(o.timeout),
        connect_concurrency: max_inflight,
        recv_buf: 8192,
    });
    let ctrs: Vec<Arc<Counters>> = (0..o.threads).map(|_| Arc::default()).collect();
    let skipped_close = Arc::new(AtomicU64::new(0));
    let rss_before = server.pid().and_then(procfs::rss_kib);
    let cpu = CpuWindow::start(server.clone());
    let mut srv_tick = Ticker::new(server.ticks());
    let mut cli_tick = Ticker::new(report::client_ticks(&server));
    let start = Instant::now();
    let mut joins = Vec::new();
    let per_thread = o.rate / o.threads as f64;
    for (t, ctr) in ctrs.iter().enumerate() {
        let (cfg, ctr, sc, driver) = (cfg.clone(), ctr.clone(), skipped_close.clone(), o.driver);
        let (threads, duration) = (o.threads, Duration::from_secs_f64(o.duration));
        joins.push(
            std::thread::Builder::new()
                .name(format!("lt-storm-{t}"))
                .spawn(move || {
                    net::block_on(driver, move || {
                        thread_main(cfg, ctr, t, threads, per_thread, duration, max_inflight, sc)
                    })
                })
                .map_err(|e| e.to_string())?,
        );
    }
    let mut prev = client::Snap::default();
    let mut next = start + Duration::from_secs(1);
    while joins.iter().any(|j| !j.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() >= next {
            next += Duration::from_secs(1);
            let s = client::sum(&ctrs);
            let d = s.minus(&prev);
            prev = s;
            progress(format!(
                "[{:>4.0}/{}s] started {}/s  snapshots {}/s  failed {}  closed-clean {}  server {:.0}%  client {:.0}% cpu",
                start.elapsed().as_secs_f64(),
                o.duration,
                si(d.started as f64),
                si(d.subscribed as f64),
                s.setup_failed(),
                s.closed_ok,
                srv_tick.pct(server.ticks()),
                cli_tick.pct(report::client_ticks(&server)),
            ));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_res = cpu.finish();
    let mut snap = Histogram::default();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut drivers = Vec::new();
    let mut over_limit = 0;
    let mut first_error = None;
    for j in joins {
        let (out, d) = j
            .join()
            .map_err(|_| "storm thread panicked".to_string())??;
        snap.merge(&out.snap);
        over_limit += out.over_limit;
        for (k, v) in out.reasons {
            *reasons.entry(k).or_insert(0) += v;
        }
        if first_error.is_none() {
            first_error = out.first_error;
        }
        if !drivers.contains(&d) {
            drivers.push(d);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = server.pid().and_then(procfs::rss_kib);
    let s = client::sum(&ctrs);
    let client_bound = cpu_res.client_pct > o.client_bound_pct;
    let per_conn = |pct: f64| cpu_res.us_per(pct, s.subscribed);

    let mut t = Table::default();
    t.section("setup");
    t.row("target", format!("{addr}{}", o.path));
    t.row(
        "rate / duration",
        format!(
            "{} conn/s for {} s, {} channels each, {} threads ({})",
            o.rate,
            o.duration,
            o.channels,
            o.threads,
            drivers.join(",")
        ),
    );
    t.section(&format!("results ({secs:.1} s incl. drain)"));
    t.row("attempted", s.started);
    t.row(
        "snapshots received (success)",
        format!(
            "{} ({:.1}/s)",
            s.subscribed,
            s.subscribed as f64 / o.duration
        ),
    );
    t.row(
        "failures",
        format!(
            "connect {}  upgrade {}  closed {}  timeout {}",
            s.fail_connect, s.fail_upgrade, s.fail_setup, s.fail_timeout
        ),
    );
    t.row("clean close handshakes", s.closed_ok);
    t.row("error messages received", s.sub_errors);
    t.row("not started (fd limit)", over_limit);
    t.row("time to snapshot", snap.line_ms());
    t.section("server");
    report::server_rss_rows(&mut t, server.pid(), rss_before, rss_after);
    report::cpu_rows(
        &mut t,
        &cpu_res,
        (
            "CPU per session",
            format!("{:.1} µs", per_conn(cpu_res.server_pct)),
        ),
        None,
        false,
        client_bound,
    );
    if s.setup_failed() > 0 {
        t.warn(format!("{} sessions failed", s.setup_failed()));
    }
    if s.subscribed > s.closed_ok {
        t.warn(format!(
            "{} sessions did not complete the close handshake",
            s.subscribed - s.closed_ok
        ));
    }
    report::failure_rows(&mut t, &reasons, first_error.as_ref());
    let json = json!({
        "mode": "connect-storm",
        "target": addr.to_string(),
        "driver": drivers,
        "config": {"rate": o.rate, "duration_s": o.duration, "channels": o.channels, "threads": o.threads, "sources": sources},
        "seconds": round(secs, 3),
        "attempted": s.started,
        "succeeded": s.subscribed,
        "connect_errors": s.fail_connect,
        "upgrade_errors": s.fail_upgrade,
        "setup_closed": s.fail_setup,
        "timeouts": s.fail_timeout,
        "clean_closes": s.closed_ok,
        "no_close_frame": skipped_close.load(Relaxed),
        "error_messages": s.sub_errors,
        "not_started_fd_limit": over_limit,
        "time_to_snapshot": snap.summary_ms(),
        "reasons": reasons,
        "server": {
            "pid": server.pid(), "rss_kib_before": rss_before, "rss_kib_after": rss_after,
            "cpu_pct": round(cpu_res.server_pct, 1), "cpu_us_per_session": round(per_conn(cpu_res.server_pct), 1),
            "threads": report::threads_json(&cpu_res.server_threads),
        },
        "client": {"cpu_pct": round(cpu_res.client_pct, 1), "client_bound": client_bound},
        "warnings": t.warnings,
    });
    Ok((json, t.render("connect-storm results")))
}
