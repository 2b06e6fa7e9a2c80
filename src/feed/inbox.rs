//! The feed thread's one inbox. Everything that may make the feed act arrives here, so it
//! waits on a single queue (with the next tick as the deadline) instead of polling: a stop,
//! wake-ups and subscription news from the `netsrv:wake` subscriber, and requests from shards
//! that carry the address their answer goes back to.

use crate::alarm::EventId;
use crate::control::{ControlRequest, Submitted};
use crate::error::ApiError;
use crate::fanout::ConnId;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::time::Duration;

/// Events the inbox holds at most; a full inbox refuses requests (the asker's deadline
/// answers for the feed) and drops wake-ups (one is enough to collect).
pub const CAPACITY: usize = 4096;

pub use crate::api::definitions::Record;

/// What a shard may ask the feed.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A live `PING` on the feed's Redis connection, timed.
    RedisPing,
    /// `alarm:events` after `after`, at most `limit` events; with `check_gap`, whether
    /// some after `after` were trimmed.
    AlarmRange {
        after: EventId,
        limit: usize,
        check_gap: bool,
    },
    /// Definitions: `HGETALL {prefix}{id}` for one id or every member of `ids_key` (and
    /// `{prefix}{id}:stats` with `stats`).
    Definitions {
        prefix: &'static str,
        ids_key: &'static str,
        id: Option<String>,
        stats: bool,
    },
    /// `FCALL function 1 key [arg]` (the definitions' save/delete functions).
    Library {
        function: &'static str,
        key: String,
        args: Vec<String>,
    },
    /// At most `count` entries of `stream` after `after`.
    Stream {
        stream: &'static str,
        after: EventId,
        count: usize,
    },
    /// A command's record (`HGETALL cmd:{id}`).
    CommandRecord { command_id: String },
    /// Commands (each its arguments) run as one pipeline — `MULTI`/`EXEC` with `atomic` —
    /// answered with their replies (the configuration routes' reads and writes).
    Exec {
        commands: Vec<Vec<String>>,
        atomic: bool,
    },
    /// Queue a control command for `client_id` (`control_submit`).
    ControlSubmit {
        command: Box<ControlRequest>,
        client_id: String,
    },
}

/// The feed's answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The `PING` round trip; `None` when Redis is down or did not answer.
    RedisRtt(Option<Duration>),
    /// The range, or `None` when Redis could not be asked.
    AlarmRange(Option<crate::alarm::Range>),
    /// The command as queued, or why not (`SERVICE_UNAVAILABLE` when Redis is down).
    ControlSubmitted(Result<Submitted, ApiError>),
    /// The record's fields (empty: no such command), or `None` when Redis could not be asked.
    CommandRecord(Option<Vec<(Vec<u8>, Vec<u8>)>>),
    /// (id, fields) per definition, or `None` when Redis could not be asked.
    Definitions(Option<Vec<Record>>),
    /// The call's reply or the library's error text; `None` when Redis could not be asked.
    Library(Option<Result<redis::Value, String>>),
    /// The entries, or `None` when Redis could not be asked.
    Stream(Option<Vec<super::stream::Entry>>),
    /// The password verifier's answer (not the feed's: it shares the way back).
    Verified(bool),
    /// The replies of an `Exec`, or Redis's error text; `None` when Redis could not be asked.
    Exec(Option<Result<Vec<redis::Value>, String>>),
    /// A history query's page, or why InfluxDB could not answer (the querier's, not the
    /// feed's: it shares the way back).
    History(Result<crate::history::Page, String>),
}

/// Where an answer goes: a connection on a shard (`seq` tells a late answer from the one
/// the connection waits for now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub shard: usize,
    pub conn: ConnId,
    pub seq: u64,
}

/// Delivers an answer to its address (the server wires it to the shards' inboxes).
pub type Postman = Box<dyn Fn(ReplyTo, Reply) + Send>;

#[derive(Debug)]
pub enum Event {
    Stop,
    /// Subscriber `generation` saw a write.
    Woken {
        generation: u64,
    },
    /// Subscriber `generation` is subscribed: collects may ask the library to publish.
    Subscribed {
        generation: u64,
    },
    /// Subscriber `generation` could not subscribe or lost its subscription.
    WakeLost {
        generation: u64,
        why: String,
    },
    Ask {
        request: Request,
        reply_to: ReplyTo,
    },
}

/// The sending side, cloned into every shard (and every wake-up subscriber).
#[derive(Clone, Debug)]
pub struct FeedHandle(Sender<Event>);

pub fn channel() -> (FeedHandle, Receiver<Event>) {
    let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
    (FeedHandle(tx), rx)
}

impl FeedHandle {
    /// Queues a request; false when the inbox is full or the feed has stopped (no answer
    /// will come).
    pub fn ask(&self, request: Request, reply_to: ReplyTo) -> bool {
        self.0.try_send(Event::Ask { request, reply_to }).is_ok()
    }

    /// Tells the feed to stop; waits at most a second for room in the inbox.
    pub fn stop(&self) {
        let _ = self.0.send_timeout(Event::Stop, Duration::from_secs(1));
    }

    /// Queues an event that may be dropped when the inbox is full (wake-ups).
    pub(super) fn offer(&self, ev: Event) {
        if let Err(TrySendError::Full(ev)) = self.0.try_send(ev) {
            // Subscription news must not be lost: it changes how the feed collects.
            if !matches!(ev, Event::Woken { .. }) {
                let _ = self.0.send_timeout(ev, Duration::from_secs(1));
            }
        }
    }
}
