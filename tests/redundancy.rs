//! Redundancy end to end on the loopback: a Sentinel-watched Redis (master, replica, three
//! sentinels) whose master is killed while the gateway serves clients.

mod common;
#[path = "common/sentinel.rs"]
mod sentinel;
#[path = "common/ws.rs"]
mod wsc;

use common::*;
use sentinel::SentinelSite;
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};
use voltage_gateway::config::DriverKind;
use wsc::Client;

/// The next message `pred` accepts, waiting at most until `deadline`.
fn recv_until(c: &mut Client, deadline: Instant, pred: impl Fn(&Json) -> bool) -> Json {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "nothing wanted arrived in time");
        c.ws.get_mut().set_read_timeout(Some(left)).unwrap();
        let m = c.recv();
        if pred(&m) {
            return m;
        }
    }
}

/// 1001 T 1 as REST serves it (null before the channel is loaded).
fn realtime_t1(addr: std::net::SocketAddr) -> Json {
    let r = get(addr, "/api/channels/1001/realtime?data_type=T");
    if r.status != 200 {
        return Json::Null;
    }
    r.json()["data"][0]["values"]["1"].clone()
}

#[test]
fn a_sentinel_failover_is_followed_and_nothing_stale_is_shown_as_live() {
    let mut site = SentinelSite::start();
    let mut cfg = config(&site.url(), DriverKind::Auto);
    cfg.reconnect_max_ms = 1000;
    let gw = voltage_gateway::Server::start(cfg).expect("gateway starts");
    let addr = gw.local_addr();
    wait_until("redis healthy", Duration::from_secs(10), || {
        gw.published().redis.load().healthy
    });
    let first = site.master_port().expect("the sentinels name a master");
    let mut con = redis_con(site.server_on(first));
    write(&mut con, "comsrv:1001:T", r#"{"1":1}"#, None);
    write(&mut con, "comsrv:1002:T", r#"{"1":1}"#, None);
    let replicated: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert_eq!(replicated, 1, "the writes reached the replica");
    wait_until("values served", Duration::from_secs(5), || {
        realtime_t1(addr) == 1 && channel_ids(addr) == [1001, 1002]
    });
    // The replica never got 1002 (as if promoted before the write reached it): the gateway
    // must not keep showing it once it follows the failover.
    let replica = site
        .servers
        .iter()
        .map(|s| s.port())
        .find(|p| *p != first)
        .unwrap();
    let mut behind = redis_con(site.server_on(replica));
    redis::pipe()
        .cmd("DEL")
        .arg("comsrv:1002:T")
        .cmd("ZREM")
        .arg("netsrv:dirty")
        .arg("comsrv:1002:T")
        .query::<()>(&mut behind)
        .unwrap();

    let (mut c, _) = Client::connect(addr, "/ws");
    c.send(r#"{"type":"subscribe","data":{"channels":[1001],"data_types":["T"],"interval":100}}"#);
    c.recv_type("subscribe_ack");

    site.server_on(first).kill();
    let killed = Instant::now();
    // No master answers: told, and REST never calls the last values live.
    let s = recv_until(&mut c, killed + Duration::from_secs(5), |m| {
        m["type"] == "status"
    });
    assert_eq!(s["data"]["source"], "degraded", "{s}");
    assert_eq!(
        get_ok(addr, "/api/channels/1001/status")["data"]["status"],
        "unavailable"
    );
    assert_eq!(get(addr, "/health/ready").status, 503);

    let mut second = None;
    wait_until(
        "the sentinels promote the replica",
        Duration::from_secs(30),
        || {
            second = site.master_port().filter(|p| *p != first);
            second.is_some()
        },
    );
    let switched = Instant::now();
    let second = second.unwrap();
    assert_eq!(second, replica);
    // The promoted replica takes writes; they reach the client and REST.
    let mut con = redis_con(site.server_on(second));
    write(&mut con, "comsrv:1001:T", r#"{"1":2}"#, None);
    let m = recv_until(&mut c, switched + Duration::from_secs(10), |m| {
        m["type"] == "data_update" && m["data"]["values"]["1"] == 2
    });
    let served = switched.elapsed();
    assert_eq!(m["data"]["channel_id"], 1001);
    wait_until("healthy after the switch", Duration::from_secs(5), || {
        let r = get(addr, "/api/channels/1001/status");
        r.status == 200 && r.json()["data"]["status"] == "active"
    });
    assert_eq!(realtime_t1(addr), 2);
    assert_eq!(
        channel_ids(addr),
        [1001],
        "what the new master lacks is gone"
    );
    assert_eq!(get(addr, "/health/ready").status, 200);
    let detailed = get_ok(addr, "/health/detailed");
    assert_eq!(detailed["data"]["status"], "healthy", "{detailed}");
    eprintln!(
        "failover: master killed -> sentinels switched {:.1} s; switch -> new write at the client {:.2} s",
        (switched - killed).as_secs_f64(),
        served.as_secs_f64()
    );
}

#[test]
fn a_master_name_no_sentinel_knows_is_reported() {
    let site = SentinelSite::start();
    let url = site.url().replace("/site", "/nosuchsite");
    let cfg = config(&url, DriverKind::Auto);
    let gw = voltage_gateway::Server::start(cfg).expect("gateway starts");
    let addr = gw.local_addr();
    wait_until("the reason is shown", Duration::from_secs(10), || {
        let d = get_ok(addr, "/health/detailed");
        d["data"]["dependencies"]["redis"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no sentinel names the master 'nosuchsite'"))
    });
    assert_eq!(get(addr, "/health/ready").status, 503);
}

/// HAProxy with the shipped configuration in front of `gateways`, on a free loopback port.
struct Proxy {
    _guard: Guard,
    addr: std::net::SocketAddr,
}

impl Proxy {
    fn start(gateways: &[std::net::SocketAddr]) -> Proxy {
        let port = free_port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = std::process::Command::new("haproxy");
        // SAFETY: prctl only touches the child's own state.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let gw = |i: usize| gateways[i.min(gateways.len() - 1)].to_string();
        let child = cmd
            .args(["-db", "-n", "9000", "-f"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tuning/redundant/haproxy.cfg"
            ))
            .env("VOLTAGE_LISTEN", addr.to_string())
            .env("VOLTAGE_GW1", gw(0))
            .env("VOLTAGE_GW2", gw(1))
            .env("VOLTAGE_GW3", gw(2))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy must be installed (./setup.sh test)");
        let p = Proxy {
            _guard: Guard(child),
            addr,
        };
        wait_until("haproxy answers", Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_ok() && get(addr, "/health/ready").status == 200
        });
        p
    }
}

/// What one drill client saw over all its connections.
#[derive(Default, Debug)]
struct Seen {
    connections: u32,
    /// Values of 1001 T 1 that went back (a value older than one already seen).
    regressions: Vec<(i64, i64)>,
    last_value: i64,
    alarm_events: Vec<String>,
    /// The command it sent, and every final ack of it.
    command: Option<String>,
    finals: Vec<String>,
    /// Why each connection ended.
    ends: Vec<String>,
}

/// A viewer that reconnects at once (same client id, `alarms_since` its last alarm event)
/// until `stop`; with `control`, it sends one command on its first connection.
fn drill_client(
    i: usize,
    proxy: std::net::SocketAddr,
    control: bool,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Seen {
    use std::sync::atomic::Ordering;
    use tungstenite::Message;
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        let mut path = format!("/ws?client_id=drill_{i}");
        if let Some(last) = seen.alarm_events.last() {
            path.push_str(&format!("&alarms_since={last}"));
        }
        let Ok(stream) = std::net::TcpStream::connect(proxy) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let Ok((mut ws, _)) = tungstenite::client::client(format!("ws://{proxy}{path}"), stream)
        else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        seen.connections += 1;
        let subscribe =
            r#"{"type":"subscribe","data":{"channels":[1001],"data_types":["T"],"interval":100}}"#;
        if ws.send(Message::text(subscribe)).is_err() {
            continue;
        }
        // Until it is acknowledged as queued, the command is sent again on each connection
        // (the same request id: the same command, never queued twice).
        if control && seen.command.is_none() {
            let c = json!({"type":"control","id":format!("drill_cmd_{i}"),"data":{"channel_id":2001,"point_id":20,"command_type":"set_value","value":i}});
            if ws.send(Message::text(c.to_string())).is_err() {
                continue;
            }
        }
        while !stop.load(Ordering::Relaxed) {
            let m = match ws.read() {
                Ok(Message::Text(t)) => serde_json::from_str::<Json>(t.as_str()).unwrap(),
                Ok(
                    Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_),
                ) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Ok(Message::Close(f)) => {
                    seen.ends.push(format!("close {f:?}"));
                    break;
                }
                Err(e) => {
                    seen.ends.push(format!("{e}"));
                    break;
                }
            };
            match m["type"].as_str().unwrap_or("") {
                "data_update" | "snapshot" => {
                    if let Some(v) = m["data"]["values"]["1"].as_i64() {
                        if v < seen.last_value {
                            seen.regressions.push((seen.last_value, v));
                        }
                        seen.last_value = seen.last_value.max(v);
                    }
                }
                "alarm" => {
                    if let Some(e) = m["data"]["event_id"].as_str() {
                        seen.alarm_events.push(e.to_string());
                    }
                }
                "control_ack" => match m["data"]["status"].as_str() {
                    Some("queued") => {
                        seen.command = m["data"]["command_id"].as_str().map(str::to_string)
                    }
                    Some(s) => seen.finals.push(format!(
                        "{} {s}",
                        m["data"]["command_id"].as_str().unwrap_or("")
                    )),
                    None => {}
                },
                _ => {}
            }
        }
    }
    seen
}

const DRILL_CLIENTS: usize = 500;
const DRILL_SENDERS: usize = 50;

#[test]
fn a_gateway_killed_behind_haproxy_loses_no_alarm_no_ack_and_shows_nothing_older() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let redis = redis();
    let mut con = redis_con(&redis);
    let toml = |id: &str| {
        format!(
            "[auth]\nanonymous_role = \"operator\"\nsecret = \"a drill secret that is at least 32 bytes\"\n\
             [control]\ninstance_id = \"{id}\"\ntimeout_ms = 3000\nmax_per_sec = 1000\nburst = 1000\n"
        )
    };
    let mut a = GatewayProcess::spawn(&redis, &toml("drill_a"));
    let b = GatewayProcess::spawn(&redis, &toml("drill_b"));
    write(&mut con, "comsrv:1001:T", r#"{"1":0,"2":0}"#, None);
    write(&mut con, "comsrv:2001:A", r#"{"20":0}"#, None);
    redis::cmd("FCALL")
        .arg("alarmsrv_rule_save")
        .arg(1)
        .arg("alarm:rule:drill")
        .arg(json!({"channel_id":1001,"data_type":"T","point_id":2,"operator":">","threshold":50,"level":2}).to_string())
        .query::<i64>(&mut con)
        .unwrap();
    let proxy = Proxy::start(&[a.addr, b.addr]);
    for gw in [a.addr, b.addr] {
        wait_until("1001 on both", Duration::from_secs(5), || {
            get(gw, "/api/channels/1001/status").status == 200
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..DRILL_CLIENTS)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || drill_client(i, proxy.addr, false, stop))
        })
        .collect();
    let open = |gw| {
        get_ok(gw, "/health/detailed")["data"]["websockets_per_shard"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    wait_until("all connected", Duration::from_secs(30), || {
        open(a.addr) + open(b.addr) == DRILL_CLIENTS as u64
    });
    let on_a = open(a.addr);
    assert!(
        on_a > 0 && open(b.addr) > 0,
        "spread over both: {on_a} on a"
    );

    // The site moves: 1001 T 1 counts up every 20 ms, 1001 T 2 crosses the alarm threshold
    // every 200 ms (an alarm and its recovery).
    let writer = {
        let stop = stop.clone();
        let url = redis.url();
        std::thread::spawn(move || {
            let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let hot = if (n / 10) % 2 == 1 { 60 } else { 40 };
                write(
                    &mut con,
                    "comsrv:1001:T",
                    &format!(r#"{{"1":{n},"2":{hot}}}"#),
                    None,
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };
    // The device: executes every command 1 s after it was queued, except every fourth,
    // which it never reports (a timeout, swept by whichever gateway lives).
    let device = {
        let stop = stop.clone();
        let url = redis.url();
        std::thread::spawn(move || {
            let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut waiting: Vec<(Instant, String)> = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let popped: Option<String> = redis::cmd("LPOP")
                    .arg("comsrv:2001:A:TODO")
                    .query(&mut con)
                    .unwrap();
                if let Some(p) = popped {
                    let v: Json = serde_json::from_str(&p).unwrap();
                    n += 1;
                    if n % 4 != 0 {
                        waiting.push((Instant::now(), v["command_id"].as_str().unwrap().into()));
                    }
                }
                while waiting
                    .first()
                    .is_some_and(|(t, _)| t.elapsed() > Duration::from_secs(1))
                {
                    let (_, id) = waiting.remove(0);
                    let _: String = redis::cmd("FCALL")
                        .arg("control_report")
                        .arg(1)
                        .arg(format!("cmd:{id}"))
                        .arg(r#"{"success":true,"actual_value":1}"#)
                        .query(&mut con)
                        .unwrap();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // Senders, connected like the others, each send one command on connecting: spread over
    // the second before the kill.
    let senders: Vec<_> = (0..DRILL_SENDERS)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(20));
            let stop = stop.clone();
            std::thread::spawn(move || drill_client(DRILL_CLIENTS + i, proxy.addr, true, stop))
        })
        .collect();
    a.kill();
    let killed = Instant::now();
    eprintln!(
        "drill: killed at {}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    wait_until("a's clients served by b", Duration::from_secs(10), || {
        open(b.addr) == (DRILL_CLIENTS + DRILL_SENDERS) as u64
    });
    let moved = killed.elapsed();
    // Timeouts (3 s) and the device's last reports come in; then everything stops.
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let last = writer.join().unwrap();
    device.join().unwrap();
    let seen: Vec<Seen> = clients
        .into_iter()
        .chain(senders)
        .map(|t| t.join().unwrap())
        .collect();

    // Every alarm event from the first each client saw, once each, in order.
    let all: Vec<String> = {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg("alarm:events")
            .arg("-")
            .arg("+")
            .query(&mut con)
            .unwrap();
        let redis::Value::Array(entries) = v else {
            panic!()
        };
        entries
            .into_iter()
            .map(|e| match e {
                redis::Value::Array(mut p) => match p.remove(0) {
                    redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert!(
        all.len() >= 10,
        "the alarm fired and recovered: {}",
        all.len()
    );
    let reconnected = seen.iter().filter(|s| s.connections > 1).count();
    assert!(
        reconnected as u64 >= on_a,
        "a's {on_a} clients reconnected: {reconnected}"
    );
    for (i, s) in seen.iter().enumerate() {
        assert!(
            s.regressions.is_empty(),
            "client {i} saw older values: {:?}",
            s.regressions
        );
        let Some(first) = s.alarm_events.first() else {
            panic!("client {i} saw no alarm");
        };
        let from = all.iter().position(|e| e == first).unwrap();
        let mut sorted = s.alarm_events.clone();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            s.alarm_events.len(),
            "client {i} ({} connections) got an alarm twice: {:?} of {:?}",
            s.connections,
            s.alarm_events,
            &all[from..]
        );
        // (Events after the stop may not have reached it.)
        let want = &all[from..from + s.alarm_events.len()];
        assert_eq!(
            s.alarm_events, want,
            "client {i}: every alarm once, in order"
        );
        assert!(
            all.len() - from - s.alarm_events.len() <= 2,
            "client {i} missed alarms: saw {} of {}",
            s.alarm_events.len(),
            all.len() - from
        );
    }
    let mut lost_in_kill = 0;
    for (i, s) in seen.iter().enumerate().skip(DRILL_CLIENTS) {
        let cmd = s
            .command
            .as_deref()
            .unwrap_or_else(|| panic!("sender {i} got no queued ack"));
        let record: Vec<String> = redis::cmd("HGETALL")
            .arg(format!("cmd:{cmd}"))
            .query(&mut con)
            .unwrap();
        let parked: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("ctl:acks:drill_{i}"))
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        let why = format!(
            "sender {i} ({} connections, ended {:?}): {cmd}: {:?}; record {record:?}; waiting {parked:?}",
            s.connections, s.ends, s.finals
        );
        assert!(s.finals.len() <= 1, "never twice: {why}");
        if s.finals.is_empty() {
            // Not yet exactly once: an ack the killed gateway took from Redis in its last
            // milliseconds (before its shard wrote it) dies with it (0-1 of 50 per run seen;
            // before acks waited for a sign of life and went back from ended connections,
            // 1-6). Counted, bounded below.
            eprintln!("drill: no final ack: {why}");
            lost_in_kill += 1;
            continue;
        }
        assert!(s.finals[0].starts_with(cmd), "{:?}", s.finals);
        assert!(
            s.finals[0].ends_with(" executed") || s.finals[0].ends_with(" timeout"),
            "{:?}",
            s.finals
        );
    }
    assert!(
        lost_in_kill <= 3,
        "{lost_in_kill} of {DRILL_SENDERS} final acks lost"
    );
    let moved_senders = seen[DRILL_CLIENTS..]
        .iter()
        .filter(|s| s.connections > 1)
        .count();
    drop(b);
    eprintln!(
        "drill: {} clients, {on_a} on the killed gateway, all on the other {:.2} s after the kill; {moved_senders} of {DRILL_SENDERS} senders moved with their command, {lost_in_kill} final acks lost; {} writes, {} alarm events",
        DRILL_CLIENTS + DRILL_SENDERS,
        moved.as_secs_f64(),
        last,
        all.len()
    );
}
