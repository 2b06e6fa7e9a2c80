//! Operational metrics, pure: the counters the threads keep (each counter written by one
//! thread only, so a plain load-and-store is enough and costs no locked instruction on the
//! hot path), the request histograms, and their rendering in the Prometheus text format
//! (`GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `n` to a counter only one thread writes (others only read it).
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Adds `n` to a counter several threads write.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// What one shard's WebSocket side did (written by that shard only). Aligned to a cache line
/// so two shards' counters never share one.
#[repr(align(64))]
#[derive(Default, Debug)]
pub struct ShardCounters {
    /// Frames written (pushes, replies, pings, closes).
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Pushes a connection over its outbound budget skipped (it is sent the latest values
    /// when it drains: conflation).
    pub skipped: AtomicU64,
}

/// What the Redis thread did (written by it only).
#[derive(Default, Debug)]
pub struct FeedCounters {
    pub collects: AtomicU64,
    /// Failures that dropped the connection (each is followed by a reconnect).
    pub errors: AtomicU64,
    /// When the last collect finished (Unix ms) and how long it took (µs).
    pub last_collect_ms: AtomicU64,
    pub last_collect_us: AtomicU64,
    /// Control commands queued, and final results by status.
    pub control_queued: AtomicU64,
    pub control_executed: AtomicU64,
    pub control_failed: AtomicU64,
    pub control_timeout: AtomicU64,
    /// Alarm events read, by kind.
    pub alarm_triggers: AtomicU64,
    pub alarm_recoveries: AtomicU64,
    pub alarm_acks: AtomicU64,
}

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// One route's latency histogram.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative; the last slot is `+Inf`).
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum_secs: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, secs: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum_secs += secs;
        self.count += 1;
    }

    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
        self.sum_secs += o.sum_secs;
        self.count += o.count;
    }
}

/// HTTP requests answered by one shard: counts by (route, status), latency by route.
#[derive(Clone, Debug, Default)]
pub struct HttpStats {
    pub requests: BTreeMap<(&'static str, u16), u64>,
    pub latency: BTreeMap<&'static str, Histogram>,
}

impl HttpStats {
    pub fn record(&mut self, route: &'static str, status: u16, secs: f64) {
        *self.requests.entry((route, status)).or_default() += 1;
        self.latency.entry(route).or_default().observe(secs);
    }

    pub fn merge(&mut self, o: &HttpStats) {
        for (k, v) in &o.requests {
            *self.requests.entry(*k).or_default() += v;
        }
        for (k, h) in &o.latency {
            self.latency.entry(k).or_default().merge(h);
        }
    }
}

/// Everything `/metrics` reports, gathered at one instant by the shell.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// This gateway's `instance_id` (`voltage_instance_info`).
    pub instance: String,
    pub connections: u64,
    pub websockets_per_shard: Vec<u64>,
    /// (frames, bytes, skipped) per shard.
    pub shards: Vec<(u64, u64, u64)>,
    pub http: HttpStats,
    pub feed_collects: u64,
    pub feed_errors: u64,
    pub feed_last_collect_age_secs: Option<f64>,
    pub feed_last_collect_secs: f64,
    pub redis_up: bool,
    pub control: [(&'static str, u64); 4],
    pub alarm_events: [(&'static str, u64); 3],
    /// Active alarms per level 0..=3, and how many of them are acknowledged.
    pub active_alarms: [u64; 4],
    pub active_acknowledged: u64,
    pub auth_login_failures: u64,
    pub auth_token_refusals: u64,
    pub uptime_secs: u64,
    /// The history recorder's state (`None`: no history store configured).
    pub history: Option<crate::history::Status>,
}

impl Sample {
    /// The feed's counters at `now_ms`.
    pub fn feed(&mut self, f: &FeedCounters, now_ms: i64) {
        self.feed_collects = get(&f.collects);
        self.feed_errors = get(&f.errors);
        let last = get(&f.last_collect_ms);
        self.feed_last_collect_age_secs =
            (last > 0).then(|| (now_ms as f64 - last as f64).max(0.0) / 1000.0);
        self.feed_last_collect_secs = get(&f.last_collect_us) as f64 / 1e6;
        self.control = [
            ("queued", get(&f.control_queued)),
            ("executed", get(&f.control_executed)),
            ("failed", get(&f.control_failed)),
            ("timeout", get(&f.control_timeout)),
        ];
        self.alarm_events = [
            ("trigger", get(&f.alarm_triggers)),
            ("recover", get(&f.alarm_recoveries)),
            ("ack", get(&f.alarm_acks)),
        ];
    }

    /// A shard's counters.
    pub fn shard(&mut self, c: &ShardCounters) {
        self.shards
            .push((get(&c.frames), get(&c.bytes), get(&c.skipped)));
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn float(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".into()
    }
}

/// The Prometheus text exposition (version 0.0.4) of `s`.
pub fn render(s: &Sample) -> String {
    let mut o = String::with_capacity(4096);
    family(&mut o, "voltage_up", "gauge", "1 while the gateway serves.");
    o.push_str("voltage_up 1\n");
    family(
        &mut o,
        "voltage_instance_info",
        "gauge",
        "This gateway's instance id (control.instance_id), always 1.",
    );
    // Instance ids are 1-64 of A-Za-z0-9_.:- (validated): nothing to escape.
    let _ = writeln!(o, "voltage_instance_info{{instance=\"{}\"}} 1", s.instance);
    family(
        &mut o,
        "voltage_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
    );
    let _ = writeln!(o, "voltage_uptime_seconds {}", s.uptime_secs);
    family(
        &mut o,
        "voltage_connections",
        "gauge",
        "Open client connections (HTTP and WebSocket).",
    );
    let _ = writeln!(o, "voltage_connections {}", s.connections);
    family(
        &mut o,
        "voltage_websocket_connections",
        "gauge",
        "Open WebSocket connections per shard.",
    );
    for (i, n) in s.websockets_per_shard.iter().enumerate() {
        let _ = writeln!(o, "voltage_websocket_connections{{shard=\"{i}\"}} {n}");
    }
    family(
        &mut o,
        "voltage_ws_frames_sent_total",
        "counter",
        "WebSocket frames written, per shard.",
    );
    for (i, (f, _, _)) in s.shards.iter().enumerate() {
        let _ = writeln!(o, "voltage_ws_frames_sent_total{{shard=\"{i}\"}} {f}");
    }
    family(
        &mut o,
        "voltage_ws_bytes_sent_total",
        "counter",
        "WebSocket bytes written, per shard.",
    );
    for (i, (_, b, _)) in s.shards.iter().enumerate() {
        let _ = writeln!(o, "voltage_ws_bytes_sent_total{{shard=\"{i}\"}} {b}");
    }
    family(
        &mut o,
        "voltage_ws_conflation_skips_total",
        "counter",
        "Pushes skipped for clients over their outbound budget (they get the latest values when they drain).",
    );
    for (i, (_, _, k)) in s.shards.iter().enumerate() {
        let _ = writeln!(o, "voltage_ws_conflation_skips_total{{shard=\"{i}\"}} {k}");
    }
    family(
        &mut o,
        "voltage_redis_up",
        "gauge",
        "1 while Redis is reachable.",
    );
    let _ = writeln!(o, "voltage_redis_up {}", u8::from(s.redis_up));
    family(
        &mut o,
        "voltage_feed_collects_total",
        "counter",
        "Collects of changes from Redis.",
    );
    let _ = writeln!(o, "voltage_feed_collects_total {}", s.feed_collects);
    family(
        &mut o,
        "voltage_feed_errors_total",
        "counter",
        "Redis failures that dropped the feed's connection.",
    );
    let _ = writeln!(o, "voltage_feed_errors_total {}", s.feed_errors);
    family(
        &mut o,
        "voltage_feed_lag_seconds",
        "gauge",
        "Seconds since the feed last finished a collect (the age of what clients see; grows while Redis is down).",
    );
    let _ = writeln!(
        o,
        "voltage_feed_lag_seconds {}",
        s.feed_last_collect_age_secs.map_or("NaN".into(), float)
    );
    family(
        &mut o,
        "voltage_feed_collect_duration_seconds",
        "gauge",
        "How long the last collect took.",
    );
    let _ = writeln!(
        o,
        "voltage_feed_collect_duration_seconds {}",
        float(s.feed_last_collect_secs)
    );
    family(
        &mut o,
        "voltage_http_requests_total",
        "counter",
        "HTTP requests answered, by route and status.",
    );
    for ((route, status), n) in &s.http.requests {
        let _ = writeln!(
            o,
            "voltage_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
    family(
        &mut o,
        "voltage_http_request_duration_seconds",
        "histogram",
        "HTTP request latency, by route.",
    );
    for (route, h) in &s.http.latency {
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += h.counts[i];
            let _ = writeln!(
                o,
                "voltage_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {cum}"
            );
        }
        cum += h.counts[BUCKETS.len()];
        let _ = writeln!(
            o,
            "voltage_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(
            o,
            "voltage_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
            float(h.sum_secs)
        );
        let _ = writeln!(
            o,
            "voltage_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
            h.count
        );
    }
    family(
        &mut o,
        "voltage_control_commands_total",
        "counter",
        "Control commands of this gateway: queued, and final results by status.",
    );
    for (status, n) in s.control {
        let _ = writeln!(
            o,
            "voltage_control_commands_total{{status=\"{status}\"}} {n}"
        );
    }
    family(
        &mut o,
        "voltage_alarm_events_total",
        "counter",
        "Alarm events read from Redis, by kind.",
    );
    for (kind, n) in s.alarm_events {
        let _ = writeln!(o, "voltage_alarm_events_total{{kind=\"{kind}\"}} {n}");
    }
    family(
        &mut o,
        "voltage_alarms_active",
        "gauge",
        "Active alarms, by level (0 low .. 3 urgent).",
    );
    for (level, n) in s.active_alarms.iter().enumerate() {
        let _ = writeln!(o, "voltage_alarms_active{{level=\"{level}\"}} {n}");
    }
    family(
        &mut o,
        "voltage_alarms_acknowledged",
        "gauge",
        "Active alarms that are acknowledged.",
    );
    let _ = writeln!(o, "voltage_alarms_acknowledged {}", s.active_acknowledged);
    family(
        &mut o,
        "voltage_auth_failures_total",
        "counter",
        "Refused logins and refused tokens.",
    );
    let _ = writeln!(
        o,
        "voltage_auth_failures_total{{kind=\"login\"}} {}",
        s.auth_login_failures
    );
    let _ = writeln!(
        o,
        "voltage_auth_failures_total{{kind=\"token\"}} {}",
        s.auth_token_refusals
    );
    if let Some(h) = &s.history {
        for (name, kind, help, v) in [
            ("voltage_history_up", "gauge", "1 while the last write or probe reached InfluxDB.", u64::from(h.up)),
            ("voltage_history_written_points_total", "counter", "Point values InfluxDB accepted.", h.written_points),
            ("voltage_history_dropped_points_total", "counter", "Point values lost: recorder queue or buffer full, or refused by InfluxDB as bad data.", h.dropped_points),
            ("voltage_history_buffered_points", "gauge", "Point values waiting in the buffer for InfluxDB.", h.buffered_points),
            ("voltage_history_buffered_bytes", "gauge", "Bytes waiting in the buffer for InfluxDB.", h.buffered_bytes),
            ("voltage_history_write_errors_total", "counter", "Writes to InfluxDB that failed.", h.write_errors),
        ] {
            family(&mut o, name, kind, help);
            let _ = writeln!(o, "{name} {v}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_in_the_text() {
        let mut s = Sample::default();
        s.http.record("/api/channels", 200, 0.0003);
        s.http.record("/api/channels", 200, 0.02);
        s.http.record("/api/channels", 404, 9.0);
        let t = render(&s);
        assert!(
            t.contains("voltage_http_requests_total{route=\"/api/channels\",status=\"200\"} 2\n")
        );
        assert!(t.contains("voltage_http_request_duration_seconds_bucket{route=\"/api/channels\",le=\"0.0005\"} 1\n"));
        assert!(t.contains("voltage_http_request_duration_seconds_bucket{route=\"/api/channels\",le=\"0.025\"} 2\n"));
        assert!(t.contains(
            "voltage_http_request_duration_seconds_bucket{route=\"/api/channels\",le=\"+Inf\"} 3\n"
        ));
        assert!(
            t.contains("voltage_http_request_duration_seconds_count{route=\"/api/channels\"} 3\n")
        );
        assert!(t.contains("voltage_feed_lag_seconds NaN\n"));
    }
}
