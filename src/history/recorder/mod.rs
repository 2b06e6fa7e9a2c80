//! The history recorder: a thread of its own that writes every change the feed collects to
//! InfluxDB, batched by size and time. The feed hands each tick over a bounded queue and never
//! waits: a full queue drops the tick's values and counts them. InfluxDB down or slow never
//! reaches the feed or the shards: batches go to a bounded buffer (memory or disk) and are
//! written in order when it answers again; what the buffer cannot hold is counted as dropped.
//! (`src/history/` is the pure part: line protocol, queries.)

pub mod client;
pub mod spill;

use crate::config::HistoryConfig;
use crate::history::{line, Status};
use crate::model::{ChannelId, DataType, PointId};
use crate::site::tick::Tick;
use crate::site::Snapshot;
use client::{Influx, WriteError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use spill::{Batch, Spill};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often an unreachable InfluxDB is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// One collect's changes, as the recorder needs them (no frames, no rendered JSON).
struct Changes {
    time_ms: i64,
    snapshot: Arc<Snapshot>,
    changed: Vec<(ChannelId, DataType, Arc<[PointId]>)>,
}

impl Changes {
    fn points(&self) -> u64 {
        self.changed.iter().map(|c| c.2.len() as u64).sum()
    }
}

/// The feed's side: hands ticks to the recorder thread.
pub struct Recorder {
    tx: Option<Sender<Changes>>,
    status: Arc<Mutex<Status>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    /// Starts the thread (opening the buffer first; a directory that cannot be used is an
    /// error at start-up, not a silent loss later).
    pub fn start(cfg: &HistoryConfig) -> std::io::Result<Recorder> {
        let dir = (!cfg.buffer_dir.is_empty()).then(|| std::path::PathBuf::from(&cfg.buffer_dir));
        let spill = Spill::open(dir.as_deref(), cfg.buffer_max_bytes)?;
        let status = Arc::new(Mutex::new(Status {
            message: "connecting".into(),
            buffered_points: spill.points(),
            buffered_bytes: spill.bytes(),
            ..Status::default()
        }));
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue);
        let mut worker = Worker {
            influx: Influx::new(cfg),
            cfg: cfg.clone(),
            status: status.clone(),
            spill,
            batch: Vec::new(),
            batch_points: 0,
            batch_lines: 0,
            oldest: None,
            up: false,
            next_probe: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("history-recorder".into())
            .spawn(move || worker.run(rx))?;
        Ok(Recorder {
            tx: Some(tx),
            status,
            thread: Some(thread),
        })
    }

    /// Called by the feed for every tick: never blocks.
    pub fn record(&self, tick: &Tick) {
        let changed: Vec<_> = tick
            .changes
            .iter()
            .filter(|c| !c.fragment.is_empty())
            .map(|c| (c.channel, c.data_type, c.points.clone()))
            .collect();
        if changed.is_empty() {
            return;
        }
        let changes = Changes {
            time_ms: tick.time_ms,
            snapshot: tick.snapshot.clone(),
            changed,
        };
        let Some(tx) = &self.tx else { return };
        match tx.try_send(changes) {
            Ok(()) => {}
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => {
                let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
                if s.dropped_points == 0 {
                    crate::log::warn(
                        "history: the recorder's queue is full; changes are dropped and counted (history.queue)",
                    );
                }
                s.dropped_points += c.points();
            }
        }
    }

    /// The recorder's state (for health checks and metrics).
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn status_handle(&self) -> Arc<Mutex<Status>> {
        self.status.clone()
    }
}

impl Drop for Recorder {
    /// Closing the queue lets the thread write (or buffer) what it holds and end.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    influx: Influx,
    cfg: HistoryConfig,
    status: Arc<Mutex<Status>>,
    spill: Spill,
    batch: Vec<u8>,
    batch_points: u64,
    batch_lines: usize,
    /// When the batch's first line was added.
    oldest: Option<Instant>,
    /// The last write or probe reached InfluxDB.
    up: bool,
    next_probe: Instant,
}

/// Marks the recorder down if its thread ever ends by a panic (never silently "up").
struct Watch(Arc<Mutex<Status>>);

impl Drop for Watch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            s.up = false;
            s.message =
                "the history recorder stopped (a bug: see the log); nothing more is recorded"
                    .into();
            crate::log::error(
                "history: the recorder thread panicked; history is no longer recorded",
            );
        }
    }
}

impl Worker {
    fn run(&mut self, rx: Receiver<Changes>) {
        let _watch = Watch(self.status.clone());
        loop {
            let catching_up = self.up && !self.spill.is_empty();
            let wait = if catching_up {
                Duration::ZERO
            } else {
                let due = match self.oldest {
                    Some(t) => t + Duration::from_millis(self.cfg.batch_max_ms),
                    None => Instant::now() + PROBE_EVERY,
                };
                let due = if self.up {
                    due
                } else {
                    due.min(self.next_probe)
                };
                due.saturating_duration_since(Instant::now())
            };
            match rx.recv_timeout(wait) {
                Ok(c) => {
                    self.add(&c);
                    if self.batch_lines >= self.cfg.batch_max_lines {
                        self.flush();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    break;
                }
            }
            if self
                .oldest
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(self.cfg.batch_max_ms))
            {
                self.flush();
            }
            if !self.up && Instant::now() >= self.next_probe {
                self.probe();
            }
            if self.up && !self.spill.is_empty() {
                self.catch_up_one();
            }
        }
    }

    fn add(&mut self, c: &Changes) {
        for (channel, t, points) in &c.changed {
            let Some(state) = c.snapshot.channels.get(channel).and_then(|ch| ch.get(*t)) else {
                continue;
            };
            // The changed points still present (vanished ones have no value to record).
            let values: Vec<_> = points
                .iter()
                .filter_map(|p| {
                    let i = state.points.binary_search_by_key(p, |(id, _)| *id).ok()?;
                    Some((*p, &state.points[i].1))
                })
                .collect();
            if line::write_change(
                &mut self.batch,
                *channel,
                *t,
                values.iter().copied(),
                // The write's own time when the library records it: every gateway recording
                // this site writes the same point, which InfluxDB keeps once.
                if state.written_ms > 0 {
                    state.written_ms
                } else {
                    c.time_ms
                },
            ) {
                self.batch_lines += 1;
                self.batch_points += values.len() as u64;
                self.oldest.get_or_insert_with(Instant::now);
            }
        }
    }

    /// Writes the batch — or buffers it behind older ones, or while InfluxDB is down.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            self.oldest = None;
            return;
        }
        let batch = Batch {
            body: std::mem::take(&mut self.batch),
            points: std::mem::take(&mut self.batch_points),
        };
        self.batch_lines = 0;
        self.oldest = None;
        if !self.up || !self.spill.is_empty() {
            return self.hold(batch);
        }
        if self.write(&batch).is_err() {
            self.hold(batch);
        }
    }

    /// One write; `Err` when the batch should be kept for later.
    fn write(&mut self, batch: &Batch) -> Result<(), ()> {
        let mut result = self.influx.write(&batch.body);
        if result == Err(WriteError::NoDatabase) && self.cfg.create_database {
            if let Err(e) = self.influx.create_database() {
                result = Err(WriteError::Unavailable(e.to_string()));
            } else {
                result = self.influx.write(&batch.body);
            }
        }
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                s.written_points += batch.points;
                Ok(())
            }
            Err(WriteError::Rejected(m)) => {
                // Bad data never gets better: counted, logged, not retried.
                s.write_errors += 1;
                s.dropped_points += batch.points;
                crate::log::warn(&format!("history: {m}"));
                Ok(())
            }
            Err(e) => {
                s.write_errors += 1;
                drop(s);
                self.went_down(&e.to_string());
                Err(())
            }
        }
    }

    fn hold(&mut self, batch: Batch) {
        let pushed = self.spill.push(batch);
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Err((lost, why)) = pushed {
            if s.dropped_points == 0 {
                crate::log::warn(&format!("history: {why}; changes are dropped and counted"));
            }
            s.dropped_points += lost.points;
        }
        s.buffered_points = self.spill.points();
        s.buffered_bytes = self.spill.bytes();
    }

    fn catch_up_one(&mut self) {
        match self.spill.front() {
            None => {}
            Some(Err(points)) => {
                let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
                s.dropped_points += points;
            }
            Some(Ok(batch)) if self.write(&batch).is_ok() => self.spill.pop(),
            Some(Ok(_)) => {}
        }
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.buffered_points = self.spill.points();
        s.buffered_bytes = self.spill.bytes();
        if self.up {
            s.message = if self.spill.is_empty() {
                "ok".into()
            } else {
                format!("catching up: {} batches buffered", self.spill.len())
            };
        }
    }

    fn probe(&mut self) {
        self.next_probe = Instant::now() + PROBE_EVERY;
        let reached = self.influx.ping().and_then(|()| {
            if self.cfg.create_database {
                self.influx.create_database()
            } else {
                Ok(())
            }
        });
        match reached {
            Ok(()) => {
                self.up = true;
                let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
                if !s.up && s.message != "connecting" {
                    crate::log::info("history: InfluxDB is reachable again");
                }
                s.up = true;
                s.message = if self.spill.is_empty() {
                    "ok".into()
                } else {
                    format!("catching up: {} batches buffered", self.spill.len())
                };
            }
            Err(e) => self.went_down(&e.to_string()),
        }
    }

    fn went_down(&mut self, why: &str) {
        let was_up = self.up;
        self.up = false;
        self.next_probe = Instant::now() + PROBE_EVERY;
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if was_up || s.message == "connecting" {
            crate::log::warn(&format!("history: {why}; buffering until it answers"));
        }
        s.up = false;
        s.message = why.to_string();
    }
}
