//! One WebSocket connection's protocol, sans-IO: bytes in (with `now` and the shard's
//! fan-out), actions out. The RFC 6455 layer is the tungstenite [`Session`]; every complete
//! text message is parsed and applied as a [`cmd::Command`]. The shard's connection task
//! only moves bytes: it feeds what it reads to [`Protocol::receive`] and writes the
//! [`Action`]s in order.

use super::action::Then;
pub use super::action::{Action, Flow};
use super::alarms::{AlarmFlow, ReplayRequest};
use super::cmd::{self, Command, Ctx, Peer};
use super::handshake::Audience;
use super::rate::RateLimit;
use super::session::{Event, Session};
use crate::alarm::{ActiveAlarms, Alarm, EventId, Range};
use crate::auth::{Auth, Principal};
use crate::error::ErrorCode;
use crate::fanout::{ConnId, Fanout};
use crate::site::SourceStatus;
use crate::wire::close::Disconnect;
use crate::wire::frame;
use std::collections::VecDeque;
use std::sync::Arc;

/// What the connection serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The gateway's protocol (PROTOCOL.md §3).
    Gateway,
    /// Echo every message back (the Autobahn conformance endpoint).
    Echo,
}

/// Subscription changes that may wait for the site's data to load; more are refused.
const MAX_DEFERRED: usize = 16;

pub struct Protocol {
    conn: ConnId,
    mode: Mode,
    session: Session,
    limits: cmd::Limits,
    /// Subscription changes received before the site's data was loaded, in order, with their
    /// request ids: answered once it is (an empty site and an unloaded one must not look
    /// alike, so they are not answered `CHANNEL_NOT_FOUND`).
    deferred: VecDeque<(Option<String>, Command)>,
    rate: RateLimit,
    /// Messages refused since the last 10 s without a refusal, and when the last one was.
    refused: u32,
    last_refusal: i64,
    /// The protocol closed the connection (a close frame is queued).
    closed: bool,
    alarms: AlarmFlow,
    /// Who the connection acts as, and what checks and renews its tokens.
    principal: Principal,
    auth: Arc<Auth>,
    peer: Peer,
    /// Commands whose job is out (at most `limits.max_in_flight`).
    in_flight: usize,
}

impl Protocol {
    /// `max_message` bounds one inbound message (bigger closes with 1009); `limits` bound
    /// what a message may ask of the parser.
    pub fn new(
        conn: ConnId,
        mode: Mode,
        max_message: usize,
        limits: cmd::Limits,
        principal: Principal,
        auth: Arc<Auth>,
        peer: Peer,
    ) -> Protocol {
        Protocol {
            conn,
            mode,
            session: Session::new(max_message),
            limits,
            deferred: VecDeque::new(),
            rate: RateLimit::new(limits.messages_per_sec, limits.message_burst, 0),
            refused: 0,
            last_refusal: i64::MIN,
            closed: false,
            alarms: AlarmFlow::Off,
            principal,
            auth,
            peer,
            in_flight: 0,
        }
    }

    /// A command's job was answered (or timed out): its reply, unless the connection is
    /// closing.
    pub fn answered(
        &mut self,
        then: Then,
        answer: Result<crate::job::Answer, crate::error::Upstream>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let reply = then.reply(answer, now);
        if !self.closed {
            out.push(Action::Reply(reply));
        }
    }

    /// Who the connection acts as now.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Checks the connection's token at `now`: once it has expired, the connection goes on
    /// with the anonymous role and is told (`auth_expired`) — or, when anonymous clients may
    /// do nothing, is closed with 4401.
    /// With `revocations`, also whether its login was ended meanwhile (logout, a reused
    /// refresh token): that ends here too, at once.
    pub fn check_expiry(&mut self, now: i64, revocations: bool, out: &mut Vec<Action>) {
        if self.closed {
            return;
        }
        let revoked = revocations
            && self
                .principal
                .family
                .as_deref()
                .is_some_and(|f| self.auth.is_revoked(f));
        if !revoked && self.principal.expires_ms.is_none_or(|t| t > now) {
            return;
        }
        let anonymous = self.auth.anonymous_role();
        self.principal = Principal::anonymous(anonymous);
        match anonymous {
            Some(role) => out.push(Action::Reply(crate::wire::ws::auth_expired(
                role.as_str(),
                revoked,
                now,
            ))),
            None => {
                let why = if revoked {
                    Disconnect::LoginRevoked
                } else {
                    Disconnect::TokenExpired
                };
                self.close(why, out);
                self.closed = true;
            }
        }
    }

    /// The `status` message for the data source's state (gateway connections only).
    pub fn status(&self, source: &SourceStatus, now: i64) -> Option<Action> {
        (self.mode == Mode::Gateway)
            .then(|| Action::Reply(crate::wire::ws::status(source.reason.as_deref(), now)))
    }

    /// Starts the connection's alarms (after `connected` and `status`): the active ones now,
    /// or — with `since` — a replay of what followed it, which the caller asks the feed for.
    pub fn start_alarms(
        &mut self,
        wants: bool,
        since: Option<EventId>,
        active: &ActiveAlarms,
        out: &mut Vec<Action>,
    ) -> Option<ReplayRequest> {
        if self.mode != Mode::Gateway {
            return None;
        }
        let (flow, ask) = AlarmFlow::start(wants, since, active, out);
        self.alarms = flow;
        ask
    }

    /// Live alarm events, in order.
    pub fn on_alarms(&mut self, alarms: &[Arc<Alarm>], out: &mut Vec<Action>) {
        self.alarms.on_alarms(alarms, out);
    }

    /// The feed's answer to the replay the connection asked for (`None`: no answer).
    pub fn on_alarm_replay(
        &mut self,
        range: Option<Range>,
        active: &ActiveAlarms,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        self.alarms.on_replay(range, active, now, out);
    }

    /// True while subscription changes wait for the site's data.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// The site's data is loaded: applies the subscription changes that waited for it.
    pub fn resume(&mut self, now: i64, fanout: &mut Fanout, out: &mut Vec<Action>) {
        if !fanout.is_loaded() {
            return;
        }
        while let Some((id, command)) = self.deferred.pop_front() {
            let mut ctx = Ctx {
                conn: self.conn,
                request_id: id.as_deref(),
                now,
                fanout,
                out,
                principal: &mut self.principal,
                auth: &self.auth,
                peer: &self.peer,
                in_flight: &mut self.in_flight,
                max_in_flight: self.limits.max_in_flight,
            };
            command.apply(&mut ctx);
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
                // Our close frame is out: what the peer sends until its close reply is read
                // and dropped (closing with unread input would reset the connection, and the
                // peer could lose the close frame that says why); the shell bounds how long.
                _ if self.closed => {}
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
                        &ErrorCode::InvalidMessage
                            .context("binary frames are not supported; send JSON text messages"),
                        None,
                        now,
                    )))
                }
            }
        }
    }

    /// Handles one client text message.
    pub fn on_text(&mut self, text: &str, now: i64, fanout: &mut Fanout, out: &mut Vec<Action>) {
        // Revocation too: a logged-out login never sends another command.
        self.check_expiry(now, true, out);
        if self.closed {
            return;
        }
        let msg = cmd::parse(text, &self.limits);
        // Never more than a full burst: one subscribe of ws.max_channels must be possible.
        let cost = msg
            .command
            .as_ref()
            .map_or(1, Command::cost)
            .min(self.limits.message_burst.max(1));
        if !self.rate.take(cost, now) {
            return self.refuse(msg.id.as_deref(), now, out);
        }
        let wait = (!fanout.is_loaded() || !self.deferred.is_empty())
            && msg.command.as_ref().is_ok_and(Command::needs_site);
        let full = self.deferred.len() >= MAX_DEFERRED;
        let mut ctx = Ctx {
            conn: self.conn,
            request_id: msg.id.as_deref(),
            now,
            fanout,
            out,
            principal: &mut self.principal,
            auth: &self.auth,
            peer: &self.peer,
            in_flight: &mut self.in_flight,
            max_in_flight: self.limits.max_in_flight,
        };
        match msg.command {
            Ok(_) if wait && full => ctx.error(&ErrorCode::ServiceUnavailable.context(format!(
                    "the site's data is not loaded from Redis yet and {MAX_DEFERRED} subscription changes already wait for it"
                ))),
            Ok(c) if wait => self.deferred.push_back((msg.id, c)),
            Ok(c) => c.apply(&mut ctx),
            Err(e) => ctx.error(&e),
        }
    }

    /// Over the message rate: at most one refusal a second is answered `RATE_LIMITED`, the
    /// rest are dropped unanswered (answering each would be the amplification the limit
    /// prevents); ten bursts' worth of refusals without a 10 s pause close the connection.
    fn refuse(&mut self, request_id: Option<&str>, now: i64, out: &mut Vec<Action>) {
        let since = now.saturating_sub(self.last_refusal);
        if since > 10_000 {
            self.refused = 0;
        }
        self.refused += 1;
        self.last_refusal = now;
        if self.refused == 1 || since >= 1000 {
            let e = ErrorCode::RateLimited.context(format!(
                "at most {} messages per second (bursts of {}); this message was not processed",
                self.limits.messages_per_sec, self.limits.message_burst
            ));
            out.push(Action::Reply(crate::wire::ws::error(&e, request_id, now)));
        }
        if self.refused >= self.limits.message_burst.saturating_mul(10) {
            self.close(Disconnect::RateLimited, out);
            self.closed = true;
        }
    }

    /// True once the protocol itself has closed the connection (it awaits the close reply).
    pub fn is_closing(&self) -> bool {
        self.closed
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
