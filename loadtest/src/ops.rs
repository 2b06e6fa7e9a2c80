//! The operator paths under load: `ws-alarms` (N `general` clients that also receive 10 Hz
//! data pushes; K alarm rules toggled at a set event rate: write-to-screen latency, every
//! event on every client exactly once) and `control` (commands over many connections at a set
//! rate through a device side that reports at once: queued-ack and final-ack latency, exactly
//! one final ack per command). Plain blocking-free std sockets and tungstenite, one `poll(2)`
//! loop per client thread: the gateway, not the client, is what is measured.

use crate::net;
use crate::stats::Histogram;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::{Message, WebSocket};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn connect(addr: &str, path: &str) -> Result<WebSocket<TcpStream>, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).ok();
    let (ws, _) = tungstenite::client::client(format!("ws://{addr}{path}"), stream)
        .map_err(|e| format!("upgrade: {e}"))?;
    ws.get_ref()
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Waits until one of `socks` is readable or `timeout` passes.
fn poll_readable(socks: &[WebSocket<TcpStream>], timeout: Duration) {
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|w| libc::pollfd {
            fd: w.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the call's duration.
    unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis().min(1000) as i32,
        )
    };
}

/// Every text message `ws` has ready, without blocking.
fn drain(ws: &mut WebSocket<TcpStream>, mut on_text: impl FnMut(&str)) -> Result<(), String> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => on_text(t.as_str()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                let _ = ws.flush();
                return Ok(());
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn redis_con(url: &str) -> Result<redis::Connection, String> {
    net::loopback_redis(url)?;
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .map_err(|e| format!("redis {url}: {e}"))
}

fn fcall(
    con: &mut redis::Connection,
    f: &str,
    key: &str,
    arg: &str,
) -> Result<redis::Value, String> {
    redis::cmd("FCALL")
        .arg(f)
        .arg(1)
        .arg(key)
        .arg(arg)
        .query(con)
        .map_err(|e| format!("{f}: {e}"))
}

/// The entry ids of a stream range reply.
fn stream_ids(v: &redis::Value) -> Vec<String> {
    let redis::Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| match e {
            redis::Value::Array(e) => match e.first() {
                Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

pub struct AlarmOpts {
    pub addr: String,
    pub redis: String,
    pub clients: usize,
    pub rules: usize,
    pub events_per_sec: f64,
    pub duration: f64,
    pub threads: usize,
}

/// First channel of the rules' channels (each rule watches its channel's telemetry point 1).
const ALARM_BASE: u32 = 9000;

pub fn alarms(o: &AlarmOpts) -> Result<(Value, String), String> {
    let addr = net::loopback_addr(&o.addr)?.to_string();
    let mut con = redis_con(&o.redis)?;
    let channels: Vec<u32> = (0..o.rules as u32).map(|k| ALARM_BASE + k).collect();
    for ch in &channels {
        fcall(
            &mut con,
            "comsrv_write_data",
            &format!("comsrv:{ch}:T"),
            r#"{"1":0,"2":0}"#,
        )?;
        let rule = json!({"channel_id":ch,"data_type":"T","point_id":1,"operator":">",
                          "threshold":50,"level":2,"message":"load test"});
        fcall(
            &mut con,
            "alarmsrv_rule_save",
            &format!("alarm:rule:lt{ch}"),
            &rule.to_string(),
        )?;
    }
    std::thread::sleep(Duration::from_millis(300));
    // (channel, value written) -> when it was written, for the alarm that write causes.
    let written: Arc<Mutex<HashMap<(u32, i64), u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sub =
        json!({"type":"subscribe","data":{"channels":channels,"data_types":["T"],"interval":100}})
            .to_string();
    let per = o.clients.div_ceil(o.threads);
    let mut handles = Vec::new();
    for t in 0..o.threads {
        let n = per.min(o.clients.saturating_sub(t * per));
        let (addr, sub, stop, written) = (addr.clone(), sub.clone(), stop.clone(), written.clone());
        handles.push(std::thread::spawn(move || -> Result<_, String> {
            let mut socks = Vec::with_capacity(n);
            for _ in 0..n {
                let mut ws = connect(&addr, "/ws")?;
                ws.send(Message::text(sub.clone()))
                    .map_err(|e| e.to_string())?;
                socks.push(ws);
            }
            let mut hist = Histogram::default();
            let mut seen: Vec<HashMap<String, u32>> = vec![HashMap::new(); n];
            let mut data = 0u64;
            while !stop.load(Ordering::Relaxed) {
                poll_readable(&socks, Duration::from_millis(50));
                let now = now_us();
                for (i, ws) in socks.iter_mut().enumerate() {
                    drain(ws, |text| {
                        if text.starts_with(r#"{"type":"data_"#) {
                            data += 1;
                            return;
                        }
                        if !text.starts_with(r#"{"type":"alarm""#) {
                            return;
                        }
                        let Ok(m) = serde_json::from_str::<Value>(text) else {
                            return;
                        };
                        let d = &m["data"];
                        let id = d["event_id"].as_str().unwrap_or("").to_string();
                        *seen[i].entry(id).or_default() += 1;
                        let key = (
                            d["channel_id"].as_u64().unwrap_or(0) as u32,
                            d["value"].as_f64().unwrap_or(f64::NAN) as i64,
                        );
                        if let Some(at) = written.lock().unwrap().get(&key) {
                            hist.record(now.saturating_sub(*at));
                        }
                    })?;
                }
            }
            Ok((hist, seen, data))
        }));
    }
    // Let every client connect and take its snapshot before the clock starts.
    std::thread::sleep(Duration::from_millis(500 + o.clients as u64 * 2));
    let start_id: String = {
        let v: redis::Value = redis::cmd("XREVRANGE")
            .arg("alarm:events")
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        stream_ids(&v).pop().unwrap_or_else(|| "0-0".into())
    };
    // Writer: every rule channel at 10 Hz (data pushes); every 1/events_per_sec one of them
    // crosses the threshold (a trigger or a recovery), with a value unique to that write.
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(o.duration);
    let gap = Duration::from_secs_f64(1.0 / o.events_per_sec.max(0.1));
    let mut next_event = started;
    let mut next_tick = started;
    let mut state = vec![false; channels.len()];
    let (mut k, mut seq, mut events) = (0usize, 0i64, 0u64);
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_event {
            next_event += gap;
            seq += 1;
            state[k] = !state[k];
            let v = if state[k] { 100 + seq } else { -seq };
            written.lock().unwrap().insert((channels[k], v), now_us());
            fcall(
                &mut con,
                "comsrv_write_data",
                &format!("comsrv:{}:T", channels[k]),
                &format!(r#"{{"1":{v}}}"#),
            )?;
            events += 1;
            k = (k + 1) % channels.len();
        }
        if now >= next_tick {
            next_tick += Duration::from_millis(100);
            let mut pipe = redis::pipe();
            for ch in &channels {
                pipe.cmd("FCALL")
                    .arg("comsrv_write_data")
                    .arg(1)
                    .arg(format!("comsrv:{ch}:T"))
                    .arg(format!(r#"{{"2":{}}}"#, now_us() % 1000))
                    .ignore();
            }
            pipe.query::<()>(&mut con).map_err(|e| e.to_string())?;
        }
        std::thread::sleep(
            next_event
                .min(next_tick)
                .saturating_duration_since(Instant::now()),
        );
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    // The events the clients should have: everything appended since the start.
    let expected: Vec<String> = {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg("alarm:events")
            .arg(format!("({start_id}"))
            .arg("+")
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        stream_ids(&v)
    };
    let mut hist = Histogram::default();
    let (mut lost, mut dup, mut received, mut data) = (0u64, 0u64, 0u64, 0u64);
    for h in handles {
        let (th, seen, d) = h.join().map_err(|_| "client thread panicked")??;
        hist.merge(&th);
        data += d;
        for s in seen {
            for id in &expected {
                match s.get(id) {
                    None => lost += 1,
                    Some(&n) => {
                        received += 1;
                        dup += u64::from(n.saturating_sub(1));
                    }
                }
            }
        }
    }
    let secs = o.duration;
    let j = json!({
        "mode": "ws-alarms", "clients": o.clients, "rules": o.rules,
        "events": events, "events_in_log": expected.len(),
        "alarms_received": received, "lost": lost, "duplicates": dup,
        "latency": hist.summary_ms(), "data_frames_per_sec": (data as f64 / secs).round(),
    });
    let table = format!(
        "ws-alarms: {} general clients, {} rules, {} events in {secs} s ({} in the log)\n  \
         alarms received {received} (clients x events), lost {lost}, duplicates {dup}\n  \
         write-to-screen {}\n  data pushes alongside: {:.0} frames/s",
        o.clients,
        o.rules,
        events,
        expected.len(),
        hist.line_ms(),
        data as f64 / secs
    );
    Ok((j, table))
}

pub struct ControlOpts {
    pub addr: String,
    pub redis: String,
    pub connections: usize,
    pub rate: f64,
    pub duration: f64,
    pub threads: usize,
}

/// The device side: takes every queued command of 2001's `A` list and reports it executed.
fn device(url: String, stop: Arc<AtomicBool>) -> Result<u64, String> {
    let mut con = redis_con(&url)?;
    let mut served = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let raw: Option<Vec<String>> = redis::cmd("LPOP")
            .arg("comsrv:2001:A:TODO")
            .arg(500)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        let Some(raw) = raw else {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        };
        let mut pipe = redis::pipe();
        for r in &raw {
            let v: Value = serde_json::from_str(r).map_err(|e| e.to_string())?;
            pipe.cmd("FCALL")
                .arg("control_report")
                .arg(1)
                .arg(format!("cmd:{}", v["command_id"].as_str().unwrap_or("")))
                .arg(format!(
                    r#"{{"success":true,"actual_value":{}}}"#,
                    v["value"]
                ))
                .ignore();
        }
        pipe.query::<()>(&mut con).map_err(|e| e.to_string())?;
        served += raw.len() as u64;
    }
    Ok(served)
}

pub fn control(o: &ControlOpts) -> Result<(Value, String), String> {
    let addr = net::loopback_addr(&o.addr)?.to_string();
    let mut con = redis_con(&o.redis)?;
    fcall(
        &mut con,
        "comsrv_write_data",
        "comsrv:2001:A",
        r#"{"20":0}"#,
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let stop = Arc::new(AtomicBool::new(false));
    let dev = {
        let (url, stop) = (o.redis.clone(), stop.clone());
        std::thread::spawn(move || device(url, stop))
    };
    let per = o.connections.div_ceil(o.threads);
    let rate_per_thread = o.rate / o.threads as f64;
    let duration = Duration::from_secs_f64(o.duration);
    let mut handles = Vec::new();
    for t in 0..o.threads {
        let n = per.min(o.connections.saturating_sub(t * per)).max(1);
        let addr = addr.clone();
        handles.push(std::thread::spawn(move || -> Result<_, String> {
            let mut socks = Vec::with_capacity(n);
            for i in 0..n {
                socks.push(connect(&addr, &format!("/ws?client_id=lt_{t}_{i}&data_type=realtime"))?);
            }
            let mut sent_at: HashMap<String, u64> = HashMap::new();
            let (mut queued, mut finals) = (Histogram::default(), Histogram::default());
            let mut final_count: HashMap<String, u32> = HashMap::new();
            let (mut sent, mut errors) = (0u64, 0u64);
            let gap = Duration::from_secs_f64(1.0 / rate_per_thread.max(0.1));
            let started = Instant::now();
            let mut next = started;
            let mut rr = 0usize;
            // Sends for `duration`, then waits up to 3 s for the last final acks.
            while started.elapsed() < duration + Duration::from_secs(3) {
                while started.elapsed() < duration && Instant::now() >= next {
                    next += gap;
                    let id = format!("c{t}_{sent}");
                    let msg = format!(
                        r#"{{"type":"control","id":"{id}","data":{{"channel_id":2001,"point_id":20,"command_type":"set_value","value":{sent}}}}}"#
                    );
                    sent_at.insert(id, now_us());
                    socks[rr].send(Message::text(msg)).map_err(|e| e.to_string())?;
                    rr = (rr + 1) % socks.len();
                    sent += 1;
                }
                if started.elapsed() >= duration && final_count.len() as u64 >= sent {
                    break;
                }
                poll_readable(&socks, next.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
                let now = now_us();
                for ws in socks.iter_mut() {
                    drain(ws, |text| {
                        if text.starts_with(r#"{"type":"error""#) {
                            errors += 1;
                            return;
                        }
                        if !text.starts_with(r#"{"type":"control_ack""#) {
                            return;
                        }
                        let Ok(m) = serde_json::from_str::<Value>(text) else { return };
                        let d = &m["data"];
                        let rid = d["request_id"].as_str().unwrap_or("").to_string();
                        let Some(at) = sent_at.get(&rid) else { return };
                        if d["status"] == "queued" {
                            queued.record(now.saturating_sub(*at));
                        } else {
                            finals.record(now.saturating_sub(*at));
                            *final_count.entry(rid).or_default() += 1;
                        }
                    })?;
                }
            }
            Ok((sent, errors, queued, finals, final_count))
        }));
    }
    let mut sent = 0u64;
    let mut errors = 0u64;
    let (mut queued, mut finals) = (Histogram::default(), Histogram::default());
    let (mut answered, mut twice) = (0u64, 0u64);
    for h in handles {
        let (s, e, q, f, counts) = h.join().map_err(|_| "client thread panicked")??;
        sent += s;
        errors += e;
        queued.merge(&q);
        finals.merge(&f);
        answered += counts.len() as u64;
        twice += counts.values().filter(|n| **n > 1).count() as u64;
    }
    stop.store(true, Ordering::Relaxed);
    let served = dev.join().map_err(|_| "device thread panicked")??;
    let secs = o.duration;
    let j = json!({
        "mode": "control", "connections": o.connections, "commands": sent,
        "commands_per_sec": (sent as f64 / secs).round(), "errors": errors,
        "device_served": served, "final_acks": answered, "without_final_ack": sent - answered.min(sent),
        "more_than_one_final_ack": twice,
        "queued_ack": queued.summary_ms(), "final_ack": finals.summary_ms(),
    });
    let table = format!(
        "control: {} connections, {sent} commands in {secs} s ({:.0}/s), errors {errors}\n  \
         final acks {answered} (without one: {}, more than one: {twice}), device served {served}\n  \
         queued ack {}\n  final ack  {}",
        o.connections,
        sent as f64 / secs,
        sent - answered.min(sent),
        queued.line_ms(),
        finals.line_ms()
    );
    Ok((j, table))
}
