//! One WebSocket connection's protocol state, sans-IO: tungstenite's `WebSocketContext` over
//! in-memory buffers. The socket task feeds received bytes in and takes bytes out; tungstenite
//! does the RFC 6455 work (masking, fragmentation, UTF-8, control frames, close handshake).

use std::io::{self, Read, Write};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error, Message};

/// In-memory stream: reads what the socket delivered, collects what tungstenite writes.
#[derive(Default)]
struct Pipe {
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = &self.input[self.pos..];
        if avail.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pos += n;
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the peer sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    /// The connection is over (close handshake done or protocol violation); flush the output
    /// and close the socket.
    Closed,
}

pub struct Session {
    ctx: WebSocketContext,
    pipe: Pipe,
    done: bool,
}

impl Session {
    /// `max_message` bounds a message (and a frame); bigger ones close with 1009.
    pub fn new(max_message: usize) -> Session {
        // tungstenite's defaults are sized for a few big connections (128 KiB zero-filled read
        // buffer, 64 MiB messages); a gateway holds tens of thousands of small ones.
        // Client messages are small (subscriptions, pings): a 256-byte read chunk keeps an idle
        // viewer cheap; a larger message grows the buffer only while it is being read.
        let config = WebSocketConfig::default()
            .read_buffer_size(256)
            .write_buffer_size(0)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        Session {
            ctx: WebSocketContext::new(Role::Server, Some(config)),
            pipe: Pipe::default(),
            done: false,
        }
    }

    /// Hands bytes read from the socket to the protocol.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.pipe.input.extend_from_slice(bytes);
    }

    /// The next message, if complete; `None` means "need more bytes".
    pub fn next_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            match self.ctx.read(&mut self.pipe) {
                Ok(Message::Text(t)) => return Some(Event::Text(t.as_str().to_owned())),
                Ok(Message::Binary(b)) => return Some(Event::Binary(b.to_vec())),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Close(_)) => {
                    // tungstenite queued the close reply; it is written on the next read/flush.
                    let _ = self.ctx.flush(&mut self.pipe);
                    self.done = true;
                    return Some(Event::Closed);
                }
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
                    self.done = true;
                    return Some(Event::Closed);
                }
                Err(e) => {
                    let (code, reason) = match e {
                        Error::Capacity(_) => (CloseCode::Size, "message too big"),
                        Error::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8"),
                        _ => (CloseCode::Protocol, "protocol error"),
                    };
                    self.close(code, reason);
                    self.done = true;
                    return Some(Event::Closed);
                }
            }
        }
    }

    /// Starts the close handshake (no-op if already closing).
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.to_owned().into(),
        };
        let _ = self.ctx.close(&mut self.pipe, Some(frame));
    }

    /// Queues a ping frame (liveness probe).
    pub fn ping(&mut self) {
        let _ = self
            .ctx
            .write(&mut self.pipe, Message::Ping(Vec::new().into()));
        let _ = self.ctx.flush(&mut self.pipe);
    }

    /// Bytes tungstenite produced (pongs, close frames) to be written in order.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        if self.pipe.output.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.pipe.output))
        }
    }

    /// False once a close was sent or received: no more data frames may follow.
    pub fn can_send(&self) -> bool {
        self.ctx.can_write() && !self.done
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn text_split_across_reads() {
        let mut s = Session::new(1024);
        let f = client_frame(1, true, b"{\"type\":\"ping\"}");
        s.receive(&f[..3]);
        assert_eq!(s.next_event(), None);
        s.receive(&f[3..]);
        assert_eq!(
            s.next_event(),
            Some(Event::Text("{\"type\":\"ping\"}".into()))
        );
        assert_eq!(s.next_event(), None);
    }

    #[test]
    fn fragmented_and_ping() {
        let mut s = Session::new(1024);
        s.receive(&client_frame(1, false, b"hel"));
        s.receive(&client_frame(9, true, b"p"));
        s.receive(&client_frame(0, true, b"lo"));
        assert_eq!(s.next_event(), Some(Event::Text("hello".into())));
        let out = s.take_output().unwrap();
        assert_eq!(out, [0x8A, 1, b'p'], "pong echoes the ping payload");
    }

    #[test]
    fn binary_oversize_and_utf8() {
        let mut s = Session::new(1024);
        s.receive(&client_frame(2, true, b"\x00\x01"));
        assert_eq!(s.next_event(), Some(Event::Binary(vec![0, 1])));
        s.receive(&client_frame(1, true, &[b'a'; 2000]));
        assert_eq!(s.next_event(), Some(Event::Closed));
        let out = s.take_output().unwrap();
        assert_eq!(&out[..4], &[0x88, 2 + 15, 0x03, 0xF1], "close 1009");
        assert!(!s.can_send());

        let mut s = Session::new(1024);
        s.receive(&client_frame(1, true, b"\xff\xfe"));
        assert_eq!(s.next_event(), Some(Event::Closed));
        let out = s.take_output().unwrap();
        assert_eq!(&out[2..4], &1007u16.to_be_bytes());
    }

    #[test]
    fn close_handshake() {
        let mut s = Session::new(1024);
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        s.receive(&client_frame(8, true, &payload));
        assert_eq!(s.next_event(), Some(Event::Closed));
        let out = s.take_output().unwrap();
        assert_eq!(out[0], 0x88);
        assert_eq!(&out[2..4], &1000u16.to_be_bytes());
    }

    #[test]
    fn server_close() {
        let mut s = Session::new(1024);
        s.close(CloseCode::Library(4001), "replaced");
        let out = s.take_output().unwrap();
        assert_eq!(
            out,
            [&[0x88, 10][..], &4001u16.to_be_bytes(), b"replaced"].concat()
        );
        assert!(!s.can_send());
    }
}
