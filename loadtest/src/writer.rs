//! The device simulator: a thread with one synchronous Redis connection that writes every
//! channel once per round through `comsrv_write_data`, pipelined (one round trip per round).
//! Point "1" is the send time (unix ms, µs precision), "2" the round number, "3".."P" vary.

use crate::stats::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Writer {
    con: redis::Connection,
    channels: Vec<u32>,
    points: u32,
    round: u64,
    json: String,
}

#[derive(Default)]
pub struct WriterStats {
    pub rounds: u64,
    pub final_round: u64,
    /// Round slots skipped because the previous round was still being written.
    pub late: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Pipeline round-trip per round, µs.
    pub rtt: Histogram,
}

/// What the main thread holds while the writer runs.
pub struct Running {
    pub stop: Arc<AtomicBool>,
    /// Rounds written so far (for progress).
    pub progress: Arc<AtomicU64>,
    pub join: JoinHandle<WriterStats>,
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as f64 / 1000.0)
        .unwrap_or(0.0)
}

impl Writer {
    pub fn connect(url: &str, channels: Vec<u32>, points: u32) -> Result<Writer, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis {url}: {e}"))?;
        let con = client
            .get_connection_with_timeout(Duration::from_secs(3))
            .map_err(|e| format!("redis {url}: {e}"))?;
        con.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        Ok(Writer {
            con,
            channels,
            points: points.max(2),
            round: 0,
            json: String::with_capacity(64 + points as usize * 16),
        })
    }

    pub fn round(&self) -> u64 {
        self.round
    }

    /// Writes the next round to every channel; returns the pipeline's round trip.
    pub fn write_round(&mut self) -> Result<Duration, String> {
        self.round += 1;
        let round = self.round;
        let mut pipe = redis::pipe();
        let sent = unix_ms();
        for &ch in &self.channels {
            let j = &mut self.json;
            j.clear();
            crate::ceiling::values_json(j, sent, round, ch, self.points);
            pipe.cmd("FCALL")
                .arg("comsrv_write_data")
                .arg(1)
                .arg(format!("comsrv:{ch}:T"))
                .arg(j.as_str())
                .ignore();
        }
        let t = Instant::now();
        pipe.query::<()>(&mut self.con)
            .map_err(|e| format!("round {round}: {e}"))?;
        Ok(t.elapsed())
    }

    /// Writes a round every `1/rate_hz` s on its own thread until `stop`.
    pub fn spawn(mut self, rate_hz: f64) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(self.round));
        let (s, p) = (stop.clone(), progress.clone());
        let join = std::thread::Builder::new()
            .name("lt-writer".into())
            .spawn(move || {
                let period = Duration::from_secs_f64(1.0 / rate_hz);
                let t0 = Instant::now();
                let mut st = WriterStats {
                    final_round: self.round,
                    ..Default::default()
                };
                let mut k: u64 = 0;
                while !s.load(Relaxed) {
                    let target = t0 + period.mul_f64(k as f64);
                    let now = Instant::now();
                    if now < target {
                        std::thread::sleep((target - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    // Behind by more than a period: skip the missed slots.
                    let due = ((now - t0).as_secs_f64() / period.as_secs_f64()) as u64;
                    if due > k {
                        st.late += due - k;
                        k = due;
                    }
                    match self.write_round() {
                        Ok(rtt) => {
                            st.rounds += 1;
                            st.final_round = self.round;
                            st.rtt.record(rtt.as_micros() as u64);
                        }
                        Err(e) => {
                            st.errors += 1;
                            st.first_error.get_or_insert(e);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    p.store(self.round, Relaxed);
                    k += 1;
                }
                st
            })
            .expect("spawn writer thread");
        Running {
            stop,
            progress,
            join,
        }
    }
}

impl Running {
    pub fn finish(self) -> WriterStats {
        self.stop.store(true, Relaxed);
        self.join.join().unwrap_or_default()
    }
}
