//! Shared test harness: a real redis-server on a free port, the real gateway in-process, and
//! a plain HTTP/1.1 client over TcpStream.
#![allow(dead_code)]

use serde_json::Value as Json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use voltage_gateway::config::{Config, DriverKind};
use voltage_gateway::demo::RedisProcess;
use voltage_gateway::Server;

pub fn redis() -> RedisProcess {
    RedisProcess::start().expect("redis-server must be installed for integration tests")
}

pub fn config(redis_url: &str, driver: DriverKind) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        redis_url: redis_url.to_string(),
        shards: 2,
        driver,
        tick_ms: 5,
        reconnect_max_ms: 200,
        redis_timeout_ms: 500,
        ..Config::default()
    }
}

pub fn gateway(redis: &RedisProcess, driver: DriverKind) -> Server {
    let server = Server::start(config(&redis.url(), driver)).expect("gateway starts");
    wait_until("redis healthy", Duration::from_secs(5), || {
        server.published().redis.load().healthy
    });
    server
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}

pub fn redis_con(redis: &RedisProcess) -> redis::Connection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// `FCALL comsrv_write_data 1 comsrv:{ch}:{t} json [ts]`, as a device link writes.
pub fn write(con: &mut redis::Connection, key: &str, json: &str, ts: Option<i64>) -> i64 {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("comsrv_write_data").arg(1).arg(key).arg(json);
    if let Some(ts) = ts {
        cmd.arg(ts);
    }
    cmd.query(con).expect("comsrv_write_data")
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// Asserts the error envelope and returns the error object.
    pub fn error(&self, status: u16, code: &str) -> Json {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let j = self.json();
        assert_eq!(j["success"], false);
        assert_eq!(j["error"]["code"], code, "{j}");
        assert!(j["error"]["message"].is_string());
        assert!(j["error"]["details"].is_string());
        assert!(j["timestamp"].is_string());
        j["error"].clone()
    }
}

/// `read` that retries when a signal interrupted the syscall.
fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> usize {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other.unwrap(),
        }
    }
}

/// Reads one response (Content-Length framed) from the stream.
pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> HttpResponse {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_string();
            let status: u16 = head[9..12].parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let body_len = if head_only { 0 } else { len };
            while buf.len() < pos + 4 + body_len {
                let n = read_some(s, &mut chunk);
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[pos + 4..pos + 4 + body_len].to_vec();
            buf.drain(..pos + 4 + body_len);
            return HttpResponse { status, head, body };
        }
        let n = read_some(s, &mut chunk);
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends raw bytes on a new connection and reads one response.
pub fn raw(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    read_response(&mut s, &mut Vec::new(), request.starts_with(b"HEAD"))
}

pub fn request(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    raw(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    request(addr, "GET", path)
}

/// GET that must succeed; returns the envelope.
pub fn get_ok(addr: SocketAddr, path: &str) -> Json {
    let r = get(addr, path);
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let j = r.json();
    assert_eq!(j["success"], true);
    assert!(j["timestamp"].as_str().unwrap().ends_with('Z'));
    j
}

fn rss_of(status: &str) -> u64 {
    let status = std::fs::read_to_string(status).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The gateway binary, for tests that run it as a process of its own.
pub const BIN: &str = env!("CARGO_BIN_EXE_voltage-gateway");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the gateway answers and its feed has loaded the library into Redis.
pub fn wait_ready(addr: SocketAddr) {
    wait_until("gateway ready", Duration::from_secs(10), || {
        TcpStream::connect(addr).is_ok()
            && get_ok(addr, "/health/detailed")["data"]["status"] == "healthy"
    });
}

/// Kills the child if a test fails before it exits, so no server outlives its test.
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The gateway as a process of its own (its memory measured apart from the tests running
/// beside it), on a free loopback port, configured by `toml`; ready when returned.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    config: std::path::PathBuf,
    guard: Guard,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl GatewayProcess {
    pub fn spawn(redis: &RedisProcess, toml: &str) -> GatewayProcess {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let config =
            std::env::temp_dir().join(format!("voltage-test-{}-{n}.toml", std::process::id()));
        std::fs::write(&config, toml).unwrap();
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--redis", &redis.url(), "--shards", "2"])
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if std::env::var_os("VOLTAGE_TEST_LOGS").is_some() {
            cmd.args(["--log-level", "debug"]);
        }
        let (guard, addr, log) = spawn_listening(cmd);
        let g = GatewayProcess {
            addr,
            config,
            guard,
            log,
        };
        wait_ready(g.addr);
        g
    }

    /// SIGKILL: the process dies with its connections (a failure drill).
    pub fn kill(&mut self) {
        let _ = self.guard.0.kill();
        let _ = self.guard.0.wait();
    }

    /// Resident memory of the gateway process.
    pub fn rss_kib(&self) -> u64 {
        rss_of(&format!("/proc/{}/status", self.guard.0.id()))
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(dir) = std::env::var_os("VOLTAGE_TEST_LOGS") {
            let _ = std::fs::write(
                std::path::Path::new(&dir).join(format!("gateway-{}.log", self.addr.port())),
                self.log.lock().unwrap().as_bytes(),
            );
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

/// The ids `GET /api/channels` lists, in order.
pub fn channel_ids(addr: SocketAddr) -> Vec<i64> {
    get_ok(addr, "/api/channels")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel_id"].as_i64().unwrap())
        .collect()
}

/// Runs `$body` as one test per driver (io_uring and legacy epoll), like monoio's `test_all`.
#[macro_export]
macro_rules! both_drivers {
    ($name:ident, $driver:ident, $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn run($driver: voltage_gateway::config::DriverKind) $body
            #[test]
            fn uring() {
                run(voltage_gateway::config::DriverKind::Uring)
            }
            #[test]
            fn legacy() {
                run(voltage_gateway::config::DriverKind::Legacy)
            }
        }
    };
}

/// For tests about control and configuration rather than roles (tests/security.rs covers
/// those): anonymous clients may do everything, as far as roles go.
pub fn trust(cfg: &mut Config) {
    cfg.auth.anonymous_role = voltage_gateway::config::AnonymousRole::Admin;
}

/// Starts `cmd` — a gateway told to listen on `127.0.0.1:0`, its stderr piped — and returns
/// it with the address it bound, read from its log ("listening on ADDR"), and its whole log
/// so far and to come. (A port picked free beforehand can be taken by another test's
/// redis-server before the gateway binds it.)
pub fn spawn_listening(
    mut cmd: std::process::Command,
) -> (Guard, SocketAddr, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::BufRead;
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().expect("stderr piped");
    let guard = Guard(child);
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("");
                let _ = tx.send(addr.parse::<SocketAddr>());
            }
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no 'listening on' in the log: {}", log.lock().unwrap()))
        .expect("the logged address parses");
    (guard, addr, log)
}

/// A request with a JSON body on a new connection.
pub fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> HttpResponse {
    raw(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}
