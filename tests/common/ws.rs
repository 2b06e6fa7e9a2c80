//! A plain blocking WebSocket client (tungstenite over std TcpStream) for the tests.
#![allow(dead_code)]

use serde_json::Value as Json;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

pub struct Client {
    pub ws: WebSocket<TcpStream>,
    /// The `status` message that follows `connected`.
    pub status: Json,
}

impl Client {
    /// Connects to `ws://addr{path}` and returns the client and its `connected` message.
    pub fn connect(addr: SocketAddr, path: &str) -> (Client, Json) {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let url = format!("ws://{addr}{path}");
        let (ws, resp) = tungstenite::client::client(url.as_str(), stream).expect("upgrade");
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
