//! History: the recorder's state (for health and metrics) and the querier — two threads that
//! asks InfluxDB for `GET /api/channels/{id}/history` (blocking HTTP with a timeout, so no
//! shard waits on it). Queries queue in a bounded channel; when it is full the request is
//! answered 503 rather than queued without end. Answers go back through the asking shard's
//! inbox, like the feed's.

use super::recorder::client::Influx;
use crate::config::HistoryConfig;
use crate::error::Upstream;
use crate::feed::ReplyTo;
use crate::history::{HistoryQuery, Status};
use crate::shard::inbox::{Inbox, ShardEvent};
use crossbeam_channel::{Sender, TrySendError};
use std::sync::{Arc, Mutex};

/// Queries waiting for the querier threads; more are refused.
const QUEUE: usize = 32;
/// Queries asked at once (InfluxDB answers several in parallel; one thread serialized them).
const THREADS: usize = 2;

struct Job {
    query: HistoryQuery,
    to: ReplyTo,
}

pub struct History {
    tx: Sender<Job>,
    status: Arc<Mutex<Status>>,
}

impl History {
    /// Starts the querier; `status` is the recorder's. The thread ends when this is dropped.
    pub fn start(
        cfg: &HistoryConfig,
        status: Arc<Mutex<Status>>,
        inboxes: Vec<Arc<Inbox>>,
    ) -> std::io::Result<History> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        for i in 0..THREADS {
            let (rx, inboxes, influx) = (rx.clone(), inboxes.clone(), Influx::new(cfg));
            std::thread::Builder::new()
                .name(format!("history-query-{i}"))
                .spawn(move || {
                    for job in rx {
                        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let body = influx
                                .query(&job.query.influxql())
                                .map_err(|e| e.to_string())?;
                            crate::history::query::parse_answer(&job.query, &body)
                                .map_err(|e| format!("InfluxDB's answer: {}", e.0))
                        }))
                        .unwrap_or_else(|_| Err("the query failed".into()));
                        if let Some(inbox) = inboxes.get(job.to.shard) {
                            inbox.push(ShardEvent::Reply {
                                to: job.to,
                                reply: Box::new(answer.map_err(Upstream::Failed)),
                            });
                        }
                    }
                })?;
        }
        Ok(History { tx, status })
    }

    /// Queues `query`; false when the queue is full.
    pub fn ask(&self, query: HistoryQuery, to: ReplyTo) -> bool {
        match self.tx.try_send(Job { query, to }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
