//! A plain blocking WebSocket client (tungstenite over std TcpStream) for the tests.
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value as Json;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocket;
use tungstenite::Message;
use voltage_gateway::config::DriverKind;

pub struct Client {
    pub ws: WebSocket<TcpStream>,
    /// The `status` message that follows `connected`.
    pub status: Json,
}

impl Client {
    /// Connects to `ws://addr{path}` and returns the client and its `connected` message.
    pub fn connect(addr: SocketAddr, path: &str) -> (Client, Json) {
        let url = format!("ws://{addr}{path}");
        // A blocking read in this test process can return EINTR (seen under load in CI, with
        // the gateway's io_uring shards in the same process): connect again.
        let mut attempt = 0;
        let (ws, resp) = loop {
            let stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            match tungstenite::client::client(url.as_str(), stream) {
                Ok(r) => break r,
                Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Io(e)))
                    if e.kind() == std::io::ErrorKind::Interrupted && attempt < 3 =>
                {
                    attempt += 1;
                }
                Err(e) => panic!("upgrade: {e:?}"),
            }
        };
        assert_eq!(resp.status(), 101);
        let mut c = Client {
            ws,
            status: Json::Null,
        };
        let hello = c.recv();
        assert_eq!(hello["type"], "connected", "{hello}");
        let status = c.recv();
        assert_eq!(
            status["type"], "status",
            "status follows connected: {status}"
        );
        c.status = status;
        (c, hello)
    }

    pub fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).unwrap();
    }

    pub fn send_json(&mut self, v: &Json) {
        self.send(&v.to_string());
    }

    /// The next text message as JSON (panics after the read timeout).
    /// `read` that retries when a signal interrupted the syscall.
    pub fn read(&mut self) -> tungstenite::Result<Message> {
        loop {
            match self.ws.read() {
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    continue
                }
                other => return other,
            }
        }
    }

    pub fn recv(&mut self) -> Json {
        loop {
            match self.read().expect("read") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
                Message::Binary(_) => panic!("binary from server"),
                _ => continue,
            }
        }
    }

    /// The next text message as raw bytes.
    pub fn recv_raw(&mut self) -> Vec<u8> {
        loop {
            match self.read().expect("read") {
                Message::Text(t) => return t.as_str().as_bytes().to_vec(),
                _ => continue,
            }
        }
    }

    /// Next message of the given type, skipping others (returns the skipped ones too).
    pub fn recv_type(&mut self, kind: &str) -> Json {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no {kind} in time");
            let m = self.recv();
            if m["type"] == kind {
                return m;
            }
        }
    }

    /// Every message that arrives within `window`.
    pub fn collect_for(&mut self, window: Duration) -> Vec<(Instant, Json)> {
        let end = Instant::now() + window;
        let mut out = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            self.ws
                .get_mut()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.read() {
                Ok(Message::Text(t)) => {
                    out.push((Instant::now(), serde_json::from_str(t.as_str()).unwrap()))
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    self.ws
                        .get_mut()
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    return out;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.read() {
                Ok(Message::Close(f)) => {
                    // Send the close reply, as a browser does.
                    let _ = self.ws.flush();
                    return f.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_owned())
                    });
                }
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    }
}

/// The seed document's site: 1001 and 1002 with T and S, 2001 with set-point A 20.
pub fn seed_site(redis: &voltage_gateway::demo::RedisProcess) -> redis::Connection {
    let mut con = redis_con(redis);
    write(
        &mut con,
        "comsrv:1001:T",
        r#"{"1":25.6,"2":101.3,"3":7.2}"#,
        None,
    );
    write(&mut con, "comsrv:1001:S", r#"{"10":1,"11":0}"#, None);
    write(&mut con, "comsrv:1002:T", r#"{"1":25.6,"2":26.3}"#, None);
    write(&mut con, "comsrv:1002:S", r#"{"10":1,"11":0}"#, None);
    write(&mut con, "comsrv:2001:A", r#"{"20":50.0}"#, None);
    con
}

/// A gateway on the seed site, loaded.
pub fn start(
    driver: DriverKind,
) -> (
    voltage_gateway::demo::RedisProcess,
    voltage_gateway::Server,
    redis::Connection,
) {
    start_with(driver, |_| {})
}

/// [`start`] with a configuration adjusted by `tune`.
pub fn start_with(
    driver: DriverKind,
    tune: impl FnOnce(&mut voltage_gateway::config::Config),
) -> (
    voltage_gateway::demo::RedisProcess,
    voltage_gateway::Server,
    redis::Connection,
) {
    let redis = redis();
    let mut cfg = config(&redis.url(), driver);
    tune(&mut cfg);
    let anonymous = cfg.auth.anonymous_role != voltage_gateway::config::AnonymousRole::None;
    let gw = voltage_gateway::Server::start(cfg).expect("gateway starts");
    // The feed loads the Function library the seed's writes call.
    wait_until("redis healthy", Duration::from_secs(5), || {
        gw.published().redis.load().healthy
    });
    let con = seed_site(&redis);
    // Read from the gateway itself: the configuration may refuse anonymous REST.
    wait_until("seed site loaded", Duration::from_secs(5), || {
        let snap = gw.published().snapshot.load();
        snap.loaded && snap.channels.len() == 3
    });
    // The feed publishes before the shards take the tick: wait until the shards know the
    // channels too (fresh connections spread over both shards), or a test's first subscribe
    // on a busy machine can find none of them.
    if anonymous {
        for _ in 0..8 {
            wait_until("shards loaded", Duration::from_secs(5), || {
                let (mut c, _) = Client::connect(gw.local_addr(), "/ws");
                c.send(r#"{"type":"subscribe","id":"probe","data":{"channels":[1001,1002,2001],"interval":1000}}"#);
                c.recv_type("subscribe_ack")["data"]["total"] == 3
            });
        }
    }
    (redis, gw, con)
}

/// A raw client that completes the handshake, then only writes what the test says.
pub fn raw_ws(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes()).unwrap();
    s
}

pub fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// WebSocket sessions open across the shards, from `/health/detailed`.
pub fn open_websockets(addr: std::net::SocketAddr) -> u64 {
    get_ok(addr, "/health/detailed")["data"]["websockets_per_shard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

/// `n` clients subscribed to 1001's telemetry at interval 100, each past its ack.
pub fn subscribed_to_1001(addr: std::net::SocketAddr, n: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let (mut c, _) = Client::connect(addr, "/ws");
            c.send(r#"{"type":"subscribe","data":{"channels":[1001],"data_types":["T"],"interval":100}}"#);
            c.recv_type("subscribe_ack");
            c
        })
        .collect()
}

/// The number in a push's id (`update_{n}` / `batch_{n}`).
pub fn push_number(m: &Json) -> u64 {
    m["id"]
        .as_str()
        .unwrap()
        .rsplit('_')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
