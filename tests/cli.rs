//! The binary as an operator runs it: flags, start-up errors, signals, the demo.

mod common;
#[path = "common/ws.rs"]
mod wsc;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn help_explains_every_option() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--redis",
        "--shards",
        "--driver",
        "--tick-ms",
        "--config",
        "--no-load-functions",
        "serve",
        "demo",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn serve_with_each_driver_and_stop_on_sigterm() {
    let redis = redis();
    for driver in ["uring", "legacy"] {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--redis", &redis.url(), "--driver", driver, "--shards", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (mut guard, addr, log) = spawn_listening(cmd);
        let child = &mut guard.0;
        wait_ready(addr);
        let mut con = redis_con(&redis);
        write(&mut con, "comsrv:1001:T", r#"{"1":25.6}"#, None);
        wait_until("write visible", Duration::from_secs(2), || {
            get(addr, "/api/channels/1001/realtime").status == 200
        });
        signal(child, libc::SIGTERM);
        let st = wait_exit(child, Duration::from_secs(5));
        assert!(st.success(), "{driver}: {st}");
        let err = log.lock().unwrap().clone();
        let expect = if driver == "uring" {
            "io_uring driver"
        } else {
            "legacy (epoll) driver"
        };
        assert!(err.contains(expect), "{err}");
    }
}

#[test]
fn taken_port_is_a_clear_startup_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis",
            "redis://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn a_gateway_restarted_at_once_after_sigkill_or_exit_gets_its_port_back() {
    let redis = redis();
    let serve = |listen: &str, driver: &str| {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", listen])
            .args(["--redis", &redis.url(), "--driver", driver, "--shards", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        spawn_listening(cmd)
    };
    for driver in ["uring", "legacy"] {
        let (mut guard, addr, _) = serve("127.0.0.1:0", driver);
        for (round, sig) in [libc::SIGKILL, libc::SIGKILL, libc::SIGTERM, libc::SIGKILL]
            .into_iter()
            .enumerate()
        {
            wait_ready(addr);
            // Open clients keep operations in flight on the old process's sockets.
            let clients: Vec<_> = (0..4).map(|_| wsc::Client::connect(addr, "/ws")).collect();
            signal(&guard.0, sig);
            // Restarted the moment it is gone, as a supervisor does.
            guard.0.wait().unwrap();
            let started = Instant::now();
            let (next, again, log) = serve(&addr.to_string(), driver);
            drop(clients);
            assert_eq!(
                again,
                addr,
                "{driver} round {round}: {}",
                log.lock().unwrap()
            );
            wait_ready(addr);
            assert!(
                started.elapsed() < Duration::from_secs(6),
                "{driver} round {round}: {:?}",
                started.elapsed()
            );
            guard = next;
        }
    }
}

#[test]
fn logs_are_json_lines_or_text_at_the_chosen_level() {
    // JSON lines: every line an object with time, level and message.
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--redis",
        "redis://127.0.0.1:1",
        "--shards",
        "1",
    ])
    .args(["--log-format", "json"])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let (mut guard, _addr, log) = spawn_listening(cmd);
    std::thread::sleep(Duration::from_millis(300));
    signal(&guard.0, libc::SIGTERM);
    wait_exit(&mut guard.0, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    let text = log.lock().unwrap().clone();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let levels: Vec<&str> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert!(
        levels.contains(&"INFO") && levels.contains(&"WARN"),
        "{text}"
    );
    assert!(lines
        .iter()
        .all(|l| l["time"].as_str().unwrap().ends_with('Z') && l["message"].is_string()));
    // Text at level error: a failed start-up says only its error.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis",
            "redis://127.0.0.1:1",
        ])
        .args(["--log-level", "error"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(" ERROR ") && err.contains("already in use"),
        "{err}"
    );
}

#[test]
fn bad_configuration_is_refused() {
    let dir = std::env::temp_dir().join(format!("vg-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "tick_ms = 0\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tick_ms"));
    std::fs::write(&file, "unknown_option = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_option"));
    // The example configuration shipped with the project is valid as written.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/voltage-gateway.example.toml");
    voltage_gateway::Config::load(
        Some(std::path::Path::new(example)),
        &voltage_gateway::config::Overrides::default(),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn demo_serves_a_live_site_and_stops_everything_on_ctrl_c() {
    if voltage_gateway::demo::redis_process::find_on_path("redis-server").is_none() {
        panic!("redis-server must be installed");
    }
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut guard, addr, _log) = spawn_listening(cmd);
    let child = &mut guard.0;
    wait_ready(addr);
    wait_until("seed channels", Duration::from_secs(5), || {
        let ids = channel_ids(addr);
        ids.len() >= 24 && [1001, 1002, 2001].iter().all(|id| ids.contains(id))
    });
    // The demo's model channel (the PV plant's total power) is served like the others.
    wait_until("model channel 5000", Duration::from_secs(5), || {
        channel_ids(addr).contains(&5000)
    });
    // The seed's examples work against the demo as written.
    let t = get_ok(addr, "/api/channels/1001/realtime?data_type=T");
    assert!(t["data"][0]["values"]["1"].is_number());
    let s = get_ok(addr, "/api/channels/1002/realtime?data_type=S");
    assert!(s["data"][0]["values"]["10"].is_number());
    let a = get_ok(addr, "/api/channels/2001/realtime?data_type=A&point_id=20");
    assert_eq!(a["data"][0]["values"]["20"], 50);
    // Live: 1001's values keep changing (5 Hz) and last_update advances.
    let first = get_ok(addr, "/api/channels/1001/status")["data"]["last_update"]
        .as_i64()
        .unwrap();
    wait_until("last_update advances", Duration::from_secs(4), || {
        get_ok(addr, "/api/channels/1001/status")["data"]["last_update"]
            .as_i64()
            .unwrap()
            > first
    });
    // An operator's minute: an alarm shows up (the demo's rules fire as values move) and the
    // seed's control makes a round trip through the simulated device.
    let (mut c, _) = wsc::Client::connect(addr, "/ws?client_id=newcomer");
    c.send(r#"{"type":"control","id":"ctrl_001","timestamp":"2025-08-12T10:30:00Z","data":{"channel_id":2001,"point_id":20,"command_type":"set_value","value":50.0,"operator":"user_001","reason":"Production adjustment"}}"#);
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let (mut queued, mut done, mut alarm) = (None, None, None);
    while (queued.is_none() || done.is_none() || alarm.is_none())
        && std::time::Instant::now() < deadline
    {
        for (_, m) in c.collect_for(Duration::from_millis(500)) {
            match (m["type"].as_str(), m["data"]["status"].as_str()) {
                (Some("control_ack"), Some("queued")) => queued = Some(m),
                (Some("control_ack"), Some(_)) => done = Some(m),
                (Some("alarm"), _) => alarm = Some(m),
                _ => {}
            }
        }
    }
    let queued = queued.expect("control_ack queued");
    let done = done.expect("a final control_ack from the simulated device");
    assert_eq!(done["data"]["command_id"], queued["data"]["command_id"]);
    let status = done["data"]["status"].as_str().unwrap();
    assert!(status == "executed" || status == "failed", "{done}");
    assert_eq!(done["data"]["result"]["success"], status == "executed");
    let alarm = alarm.expect("an alarm within the demo's first minute");
    assert!(alarm["data"]["alarm_id"]
        .as_str()
        .unwrap()
        .starts_with("ALM_"));
    // The same by hand, with the binary's own client.
    let watched = Command::new(BIN)
        .args([
            "watch",
            &format!("ws://{addr}/ws?data_type=alarm"),
            "--seconds",
            "2",
        ])
        .args(["--send", r#"{"type":"ping","id":"ping_001"}"#])
        .output()
        .unwrap();
    assert!(watched.status.success(), "{watched:?}");
    let lines = String::from_utf8(watched.stdout).unwrap();
    assert!(
        lines
            .lines()
            .next()
            .unwrap()
            .contains(r#""type":"connected""#),
        "{lines}"
    );
    assert!(lines.contains(r#""id":"pong_001""#), "{lines}");
    let mut out = String::new();
    signal(child, libc::SIGINT);
    let st = wait_exit(child, Duration::from_secs(8));
    assert!(st.success(), "{st}");
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("/api/channels"), "{out}");
    // The private redis-server went with it.
    let redis_port: u16 = out
        .split("redis://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("demo prints its Redis URL");
    assert!(std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err());
}

#[test]
fn the_redis_password_is_not_logged() {
    let redis = redis();
    let url = format!("redis://:topsecret-pw@127.0.0.1:{}", redis.port());
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--redis", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (mut guard, _addr, log) = spawn_listening(cmd);
    // Redis has no password, so the feed's AUTH fails and is logged as well.
    std::thread::sleep(Duration::from_millis(500));
    signal(&guard.0, libc::SIGTERM);
    wait_exit(&mut guard.0, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    let err = log.lock().unwrap().clone();
    assert!(err.contains("redis://:***@127.0.0.1"), "{err}");
    assert!(!err.contains("topsecret"), "{err}");
}

/// Whether the gateway refused a connection: the 503 arrives at once, an accepted idle
/// connection has nothing to read.
fn refused(s: &mut std::net::TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    match std::io::Read::read(s, &mut buf) {
        Ok(n) if n > 0 => {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.contains("TOO_MANY_CONNECTIONS"), "{text}");
            true
        }
        _ => false,
    }
}

#[test]
fn clients_cannot_take_the_descriptors_redis_needs() {
    let mut redis = redis();
    // A hard limit of 200 descriptors: the gateway keeps 72 back (2 shards) for Redis and
    // its own, so at most 128 clients.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 200 && exec {BIN} --listen 127.0.0.1:0 --redis {} --shards 2",
            redis.url()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (mut guard, addr, log) = spawn_listening(cmd);
    wait_ready(addr);
    let mut held: Vec<_> = (0..250)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let mut refusals = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.len() > 128 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let before = held.len();
        held.retain_mut(|s| !refused(s));
        refusals += before - held.len();
    }
    std::thread::sleep(Duration::from_millis(300));
    held.retain_mut(|s| !refused(s));
    assert_eq!(held.len(), 128, "{refusals} refused");
    // Redis goes away and comes back while every client slot is taken: the gateway still
    // has the descriptors to reconnect, and data flows again.
    redis.restart().unwrap();
    held.truncate(120);
    std::thread::sleep(Duration::from_millis(200));
    let mut con = wait_for_redis_con(&redis);
    wait_until("reconnected", Duration::from_secs(10), || {
        get(addr, "/health/detailed").json()["data"]["status"] == "healthy"
    });
    write(&mut con, "comsrv:7:T", r#"{"1":42}"#, None);
    wait_until("data flows", Duration::from_secs(5), || {
        get(addr, "/api/channels/7/realtime").status == 200
    });
    signal(&guard.0, libc::SIGTERM);
    wait_exit(&mut guard.0, Duration::from_secs(5));
    let err = log.lock().unwrap().clone();
    assert!(
        err.contains("at most 128 connections (200 file descriptors"),
        "{err}"
    );
}

/// A connection to a freshly restarted Redis (the gateway reloads the library on connect).
fn wait_for_redis_con(redis: &voltage_gateway::demo::RedisProcess) -> redis::Connection {
    let mut con = redis_con(redis);
    wait_until("library loaded", Duration::from_secs(10), || {
        redis::cmd("FUNCTION")
            .arg("LIST")
            .query::<redis::Value>(&mut con)
            .is_ok_and(|v| matches!(v, redis::Value::Array(a) if !a.is_empty()))
    });
    con
}

/// CPU time (ns) the gateway's shard threads have used, from `/proc/{pid}/task/*/schedstat`.
fn shard_cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.starts_with("shard-") {
            let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Sends a request head of `size` bytes one byte per packet (each read sees one new byte)
/// and returns the shard CPU it cost.
fn head_byte_by_byte_cpu(pid: u32, addr: std::net::SocketAddr, size: usize) -> Duration {
    let mut head = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
    while head.len() < size - 2 {
        let n = (size - 2 - head.len() - 4).clamp(1, 1000);
        head.extend_from_slice(b"X: ");
        head.extend(std::iter::repeat_n(b'a', n));
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let before = shard_cpu_ns(pid);
    for b in &head {
        std::io::Write::write_all(&mut s, std::slice::from_ref(b)).unwrap();
        // Long enough for the shard to read each byte on its own.
        std::thread::sleep(Duration::from_micros(50));
    }
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200, "{size}-byte head answered");
    Duration::from_nanos(shard_cpu_ns(pid) - before)
}

#[test]
fn a_head_sent_one_byte_at_a_time_costs_cpu_in_proportion_to_its_size() {
    let redis = redis();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--redis", &redis.url(), "--shards", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (guard, addr, _log) = spawn_listening(cmd);
    wait_ready(addr);
    let pid = guard.0.id();
    // Re-scanning the whole head on every read costs O(n²): 7.5× the bytes would cost ~56×
    // (measured: 30× with the per-read overhead). Resuming where the last read stopped costs
    // O(n): ~7.5×.
    let small = head_byte_by_byte_cpu(pid, addr, 2 * 1024);
    let large = head_byte_by_byte_cpu(pid, addr, 15 * 1024);
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    eprintln!("2 KB head: {small:?}, 15 KB head: {large:?}, ratio {ratio:.1}");
    assert!(ratio < 15.0, "CPU grows faster than the head: {ratio:.1}×");
}

/// `setup.sh` (README's first step, `.ci/run`'s too) on a machine that has `present`: what it
/// asks apt-get to install (`None`: apt-get not run).
fn setup_installs(what: &str, present: &[&str]) -> (Option<String>, String) {
    let dir = std::env::temp_dir().join(format!(
        "voltage-setup-{}-{what}-{}",
        std::process::id(),
        present.len()
    ));
    let bin = dir.join("bin");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&bin).unwrap();
    let script = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // apt-get records what it was asked; the tools the script itself uses are the real ones.
    let log = dir.join("apt.log");
    script("apt-get", &format!("echo \"$@\" >> {}", log.display()));
    for tool in ["id", "sed", "tail"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bin.join(tool)).unwrap();
    }
    for p in present {
        script(p, "exit 0");
    }
    let out = Command::new("/bin/bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/setup.sh"))
        .arg(what)
        .env("PATH", &bin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let asked = std::fs::read_to_string(&log).ok().and_then(|l| {
        l.lines()
            .find(|l| l.starts_with("install"))
            .map(str::to_string)
    });
    let _ = std::fs::remove_dir_all(&dir);
    (asked, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn setup_installs_only_what_is_missing_and_keeps_a_node_from_elsewhere() {
    let base = ["redis-server", "redis-cli", "influxd"];
    // Node from another source (this machine kind): Debian's nodejs/npm are not asked for.
    let mut present = base.to_vec();
    present.extend(["node", "npm", "python3", "nft", "redis-sentinel", "haproxy"]);
    let (asked, _) = setup_installs("test", &present);
    let asked = asked.expect("chromium is missing");
    assert!(asked.ends_with(" chromium"), "{asked}");
    assert!(
        !asked.contains("nodejs") && !asked.contains("npm"),
        "{asked}"
    );
    // A plain Debian without Node: both.
    let (asked, _) = setup_installs("test", &base);
    let asked = asked.unwrap();
    for p in [
        "chromium",
        "nodejs",
        "npm",
        "python3-venv",
        "nftables",
        "redis-sentinel",
        "haproxy",
    ] {
        assert!(asked.split(' ').any(|w| w == p), "{p} in {asked}");
    }
    // The demo needs Redis and InfluxDB only; CI also a C++ compiler.
    let (asked, _) = setup_installs("demo", &[]);
    assert!(asked
        .unwrap()
        .ends_with("redis-server redis-tools influxdb"));
    let (asked, _) = setup_installs("ci", &present);
    assert!(asked.unwrap().ends_with("chromium g++"));
    // Nothing missing: apt-get is not run at all.
    present.extend(["chromium", "c++"]);
    let (asked, said) = setup_installs("ci", &present);
    assert_eq!(asked, None, "{said}");
    assert!(said.contains("everything for 'ci' is installed"), "{said}");
}
