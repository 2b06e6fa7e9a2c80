//! The `[history]` section: where history is recorded and read, how writes are batched and
//! buffered, and the bounds on queries — with its own validation.

use crate::error::ConfigError;
use serde::Deserialize;

/// History on InfluxDB 1.x: the recorder writes every collected change, `/history` reads it
/// back. Off unless `url` is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// InfluxDB's HTTP API, e.g. `http://127.0.0.1:8086`. Default "" = no history (the
    /// route answers 503 `HISTORY_UNAVAILABLE`).
    pub url: String,
    /// Database. Default `voltage`.
    pub database: String,
    /// Retention policy to write to and read from. Default "" = the database's default.
    pub retention_policy: String,
    /// `CREATE DATABASE` at start-up and whenever InfluxDB reports it missing. Default true.
    pub create_database: bool,
    /// A batch is written when it holds this many lines (one line per changed channel and
    /// data type)… Default 5000.
    pub batch_max_lines: usize,
    /// …or when its oldest line is this old, in ms. Default 1000.
    pub batch_max_ms: u64,
    /// Collected changes waiting for the recorder thread; when full, changes are dropped and
    /// counted (the feed never waits). Default 1024.
    pub queue: usize,
    /// Where batches InfluxDB could not take wait, oldest first, to be written in order when
    /// it returns. Default "" = in memory (lost on restart).
    pub buffer_dir: String,
    /// Most bytes the buffer holds; a batch that does not fit is dropped and counted.
    /// Default 268435456 (256 MiB).
    pub buffer_max_bytes: u64,
    /// Timeout of one write, query or probe, in ms. Default 5000.
    pub timeout_ms: u64,
    /// Longest `end_time - start_time` of a query, seconds. Default 31622400 (366 days).
    pub max_range_secs: i64,
    /// Most buckets of a downsampled query (`interval` + `agg`). Default 50000.
    pub max_buckets: i64,
    /// Most records one CSV export holds. Default 100000.
    pub csv_max_records: u32,
    /// Most bytes of one InfluxDB answer. Default 67108864 (64 MiB).
    pub max_answer_bytes: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        let limits = super::Limits::default();
        HistoryConfig {
            url: String::new(),
            database: "voltage".into(),
            retention_policy: String::new(),
            create_database: true,
            batch_max_lines: 5000,
            batch_max_ms: 1000,
            queue: 1024,
            buffer_dir: String::new(),
            buffer_max_bytes: 256 * 1024 * 1024,
            timeout_ms: 5000,
            max_range_secs: limits.max_range_secs,
            max_buckets: limits.max_buckets,
            csv_max_records: limits.csv_max_records,
            max_answer_bytes: 64 * 1024 * 1024,
        }
    }
}

impl HistoryConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    pub fn limits(&self) -> super::Limits {
        super::Limits {
            max_range_secs: self.max_range_secs,
            max_buckets: self.max_buckets,
            csv_max_records: self.csv_max_records,
        }
    }

    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError(format!("history.{m}")));
        if self.enabled() {
            let Some(rest) = self.url.strip_prefix("http://") else {
                return err("url must be http://host:port (InfluxDB 1.x HTTP API)");
            };
            if rest.is_empty() || rest.contains(['?', '#', ' ']) {
                return err("url must be http://host:port (InfluxDB 1.x HTTP API)");
            }
        }
        let name_ok = |s: &str| {
            s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if self.database.is_empty() || !name_ok(&self.database) {
            return err("database must be 1-64 of A-Za-z0-9_.-");
        }
        if !name_ok(&self.retention_policy) {
            return err("retention_policy must be at most 64 of A-Za-z0-9_.-");
        }
        if !(1..=100_000).contains(&self.batch_max_lines)
            || !(1..=60_000).contains(&self.batch_max_ms)
        {
            return err("batch_max_lines must be in 1..=100000 and batch_max_ms in 1..=60000");
        }
        if !(1..=1_000_000).contains(&self.queue) {
            return err("queue must be in 1..=1000000");
        }
        if self.buffer_max_bytes < 64 * 1024 {
            return err("buffer_max_bytes must be at least 65536");
        }
        if !(100..=600_000).contains(&self.timeout_ms) {
            return err("timeout_ms must be in 100..=600000");
        }
        if self.max_range_secs < 60 || self.max_buckets < 3600 || self.csv_max_records < 1000 {
            return err(
                "max_range_secs must be >= 60, max_buckets >= 3600, csv_max_records >= 1000",
            );
        }
        if self.max_answer_bytes < 1024 * 1024 {
            return err("max_answer_bytes must be at least 1048576");
        }
        Ok(())
    }
}
