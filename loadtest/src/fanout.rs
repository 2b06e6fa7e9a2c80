//! `ws-fanout` (the gateway, fed by the Redis writer) and `ceiling` (the in-process raw-TCP
//! fan-out server): the same client side, the same measurement window, the same table.

use crate::ceiling::{Ceiling, Shape};
use crate::client::{self, ChannelPlan, ClientCfg, Control, Counters, ThreadResult};
use crate::net::{self, Driver};
use crate::procfs;
use crate::report::{self, progress, si, CpuWindow, ServerCpu, Table, Ticker};
use crate::stats::{round, Histogram};
use crate::writer::{Running, Writer, WriterStats};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct FanoutOpts {
    pub clients: usize,
    pub channels: u32,
    pub channel_base: u32,
    pub points: u32,
    pub interval: u32,
    pub rate_hz: f64,
    pub duration: f64,
    pub threads: usize,
    pub sources: Option<usize>,
    pub source_first: u8,
    pub mixed: Option<u32>,
    /// Written channels when every client shares one pseudo-random subset (see `--same-of`).
    pub same_of: Option<u32>,
    pub sample: u32,
    pub connect_concurrency: usize,
    pub setup_timeout: f64,
    pub ramp_timeout: f64,
    pub recv_buf: usize,
    pub driver: Driver,
    pub client_bound_pct: f64,
    pub quiet: f64,
}

pub enum Target {
    Gateway {
        /// One or several gateways of one site (clients spread round-robin).
        addrs: Vec<String>,
        redis: String,
        path: String,
        /// One per address, or none (found by port).
        server_pids: Vec<i32>,
        /// The Redis server, for its CPU over the window (the cost of each gateway's collect).
        redis_pid: Option<i32>,
    },
    Ceiling {
        port: u16,
        server_threads: usize,
    },
}

enum Producer {
    Writer {
        idle: Option<Writer>,
        running: Option<Running>,
        first_round: u64,
    },
    Ceiling(Ceiling),
}

impl Producer {
    fn start(&mut self, rate_hz: f64) {
        match self {
            Producer::Writer { idle, running, .. } => {
                if let Some(w) = idle.take() {
                    *running = Some(w.spawn(rate_hz));
                }
            }
            Producer::Ceiling(c) => c.arm(),
        }
    }

    fn round_now(&self) -> u64 {
        match self {
            Producer::Writer {
                running,
                first_round,
                ..
            } => running
                .as_ref()
                .map(|r| r.progress.load(Relaxed))
                .unwrap_or(*first_round),
            Producer::Ceiling(c) => c.round_now(),
        }
    }

    /// Stops producing; (final round, writer stats).
    fn stop(&mut self) -> (u64, Option<WriterStats>) {
        match self {
            Producer::Writer {
                running,
                first_round,
                ..
            } => match running.take() {
                Some(r) => {
                    let st = r.finish();
                    (st.final_round, Some(st))
                }
                None => (*first_round, None),
            },
            Producer::Ceiling(c) => (c.stop(), None),
        }
    }

    fn first_round(&self) -> u64 {
        match self {
            Producer::Writer { first_round, .. } => *first_round,
            Producer::Ceiling(_) => 0,
        }
    }
}

fn median(v: &mut [u64]) -> (u64, u64, u64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Runs the fan-out measurement; returns (JSON result, human table).
pub fn run(o: &FanoutOpts, target: Target) -> Result<(Value, String), String> {
    let ceiling_mode = matches!(target, Target::Ceiling { .. });
    let mode = if ceiling_mode { "ceiling" } else { "ws-fanout" };
    let n = o.clients;
    if n == 0 {
        return Err("--clients must be at least 1".into());
    }
    let sockets = if ceiling_mode { 2 * n } else { n };
    net::check_fd_budget(
        sockets,
        &format!(
            "{mode} with {n} clients{}",
            if ceiling_mode {
                " (client and server sockets in one process)"
            } else {
                ""
            }
        ),
    )?;
    let sources = o.sources.unwrap_or(n.div_ceil(20_000)).max(1);
    let base_channels: Vec<u32> = (o.channel_base..o.channel_base + o.channels).collect();
    let (plan, written): (ChannelPlan, Vec<u32>) = match (o.mixed, o.same_of) {
        (Some(m), _) | (_, Some(m)) if !ceiling_mode => {
            if m < o.channels {
                return Err("--mixed/--same-of M must be at least --channels".into());
            }
            let mixed = ChannelPlan::Mixed {
                base: o.channel_base,
                m,
                count: o.channels,
            };
            let plan = if o.same_of.is_some() {
                ChannelPlan::Same(mixed.channels_for(0))
            } else {
                mixed
            };
            (plan, (o.channel_base..o.channel_base + m).collect())
        }
        (Some(_), _) | (_, Some(_)) => {
            return Err("--mixed/--same-of apply to ws-fanout only".into())
        }
        (None, None) => (
            ChannelPlan::Same(base_channels.clone()),
            base_channels.clone(),
        ),
    };

    // The producer, the address, and whose CPU is the server's.
    let (mut producer, addrs, host, path, server, redis_pid) = match &target {
        Target::Gateway {
            addrs,
            redis,
            path,
            server_pids,
            redis_pid,
        } => {
            let sas = addrs
                .iter()
                .map(|a| net::loopback_addr(a))
                .collect::<Result<Vec<_>, _>>()?;
            if sas.is_empty() {
                return Err("--addr: at least one gateway address".into());
            }
            if !server_pids.is_empty() && server_pids.len() != sas.len() {
                return Err("--server-pid: one per --addr address".into());
            }
            net::loopback_redis(redis)?;
            let mut w = Writer::connect(redis, written.clone(), o.points)?;
            w.write_round()
                .map_err(|e| format!("initial write to {redis}: {e}"))?;
            let pids = if server_pids.is_empty() {
                sas.iter()
                    .map(|sa| procfs::find_gateway(sa.port()))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                server_pids.clone()
            };
            // Let the gateway's feed see the channels (one tick is 10 ms by default).
            std::thread::sleep(Duration::from_millis(300));
            let first_round = w.round();
            (
                Producer::Writer {
                    idle: Some(w),
                    running: None,
                    first_round,
                },
                sas,
                addrs[0].clone(),
                path.clone(),
                if pids.len() == 1 {
                    ServerCpu::Pid(pids[0])
                } else {
                    ServerCpu::Pids(pids)
                },
                *redis_pid,
            )
        }
        Target::Ceiling {
            port,
            server_threads,
        } => {
            let shape = Shape {
                channels: base_channels.clone(),
                points: o.points,
            };
            let c = Ceiling::start(*port, *server_threads, shape, o.rate_hz, o.driver)?;
            let addr = c.addr;
            let tids = c.tids();
            (
                Producer::Ceiling(c),
                vec![addr],
                addr.to_string(),
                String::new(),
                ServerCpu::Tids(tids),
                None,
            )
        }
    };
    let rss_before = server.rss_kib();

    // Client threads.
    let cfg = Arc::new(ClientCfg {
        addrs: addrs.clone(),
        host,
        path,
        raw: ceiling_mode,
        interval: o.interval,
        plan,
        sources,
        source_first: o.source_first,
        sample: o.sample.max(1),
        setup_timeout: Duration::from_secs_f64(o.setup_timeout),
        connect_concurrency: o.connect_concurrency.div_ceil(o.threads).max(1),
        recv_buf: o.recv_buf.max(1024),
    });
    let ctl = Arc::new(Control::default());
    let ctrs: Vec<Arc<Counters>> = (0..o.threads).map(|_| Arc::default()).collect();
    let client_tids = Arc::new(Mutex::new(Vec::new()));
    let mut joins = Vec::new();
    for (t, ctr) in ctrs.iter().enumerate() {
        let ids: Vec<usize> = (t..n).step_by(o.threads).collect();
        let (cfg, ctl, ctr, tids, driver) = (
            cfg.clone(),
            ctl.clone(),
            ctr.clone(),
            client_tids.clone(),
            o.driver,
        );
        joins.push(
            std::thread::Builder::new()
                .name(format!("lt-client-{t}"))
                .spawn(move || -> Result<ThreadResult, String> {
                    tids.lock().unwrap().push(procfs::gettid());
                    net::block_on(driver, || client::fanout_thread(cfg, ids, ctl, ctr)).map(
                        |(mut r, d)| {
                            r.driver = d;
                            r
                        },
                    )
                })
                .map_err(|e| e.to_string())?,
        );
    }

    // Ramp: until every client subscribed or failed.
    let ramp_start = Instant::now();
    let mut last_print = Instant::now();
    let mut ramp_timed_out = false;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let s = client::sum(&ctrs);
        if s.setup_done() >= n as u64 {
            break;
        }
        if ramp_start.elapsed().as_secs_f64() > o.ramp_timeout {
            ramp_timed_out = true;
            progress(format!(
                "[ramp] gave up after {:.0}s: {} of {n} set up",
                o.ramp_timeout,
                s.setup_done()
            ));
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            progress(format!(
                "[ramp {:>4.0}s] started {}  tcp {}  subscribed {}/{n}  failed {}",
                ramp_start.elapsed().as_secs_f64(),
                s.started,
                s.tcp_connected,
                s.subscribed,
                s.setup_failed()
            ));
        }
    }
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = server.rss_kib();
    let at_window = client::sum(&ctrs);
    progress(format!(
        "[ramp done {ramp_secs:.1}s] subscribed {}/{n}, failed {}; measuring for {}s",
        at_window.subscribed,
        at_window.setup_failed(),
        o.duration
    ));

    // Measurement window.
    let cpu = CpuWindow::start(server.clone());
    let instance_marks: Vec<procfs::CpuMark> = server
        .pids()
        .iter()
        .map(|p| procfs::CpuMark::new(procfs::proc_ticks(*p).unwrap_or(0)))
        .collect();
    let redis_mark = redis_pid.map(|p| procfs::CpuMark::new(procfs::proc_ticks(p).unwrap_or(0)));
    let mut srv_tick = Ticker::new(server.ticks());
    let mut cli_tick = Ticker::new(report::client_ticks(&server));
    let w_start = Instant::now();
    producer.start(o.rate_hz);
    let mut prev = at_window;
    let mut next = w_start + Duration::from_secs(1);
    let end = w_start + Duration::from_secs_f64(o.duration);
    while Instant::now() < end {
        let now = Instant::now();
        let wake = next.min(end);
        if wake > now {
            std::thread::sleep(wake - now);
        }
        if Instant::now() >= next {
            next += Duration::from_secs(1);
            let s = client::sum(&ctrs);
            let d = s.minus(&prev);
            prev = s;
            progress(format!(
                "[{:>4.0}/{}s] held {}  frames {}/s  {}  updates {}/s  dup {}  skip {}  closes {}  round {}  server {:.0}%{}  client {:.0}% cpu",
                w_start.elapsed().as_secs_f64(),
                o.duration,
                s.subscribed - s.unexpected_closes,
                si(d.data_frames as f64),
                report::mb(d.bytes as f64),
                si(d.updates as f64),
                s.dups,
                s.skipped,
                s.unexpected_closes,
                producer.round_now(),
                srv_tick.pct(server.ticks()),
                server
                    .pid()
                    .and_then(procfs::rss_kib)
                    .map(|k| format!(" rss {} MiB", k / 1024))
                    .unwrap_or_default(),
                cli_tick.pct(report::client_ticks(&server)),
            ));
        }
    }
    let (final_round, wstats) = producer.stop();
    let cpu_res = cpu.finish();
    let instance_pct: Vec<f64> = server
        .pids()
        .iter()
        .zip(&instance_marks)
        .map(|(p, m)| m.percent(procfs::proc_ticks(*p).unwrap_or(0)))
        .collect();
    let redis_pct = redis_pid
        .zip(redis_mark)
        .map(|(p, m)| m.percent(procfs::proc_ticks(p).unwrap_or(0)));
    let window_secs = w_start.elapsed().as_secs_f64();
    let at_end = client::sum(&ctrs);
    progress(format!(
        "[stop] final round {final_round}; {:.1}s of quiet for in-flight frames",
        o.quiet
    ));
    std::thread::sleep(Duration::from_secs_f64(o.quiet));
    let rss_end = server.rss_kib();
    ctl.final_round.store(final_round, Relaxed);
    ctl.stop.store(true, Relaxed);
    let mut results = Vec::new();
    for j in joins {
        results.push(
            j.join()
                .map_err(|_| "client thread panicked".to_string())??,
        );
    }
    let fin = client::sum(&ctrs);
    let (ceil_sends, ceil_errs) = match &producer {
        Producer::Ceiling(c) => (Some(c.sends()), Some(c.send_errors())),
        _ => (None, None),
    };
    let accepted = match &producer {
        Producer::Ceiling(c) => Some(c.accepted()),
        _ => None,
    };

    // Aggregate.
    let mut lat = Histogram::default();
    let mut snap = Histogram::default();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let (mut held, mut lost_clients, mut lost_pairs) = (0u64, 0u64, 0u64);
    let mut per_client: Vec<u64> = Vec::new();
    let mut first_error = None;
    let mut drivers = Vec::new();
    let mut per_instance = vec![(0u64, 0u64); addrs.len()];
    for r in &results {
        for (sum, (h, f)) in per_instance.iter_mut().zip(&r.per_instance) {
            sum.0 += h;
            sum.1 += f;
        }
        lat.merge(&r.lat);
        snap.merge(&r.snap);
        held += r.held;
        lost_clients += r.lost_clients;
        lost_pairs += r.lost_pairs;
        per_client.extend_from_slice(&r.frames_per_client);
        for (k, v) in &r.reasons {
            *reasons.entry(k.clone()).or_insert(0) += v;
        }
        if first_error.is_none() {
            first_error = r.first_error.clone();
        }
        if !drivers.contains(&r.driver) {
            drivers.push(r.driver);
        }
    }
    let (fmin, fmed, fmax) = median(&mut per_client);
    let win = at_end.minus(&at_window);
    let drain = fin.minus(&at_end);
    let fps = win.data_frames as f64 / window_secs;
    let bps = win.bytes as f64 / window_secs;
    let ups = win.updates as f64 / window_secs;
    let rounds = final_round.saturating_sub(producer.first_round());
    let subscribed = at_window.subscribed;
    let expected_updates = subscribed * u64::from(o.channels) * rounds;
    let got_updates = win.updates + drain.updates;
    let per_frame = |pct: f64| cpu_res.us_per(pct, win.data_frames);
    let rss_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if subscribed > 0 && a >= b => Some((a - b) as f64 / subscribed as f64),
        _ => None,
    };
    let client_bound = cpu_res.client_pct > o.client_bound_pct;

    // Human table.
    let mut t = Table::default();
    t.section("setup");
    t.row(
        "target",
        format!(
            "{} ({})",
            addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if ceiling_mode {
                "in-process ceiling server"
            } else {
                "gateway"
            }
        ),
    );
    t.row("client io driver", drivers.join(","));
    t.row(
        "shape",
        format!(
            "{n} clients × {} channels{} × {} points, interval {} ms, {} rounds/s",
            o.channels,
            o.mixed
                .map(|m| format!(" (mixed out of {m})"))
                .or(o
                    .same_of
                    .map(|m| format!(" (the same for all, out of {m} written)")))
                .unwrap_or_default(),
            o.points,
            o.interval,
            o.rate_hz
        ),
    );
    t.row(
        "client threads / sources",
        format!(
            "{} / {sources} (from 127.0.0.{})",
            o.threads, o.source_first
        ),
    );
    t.section("connections");
    t.row("connected (tcp)", at_window.tcp_connected);
    t.row(
        "subscribed (got snapshot)",
        format!("{subscribed} of {n} in {ramp_secs:.1} s"),
    );
    t.row("held at end", held);
    t.row(
        "setup failures",
        format!(
            "connect {}  upgrade {}  closed {}  timeout {}",
            fin.fail_connect, fin.fail_upgrade, fin.fail_setup, fin.fail_timeout
        ),
    );
    t.row("unexpected closes", fin.unexpected_closes);
    t.row("error messages received", fin.sub_errors);
    if !ceiling_mode {
        t.row("time to snapshot", snap.line_ms());
    }
    t.section(&format!("window ({window_secs:.1} s)"));
    t.row("frames", format!("{} ({}/s)", win.data_frames, si(fps)));
    t.row("bytes", report::mb(bps));
    t.row(
        "channel updates",
        format!("{} ({}/s)", win.updates, si(ups)),
    );
    t.row(
        "frames per client",
        format!("min {fmin}  median {fmed}  max {fmax} (incl. drain)"),
    );
    t.row(&format!("latency (1 frame in {})", o.sample), lat.line_ms());
    t.section("integrity");
    t.row(
        "rounds produced",
        format!("{rounds} (final round {final_round})"),
    );
    t.row(
        "updates received / written",
        format!(
            "{got_updates} / {expected_updates} ({:.1}%)",
            if expected_updates > 0 {
                got_updates as f64 * 100.0 / expected_updates as f64
            } else {
                0.0
            }
        ),
    );
    t.row("duplicates", fin.dups);
    t.row("rounds skipped (conflated)", fin.skipped);
    t.row(
        "LOST (held clients)",
        format!("{lost_clients} ({lost_pairs} client-channels below the final round)"),
    );
    if fin.no_round + fin.unknown_channel > 0 {
        t.row(
            "updates w/o round / unknown ch",
            format!("{} / {}", fin.no_round, fin.unknown_channel),
        );
    }
    if let Some(ws) = &wstats {
        t.row(
            "writer",
            format!(
                "{} rounds, {} late slots, {} errors, pipeline rtt p99 {} ms",
                ws.rounds,
                ws.late,
                ws.errors,
                crate::stats::fmt_ms(ws.rtt.quantile(0.99))
            ),
        );
    }
    t.section("server");
    match server.pid() {
        Some(pid) => {
            t.row("pid", pid);
            t.row(
                "RSS before / subscribed / end",
                format!(
                    "{} / {} / {} KiB",
                    rss_before.map_or("?".into(), |v| v.to_string()),
                    rss_after.map_or("?".into(), |v| v.to_string()),
                    rss_end.map_or("?".into(), |v| v.to_string())
                ),
            );
            t.row(
                "RSS per connection",
                rss_per_conn.map_or(
                    "n/a (RSS fell while connecting: memory from an earlier run was returned; \
                     restart the gateway for a clean baseline)"
                        .into(),
                    |v| format!("{v:.1} KiB"),
                ),
            );
        }
        None => {
            t.row("threads", format!("{:?}", cpu_res.server_threads.len()));
            if let (Some(a), Some(s), Some(e)) = (accepted, ceil_sends, ceil_errs) {
                t.row("accepted / sends / send errors", format!("{a} / {s} / {e}"));
            }
        }
    }
    if addrs.len() > 1 {
        let pids = server.pids();
        for (i, a) in addrs.iter().enumerate() {
            t.row(
                &format!("instance {a}"),
                format!(
                    "held {}  frames {} (run)  cpu {:.1}%  rss {} KiB",
                    per_instance[i].0,
                    per_instance[i].1,
                    instance_pct.get(i).copied().unwrap_or(0.0),
                    pids.get(i)
                        .and_then(|p| procfs::rss_kib(*p))
                        .map_or("?".into(), |v| v.to_string())
                ),
            );
        }
    }
    if let Some(p) = redis_pct {
        t.row("Redis CPU (window)", format!("{p:.1}%"));
    }
    report::cpu_rows(
        &mut t,
        &cpu_res,
        (
            "CPU per delivered frame",
            format!("{:.2} µs", per_frame(cpu_res.server_pct)),
        ),
        Some((
            "CPU per received frame",
            format!("{:.2} µs", per_frame(cpu_res.client_pct)),
        )),
        true,
        client_bound,
    );
    if lost_clients > 0 {
        t.warn(format!(
            "LOST: {lost_clients} held clients never received the final round on some channel"
        ));
    }
    if fin.dups > 0 {
        t.warn(format!(
            "{} duplicate updates (round not newer than the last seen)",
            fin.dups
        ));
    }
    if fin.unexpected_closes > 0 {
        t.warn(format!("{} unexpected closes", fin.unexpected_closes));
    }
    if subscribed < n as u64 {
        t.warn(format!(
            "only {subscribed} of {n} clients subscribed{}",
            if ramp_timed_out {
                " (ramp timed out)"
            } else {
                ""
            }
        ));
    }
    if let Some(ws) = &wstats {
        if ws.errors > 0 {
            t.warn(format!(
                "writer errors: {} (first: {})",
                ws.errors,
                ws.first_error.clone().unwrap_or_default()
            ));
        }
        if ws.late > 0 {
            t.warn(format!(
                "writer fell behind: {} round slots skipped",
                ws.late
            ));
        }
    }
    report::failure_rows(&mut t, &reasons, first_error.as_ref());

    let pids = server.pids();
    let instances_json: Vec<Value> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({
                "addr": a.to_string(), "pid": pids.get(i), "held_at_end": per_instance[i].0,
                "frames_run": per_instance[i].1,
                "cpu_pct": instance_pct.get(i).map(|v| round(*v, 1)),
                "rss_kib": pids.get(i).and_then(|p| procfs::rss_kib(*p)),
            })
        })
        .collect();
    let json = json!({
        "mode": mode,
        "target": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
        "instances": instances_json,
        "redis": {"pid": redis_pid, "cpu_pct": redis_pct.map(|v| round(v, 1))},
        "driver": drivers,
        "config": {
            "clients": n, "channels": o.channels, "channel_base": o.channel_base, "points": o.points,
            "interval_ms": o.interval, "rate_hz": o.rate_hz, "duration_s": o.duration,
            "threads": o.threads, "sources": sources, "mixed": o.mixed, "same_of": o.same_of, "sample": o.sample,
        },
        "connections": {
            "started": fin.started, "connected": at_window.tcp_connected, "subscribed": subscribed,
            "held_at_end": held, "connect_errors": fin.fail_connect, "upgrade_errors": fin.fail_upgrade,
            "setup_closed": fin.fail_setup, "setup_timeouts": fin.fail_timeout,
            "unexpected_closes": fin.unexpected_closes, "error_messages": fin.sub_errors,
            "ramp_s": round(ramp_secs, 2), "time_to_snapshot": snap.summary_ms(),
            "reasons": reasons,
        },
        "window": {
            "seconds": round(window_secs, 3), "frames": win.data_frames, "frames_per_s": round(fps, 1),
            "bytes_per_s": round(bps, 0), "updates": win.updates, "updates_per_s": round(ups, 1),
            "drain_frames": drain.data_frames,
            "frames_per_client": {"min": fmin, "median": fmed, "max": fmax},
            "latency": lat.summary_ms(),
        },
        "integrity": {
            "rounds": rounds, "final_round": final_round, "updates_received": got_updates,
            "updates_written": expected_updates, "duplicates": fin.dups, "rounds_skipped": fin.skipped,
            "lost_clients": lost_clients, "lost_client_channels": lost_pairs,
            "updates_without_round": fin.no_round, "unknown_channel_updates": fin.unknown_channel,
            "pings_answered": fin.pings,
            "writer": wstats.as_ref().map(|w| json!({
                "rounds": w.rounds, "late": w.late, "errors": w.errors, "first_error": w.first_error,
                "rtt": w.rtt.summary_ms(),
            })),
        },
        "server": {
            "pid": server.pid(),
            "rss_kib_before": rss_before, "rss_kib_subscribed": rss_after, "rss_kib_end": rss_end,
            "rss_kib_per_connection": rss_per_conn.map(|v| round(v, 2)),
            "cpu_pct": round(cpu_res.server_pct, 1),
            "cpu_us_per_frame": round(per_frame(cpu_res.server_pct), 3),
            "threads": report::threads_json(&cpu_res.server_threads),
            "accepted": accepted, "sends": ceil_sends, "send_errors": ceil_errs,
        },
        "client": {
            "cpu_pct": round(cpu_res.client_pct, 1),
            "cpu_us_per_frame": round(per_frame(cpu_res.client_pct), 3),
            "client_bound": client_bound,
            "threads": report::threads_json(&cpu_res.client_threads),
        },
        "warnings": t.warnings,
    });
    let title = format!("{mode} results");
    Ok((json, t.render(&title)))
}
