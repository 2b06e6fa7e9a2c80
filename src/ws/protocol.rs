//! One WebSocket connection's protocol, sans-IO: bytes in (with `now` and the shard's
//! fan-out), actions out. The RFC 6455 layer is the tungstenite [`Session`]; every complete
//! text message is parsed and applied as a [`cmd::Command`]. The shard's connection task
//! only moves bytes: it feeds what it reads to [`Protocol::receive`] and writes the
//! [`Action`]s in order.

pub use super::action::{Action, Flow};
use super::cmd::{self, Ctx};
use super::handshake::Audience;
use super::session::{Event, Session};
use crate::error::{ApiError, ErrorCode};
use crate::fanout::{ConnId, Fanout};
use crate::wire::close::Disconnect;
use crate::wire::frame;

/// What the connection serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The gateway's protocol (PROTOCOL.md §3).
    Gateway,
    /// Echo every message back (the Autobahn conformance endpoint).
    Echo,
}

pub struct Protocol {
    conn: ConnId,
    mode: Mode,
    session: Session,
    limits: cmd::Limits,
}

impl Protocol {
    /// `max_message` bounds one inbound message (bigger closes with 1009); `limits` bound
    /// what a message may ask of the parser.
    pub fn new(conn: ConnId, mode: Mode, max_message: usize, limits: cmd::Limits) -> Protocol {
        Protocol {
            conn,
            mode,
            session: Session::new(max_message),
            limits,
        }
    }

    /// The first message on a gateway connection: `connected`.
    pub fn connected(&self, client_id: &str, audience: Audience, now: i64) -> Option<Action> {
        (self.mode == Mode::Gateway).then(|| {
            Action::Reply(crate::wire::ws::connected(
                client_id,
                audience.as_str(),
                now,
            ))
        })
    }

    /// Feeds bytes read from the socket and handles every complete message.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        now: i64,
        fanout: &mut Fanout,
        out: &mut Vec<Action>,
    ) -> Flow {
        self.session.receive(bytes);
        loop {
            let ev = self.session.next_event();
            self.flush(out);
            match (ev, self.mode) {
                (None, _) => return Flow::Open,
                (Some(Event::Closed), _) => return Flow::Closed,
                (Some(Event::Text(text)), Mode::Echo) => {
                    out.push(Action::Raw(frame::text(text.as_bytes())))
                }
                (Some(Event::Binary(payload)), Mode::Echo) => {
                    let mut f = Vec::with_capacity(payload.len() + frame::MAX_HEADER);
                    frame::write_header(&mut f, frame::OP_BINARY, payload.len());
                    f.extend_from_slice(&payload);
                    out.push(Action::Raw(f));
                }
                (Some(Event::Text(text)), Mode::Gateway) => self.on_text(&text, now, fanout, out),
                (Some(Event::Binary(_)), Mode::Gateway) => {
                    out.push(Action::Reply(crate::wire::ws::error(
                        &ApiError::new(
                            ErrorCode::InvalidMessage,
                            "Invalid message",
                            "binary frames are not supported; send JSON text messages",
                        ),
                        None,
                        now,
                    )))
                }
            }
        }
    }

    /// Handles one client text message.
    pub fn on_text(&mut self, text: &str, now: i64, fanout: &mut Fanout, out: &mut Vec<Action>) {
        let msg = cmd::parse(text, &self.limits);
        let mut ctx = Ctx {
            conn: self.conn,
            request_id: msg.id.as_deref(),
            now,
            fanout,
            out,
        };
        match msg.command {
            Ok(c) => c.apply(&mut ctx),
            Err(e) => ctx.error(&e),
        }
    }

    /// Starts the close handshake for `why`.
    pub fn close(&mut self, why: Disconnect, out: &mut Vec<Action>) {
        self.session.close(why.code(), why.reason());
        self.flush(out);
    }

    /// Queues a liveness ping frame.
    pub fn ping(&mut self, out: &mut Vec<Action>) {
        self.session.ping();
        self.flush(out);
    }

    fn flush(&mut self, out: &mut Vec<Action>) {
        if let Some(bytes) = self.session.take_output() {
            out.push(Action::Raw(bytes));
        }
    }
}

#[cfg(test)]
mod tests;
