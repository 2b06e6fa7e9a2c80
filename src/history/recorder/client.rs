//! InfluxDB 1.x over HTTP (ureq, blocking; used only from the recorder's and the history
//! querier's own threads): `/ping`, `CREATE DATABASE`, `/write` of line protocol, `/query`.

use crate::config::HistoryConfig;
use std::time::Duration;

/// Why a write did not land.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Not reachable, timed out or answering 5xx: keep the batch and try again later.
    Unavailable(String),
    /// The database does not exist (404): create it and try again.
    NoDatabase,
    /// Refused as bad data (400): retrying cannot help. InfluxDB writes the valid lines of a
    /// partial write; the message says what was refused.
    Rejected(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Unavailable(m) => write!(f, "InfluxDB unavailable: {m}"),
            WriteError::NoDatabase => write!(f, "InfluxDB database missing"),
            WriteError::Rejected(m) => write!(f, "InfluxDB refused lines: {m}"),
        }
    }
}

/// A request to InfluxDB that did not get what it asked for (the transport error kept as the
/// source).
#[derive(Debug)]
pub enum InfluxError {
    /// No answer (refused, timed out, broken).
    Unreachable(ureq::Error),
    /// It answered, but not with success: which request, the status and its text.
    Answered {
        what: &'static str,
        status: u16,
        body: String,
    },
    /// The answer could not be read (too large, cut off).
    Unreadable(ureq::Error),
}

impl std::fmt::Display for InfluxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InfluxError::Unreachable(e) => e.fmt(f),
            InfluxError::Answered { what, status, body } if body.is_empty() => {
                write!(f, "{what} answered {status}")
            }
            InfluxError::Answered { what, status, body } => {
                write!(f, "{what} answered {status}: {body}")
            }
            InfluxError::Unreadable(e) => write!(f, "reading the answer: {e}"),
        }
    }
}

impl std::error::Error for InfluxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InfluxError::Unreachable(e) | InfluxError::Unreadable(e) => Some(e),
            InfluxError::Answered { .. } => None,
        }
    }
}

pub struct Influx {
    agent: ureq::Agent,
    base: String,
    database: String,
    retention_policy: String,
    max_answer_bytes: u64,
}

impl Influx {
    pub fn new(cfg: &HistoryConfig) -> Influx {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
            .http_status_as_error(false)
            .build()
            .into();
        Influx {
            agent,
            base: cfg.url.trim_end_matches('/').to_string(),
            database: cfg.database.clone(),
            retention_policy: cfg.retention_policy.clone(),
            max_answer_bytes: cfg.max_answer_bytes,
        }
    }

    /// `/ping` answers 204 when InfluxDB is up.
    pub fn ping(&self) -> Result<(), InfluxError> {
        let r = self
            .agent
            .get(format!("{}/ping", self.base))
            .call()
            .map_err(InfluxError::Unreachable)?;
        match r.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(InfluxError::Answered {
                what: "/ping",
                status,
                body: String::new(),
            }),
        }
    }

    /// `CREATE DATABASE` (a no-op when it exists).
    pub fn create_database(&self) -> Result<(), InfluxError> {
        // The name is validated (A-Za-z0-9_.-) by the configuration.
        let q = format!("CREATE DATABASE \"{}\"", self.database);
        let mut r = self
            .agent
            .post(format!("{}/query", self.base))
            .query("q", &q)
            .send_empty()
            .map_err(InfluxError::Unreachable)?;
        let status = r.status().as_u16();
        let body = short_text(&mut r);
        if status == 200 && !body.contains("\"error\"") {
            Ok(())
        } else {
            Err(InfluxError::Answered {
                what: "CREATE DATABASE",
                status,
                body: body.trim().to_string(),
            })
        }
    }

    /// Writes line protocol with millisecond timestamps.
    pub fn write(&self, lines: &[u8]) -> Result<(), WriteError> {
        let mut req = self
            .agent
            .post(format!("{}/write", self.base))
            .query("db", &self.database)
            .query("precision", "ms");
        if !self.retention_policy.is_empty() {
            req = req.query("rp", &self.retention_policy);
        }
        let mut r = req
            .header("Content-Type", "text/plain; charset=utf-8")
            .send(lines)
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        let status = r.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = short_text(&mut r);
        let msg = format!("/write answered {status}: {}", body.trim());
        match status {
            404 if body.contains("database not found") => Err(WriteError::NoDatabase),
            400 => Err(WriteError::Rejected(msg)),
            _ => Err(WriteError::Unavailable(msg)),
        }
    }

    /// Runs an InfluxQL query; timestamps as Unix milliseconds. The answer's JSON, at most
    /// `max_answer_bytes`.
    pub fn query(&self, q: &str) -> Result<Vec<u8>, InfluxError> {
        let mut req = self
            .agent
            .get(format!("{}/query", self.base))
            .query("db", &self.database)
            .query("epoch", "ms")
            .query("q", q);
        if !self.retention_policy.is_empty() {
            req = req.query("rp", &self.retention_policy);
        }
        let mut r = req.call().map_err(InfluxError::Unreachable)?;
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(self.max_answer_bytes)
            .read_to_vec()
            .map_err(InfluxError::Unreadable)?;
        match status {
            200 => Ok(body),
            status => Err(InfluxError::Answered {
                what: "/query",
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(512)])
                    .trim()
                    .to_string(),
            }),
        }
    }
}

/// A small answer's text (InfluxDB's error messages), at most 64 KiB.
fn short_text(r: &mut ureq::http::Response<ureq::Body>) -> String {
    r.body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default()
}
