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
/// This gateway's `instance_id`, set once it is known: several gateways' logs stay apart.
static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names the instance on every line from now on (the first call wins).
pub fn set_instance(id: &str) {
    let _ = INSTANCE.set(id.to_string());
}

/// Sets what is logged and how (once at start-up; the default is `info` as text).
pub fn configure(level: Level, format: Format) {
    MAX.store(level as u8, Ordering::Relaxed);
    JSON.store(format == Format::Json, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX.load(Ordering::Relaxed)
}

/// One line for `msg` at `level` at `time` (ISO 8601), of `instance` when known.
pub fn render(level: Level, msg: &str, time: &str, json: bool, instance: Option<&str>) -> String {
    if json {
        let mut out = Vec::with_capacity(msg.len() + 64);
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(time.as_bytes());
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(level.as_str().as_bytes());
        if let Some(i) = instance {
            out.extend_from_slice(b"\",\"instance\":");
            crate::json::write_str(&mut out, i);
            out.extend_from_slice(b",\"message\":");
        } else {
            out.extend_from_slice(b"\",\"message\":");
        }
        crate::json::write_str(&mut out, msg);
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    } else {
        match instance {
            Some(i) => format!("{time} {} [{i}] {msg}", level.as_str()),
            None => format!("{time} {} {msg}", level.as_str()),
        }
    }
}

fn line(level: Level, msg: &str) {
    if enabled(level) {
        let json = JSON.load(Ordering::Relaxed);
        let instance = INSTANCE.get().map(String::as_str);
        eprintln!(
            "{}",
            render(level, msg, &crate::time::iso_now(), json, instance)
        );
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

/// How often one repeated message may be logged: a storm (a command flood filling the
/// parked-ack store, accepts failing) must not write megabytes of the same line.
const THROTTLE_LINES: u32 = 5;
const THROTTLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Per message key: at most `THROTTLE_LINES` lines per `THROTTLE_WINDOW`; the first line of
/// the next window says how many were left out. Pure: `now` comes in.
#[derive(Debug, Default)]
pub struct Throttle {
    keys: std::collections::HashMap<&'static str, (std::time::Instant, u32, u64)>,
}

impl Throttle {
    /// `Some(suppressed so far)` when a line for `key` may be logged now.
    pub fn allow(&mut self, key: &'static str, now: std::time::Instant) -> Option<u64> {
        let (start, lines, suppressed) = self.keys.entry(key).or_insert((now, 0, 0));
        if now.duration_since(*start) >= THROTTLE_WINDOW {
            *start = now;
            *lines = 0;
        }
        if *lines < THROTTLE_LINES {
            *lines += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

static THROTTLE: std::sync::Mutex<Option<Throttle>> = std::sync::Mutex::new(None);

/// `warn` for a line that can repeat fast: at most 5 a minute per `key`.
pub fn warn_limited(key: &'static str, msg: &str) {
    if !enabled(Level::Warn) {
        return;
    }
    let allowed = THROTTLE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Throttle::default)
        .allow(key, std::time::Instant::now());
    match allowed {
        Some(0) => warn(msg),
        Some(n) => warn(&format!("{msg} ({n} more like it were not logged)")),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_lines_are_throttled_and_counted() {
        let mut t = Throttle::default();
        let t0 = std::time::Instant::now();
        let allowed = (0..10_000).filter(|_| t.allow("k", t0).is_some()).count();
        assert_eq!(allowed, 5);
        assert_eq!(t.allow("other", t0), Some(0), "keys are apart");
        assert_eq!(t.allow("k", t0 + THROTTLE_WINDOW), Some(9_995));
        assert_eq!(t.allow("k", t0 + THROTTLE_WINDOW), Some(0));
    }

    #[test]
    fn lines() {
        assert_eq!(
            render(
                Level::Warn,
                "Redis \"down\"",
                "2026-12-02T10:00:00.000Z",
                true,
                None
            ),
            r#"{"time":"2026-12-02T10:00:00.000Z","level":"WARN","message":"Redis \"down\""}"#
        );
        assert_eq!(
            render(Level::Info, "up", "2026-12-02T10:00:00.000Z", false, None),
            "2026-12-02T10:00:00.000Z INFO up"
        );
        let t = "2026-12-02T10:00:00.000Z";
        assert_eq!(
            render(Level::Info, "up", t, true, Some("gw-a")),
            r#"{"time":"2026-12-02T10:00:00.000Z","level":"INFO","instance":"gw-a","message":"up"}"#
        );
        assert_eq!(
            render(Level::Info, "up", t, false, Some("gw-a")),
            "2026-12-02T10:00:00.000Z INFO [gw-a] up"
        );
        assert!(Level::Error < Level::Debug);
    }
}
