//! Log lines on stderr, as text (`{time} {LEVEL} {message}`) or as JSON objects
//! (`{"time","level","message"}` one per line, for log shippers), filtered by level. The
//! gateway logs rarely (start, stop, dependency changes, refused configuration), so a logging
//! framework would add nothing but dependencies.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Levels, most severe first.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error = 0,
    Warn = 1,
    #[default]
    Info = 2,
    Debug = 3,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// Text or JSON lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Json,
}

static MAX: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicBool = AtomicBool::new(false);

/// Sets what is logged and how (once at start-up; the default is `info` as text).
pub fn configure(level: Level, format: Format) {
    MAX.store(level as u8, Ordering::Relaxed);
    JSON.store(format == Format::Json, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX.load(Ordering::Relaxed)
}

/// One line for `msg` at `level` at `time` (ISO 8601).
pub fn render(level: Level, msg: &str, time: &str, json: bool) -> String {
    if json {
        let mut out = Vec::with_capacity(msg.len() + 64);
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(time.as_bytes());
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(level.as_str().as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        crate::json::write_str(&mut out, msg);
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    } else {
        format!("{time} {} {msg}", level.as_str())
    }
}

fn line(level: Level, msg: &str) {
    if enabled(level) {
        let json = JSON.load(Ordering::Relaxed);
        eprintln!("{}", render(level, msg, &crate::time::iso_now(), json));
    }
}

pub fn debug(msg: &str) {
    line(Level::Debug, msg);
}

pub fn info(msg: &str) {
    line(Level::Info, msg);
}

pub fn warn(msg: &str) {
    line(Level::Warn, msg);
}

pub fn error(msg: &str) {
    line(Level::Error, msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            render(
                Level::Warn,
                "Redis \"down\"",
                "2026-12-02T10:00:00.000Z",
                true
            ),
            r#"{"time":"2026-12-02T10:00:00.000Z","level":"WARN","message":"Redis \"down\""}"#
        );
        assert_eq!(
            render(Level::Info, "up", "2026-12-02T10:00:00.000Z", false),
            "2026-12-02T10:00:00.000Z INFO up"
        );
        assert!(Level::Error < Level::Debug);
    }
}
