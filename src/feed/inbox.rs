//! The feed thread's one inbox. Everything that may make the feed act arrives here, so it
//! waits on a single queue (with the next tick as the deadline) instead of polling: a stop,
//! wake-ups and subscription news from the `netsrv:wake` subscriber, and jobs from shards
//! that carry the address their answer goes back to.

use crate::fanout::ConnId;
use crate::job::{Answer, Erased};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::time::Duration;

/// Events the inbox holds at most; a full inbox refuses jobs (the asker's deadline
/// answers for the feed) and drops wake-ups (one is enough to collect).
pub const CAPACITY: usize = 4096;

/// Where an answer goes: a connection on a shard (`seq` tells a late answer from the one
/// the connection waits for now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub shard: usize,
    pub conn: ConnId,
    pub seq: u64,
}

/// Delivers an answer to its address (the server wires it to the shards' inboxes).
pub type Postman = Box<dyn Fn(ReplyTo, Answer) + Send>;

/// A master's address as the sentinels name it.
pub type MasterAddr = (String, u16);

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
    /// A message on this gateway's own channel (another gateway took over a client id).
    Peer {
        message: String,
    },
    /// The sentinels name this master now (`redis+sentinel://` only).
    Master {
        addr: MasterAddr,
    },
    /// A shard's job, run on the feed's connection.
    Run {
        job: Box<dyn Erased>,
        reply_to: ReplyTo,
    },
}

/// The sending side, cloned into every shard (and every wake-up subscriber).
#[derive(Clone)]
pub struct FeedHandle(Sender<Event>);

pub fn channel() -> (FeedHandle, Receiver<Event>) {
    let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
    (FeedHandle(tx), rx)
}

impl FeedHandle {
    /// Queues a job; false when the inbox is full or the feed has stopped (no answer will
    /// come).
    pub fn run(&self, job: Box<dyn Erased>, reply_to: ReplyTo) -> bool {
        self.0.try_send(Event::Run { job, reply_to }).is_ok()
    }

    /// Tells the feed to stop; waits at most a second for room in the inbox.
    pub fn stop(&self) {
        let _ = self.0.send_timeout(Event::Stop, Duration::from_secs(1));
    }

    /// Queues an event that may be dropped when the inbox is full (wake-ups).
    pub(super) fn offer(&self, ev: Event) {
        if let Err(TrySendError::Full(ev)) = self.0.try_send(ev) {
            // Subscription news must not be lost: it changes how the feed collects.
            if !matches!(ev, Event::Woken { .. } | Event::Peer { .. }) {
                let _ = self.0.send_timeout(ev, Duration::from_secs(1));
            }
        }
    }
}
