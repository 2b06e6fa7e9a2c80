//! `/health`, `/health/ready`, `/health/detailed` and `/metrics`.

use super::{Call, Step, View};
use crate::error::{ApiError, ErrorCode};
use crate::http::Response;
use crate::json;
use std::time::Duration;

/// How long `/health/detailed` waits for the feed's live Redis round trip before reporting
/// it as null (a busy feed or a hung Redis must not hang the health check).
const RTT_DEADLINE: Duration = Duration::from_millis(250);

/// Whether the feed's last completed collect is older than `feed_max_lag_ms`.
fn lagging(view: &View<'_>, now: i64) -> bool {
    crate::site::lags(view.gateway.feed_lag_ms(now), view.config.feed_max_lag_ms)
}

/// `healthy`, or `degraded` while Redis is down, the site's data is not loaded yet, or the
/// feed lags (live data that stopped moving).
fn status(view: &View<'_>, now: i64) -> &'static str {
    if view.redis.healthy && view.snapshot.loaded && !lagging(view, now) {
        "healthy"
    } else {
        "degraded"
    }
}

/// Liveness: 200 while the process serves; the status says whether its data source is.
pub fn basic(c: &Call<'_>) -> Result<Step, ApiError> {
    let (view, now) = (c.view, c.now);
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"status\":");
    json::write_str(&mut out, status(view, now));
    out.extend_from_slice(b",\"service\":");
    json::write_str(&mut out, &view.config.service_name);
    out.push(b'}');
    Ok(Response::success(&out, None, now).into())
}

/// Readiness for load balancers: 200 once the site's data is loaded and Redis reachable,
/// else 503 `SERVICE_UNAVAILABLE` with the reason.
pub fn ready(c: &Call<'_>) -> Result<Step, ApiError> {
    let (view, now) = (c.view, c.now);
    if status(view, now) == "healthy" {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"{\"status\":\"ready\",\"service\":");
        json::write_str(&mut out, &view.config.service_name);
        out.push(b'}');
        return Ok(Response::success(&out, None, now).into());
    }
    let why = if !view.redis.healthy {
        view.redis.message.clone()
    } else if !view.snapshot.loaded {
        "the site's data is still being loaded from Redis".to_string()
    } else {
        crate::site::lagging(view.config.feed_max_lag_ms)
    };
    Err(ErrorCode::ServiceUnavailable.context(why))
}

/// Overall `degraded` (still HTTP 200) when a dependency is down: the gateway keeps serving
/// the last state it has, and the body says why that state may be old. `rtt_ms` is a live
/// `PING` through the feed's connection, or null when Redis is down or the feed did not
/// answer within the health check's deadline.
pub fn detailed(_: &Call<'_>) -> Result<Step, ApiError> {
    Ok(Step::redis(
        crate::job::Ping,
        RTT_DEADLINE,
        |rtt, view, now| Ok(report(view, rtt.ok(), now).into()),
    ))
}

fn report(view: &View<'_>, rtt: Option<Duration>, now: i64) -> Response {
    let (redis, snap, stats) = (view.redis, view.snapshot, &view.gateway.stats());
    let history = view.gateway.history_status();
    let lag = view.gateway.feed_lag_ms(now);
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(b"{\"status\":");
    // A history store that is down degrades the gateway too (history is being buffered or
    // lost), though readiness — serving live data — does not depend on it.
    let history_down = history.as_ref().is_some_and(|h| !h.up);
    json::write_str(
        &mut out,
        if history_down {
            "degraded"
        } else {
            status(view, now)
        },
    );
    out.extend_from_slice(b",\"service\":");
    json::write_str(&mut out, &view.config.service_name);
    out.extend_from_slice(b",\"timestamp\":");
    json::write_str(&mut out, &crate::wire::iso(now));
    out.extend_from_slice(b",\"uptime_seconds\":");
    json::write_u64(&mut out, stats.uptime_secs);
    out.extend_from_slice(b",\"connections\":");
    json::write_u64(&mut out, stats.connections as u64);
    out.extend_from_slice(b",\"websockets_per_shard\":[");
    for (i, n) in stats.websockets_per_shard.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_u64(&mut out, *n as u64);
    }
    out.extend_from_slice(b"],\"channels\":");
    json::write_u64(&mut out, snap.channels.len() as u64);
    out.extend_from_slice(b",\"seq\":");
    json::write_u64(&mut out, snap.seq);
    out.extend_from_slice(b",\"dependencies\":{\"redis\":{\"status\":");
    json::write_str(
        &mut out,
        if redis.healthy {
            "healthy"
        } else {
            "unhealthy"
        },
    );
    out.extend_from_slice(b",\"message\":");
    json::write_str(&mut out, &redis.message);
    out.extend_from_slice(b",\"rtt_ms\":");
    match rtt {
        // Milliseconds with microsecond resolution: a loopback PING takes ~0.05 ms.
        Some(rtt) => out.extend_from_slice(format!("{:.3}", rtt.as_secs_f64() * 1000.0).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    // The feed: how far behind live data is (ms since its last completed collect).
    out.extend_from_slice(b",\"feed\":{\"status\":");
    json::write_str(
        &mut out,
        if lagging(view, now) {
            "lagging"
        } else {
            "healthy"
        },
    );
    out.extend_from_slice(b",\"lag_ms\":");
    match lag {
        Some(l) => json::write_u64(&mut out, l),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"max_lag_ms\":");
    json::write_u64(&mut out, view.config.feed_max_lag_ms);
    out.push(b'}');
    if let Some(h) = &history {
        out.extend_from_slice(b",\"history\":{\"status\":");
        json::write_str(&mut out, if h.up { "healthy" } else { "unhealthy" });
        out.extend_from_slice(b",\"message\":");
        json::write_str(&mut out, &h.message);
        for (k, v) in [
            ("written_points", h.written_points),
            ("dropped_points", h.dropped_points),
            ("buffered_points", h.buffered_points),
            ("buffered_bytes", h.buffered_bytes),
            ("write_errors", h.write_errors),
        ] {
            out.push(b',');
            json::write_key(&mut out, k);
            json::write_u64(&mut out, v);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}}");
    Response::success(&out, None, now)
}

/// `GET /metrics`: the Prometheus text format.
pub fn metrics(c: &Call<'_>) -> Result<Step, ApiError> {
    let text = crate::metrics::render(&c.view.gateway.metrics(c.now));
    let mut r = Response::json(200, text.into_bytes());
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    Ok(r.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::site::{DependencyHealth, Snapshot};

    #[test]
    fn detailed_reports_the_round_trip_or_null() {
        let config = Config::default();
        let snapshot = Snapshot {
            loaded: true,
            ..Snapshot::default()
        };
        let redis = DependencyHealth {
            healthy: true,
            message: "Redis connection successful".into(),
        };
        let alarms = Default::default();
        let catalog = Default::default();
        let principal = crate::auth::Principal::anonymous(Some(crate::auth::Role::Viewer));
        let auth = crate::auth::Auth::new(&config.auth, &[7; 32]);
        let view = View::new(
            &snapshot, &redis, &config, &alarms, &catalog, &principal, &auth,
        );
        let body = |rtt| String::from_utf8(report(&view, rtt, 0).body).unwrap();
        let b = body(Some(Duration::from_micros(153)));
        assert!(
            b.contains(r#""redis":{"status":"healthy","message":"Redis connection successful","rtt_ms":0.153}"#),
            "{b}"
        );
        assert!(body(None).contains(r#""rtt_ms":null}"#));
    }
}
