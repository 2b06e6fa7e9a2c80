//! A shard's inbox: other threads (the feed, other shards) push events, the shard's event
//! task awaits them. monoio's `sync` feature carries the wake-up across threads.

use crate::alarm::{ActiveAlarms, Alarm};
use crate::fanout::ConnId;
use crate::feed::ReplyTo;
use crate::job::Answer;
use crate::site::tick::Tick;
use crate::site::DependencyHealth;
use crate::wire::close::Disconnect;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Alarm events in order, and the active set after the last of them.
#[derive(Debug)]
pub struct AlarmBatch {
    pub alarms: Vec<Arc<Alarm>>,
    pub active: Arc<ActiveAlarms>,
}

pub enum ShardEvent {
    /// The feed published changes.
    Tick(Arc<Tick>),
    /// Close a connection of this shard (client_id takeover from another shard).
    Kick { conn: ConnId, why: Disconnect },
    /// Redis's health changed.
    Source(Arc<DependencyHealth>),
    /// New alarm events (never dropped: every alarm-receiving connection is sent each).
    Alarms(Arc<AlarmBatch>),
    /// A command's final `control_ack` for the connection that sent it.
    ControlAck {
        conn: ConnId,
        client_id: String,
        /// Who sent the command: only a connection acting for them gets the ack.
        operator: Option<String>,
        json: Vec<u8>,
        /// Its `control:results` entry, to give it back to Redis if it cannot be delivered.
        entry: Option<crate::alarm::EventId>,
    },
    /// The answer to work a connection of this shard asked for (the feed's, the verifier's,
    /// the history querier's).
    Reply { to: ReplyTo, reply: Answer },
    /// The configured channels changed.
    Catalog(Arc<crate::catalog::Catalog>),
    /// Logins were ended (logout, refresh-token reuse): connections acting for them end
    /// their login now.
    LoginsRevoked,
}

#[derive(Default)]
struct State {
    queue: VecDeque<ShardEvent>,
    waker: Option<Waker>,
}

#[derive(Default)]
pub struct Inbox {
    state: Mutex<State>,
}

impl Inbox {
    pub fn push(&self, ev: ShardEvent) {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.queue.push_back(ev);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Resolves with every queued event once there is at least one.
    pub fn recv(&self) -> Recv<'_> {
        Recv(self)
    }
}

pub struct Recv<'a>(&'a Inbox);

impl Future for Recv<'_> {
    type Output = Vec<ShardEvent>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<ShardEvent>> {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.queue.is_empty() {
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(s.queue.drain(..).collect())
        }
    }
}
