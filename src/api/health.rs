//! `/health` and `/health/detailed`.

use crate::http::Response;
use crate::json;
use crate::state::Shared;
use std::sync::atomic::Ordering;

pub fn basic(shared: &Shared) -> Response {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"status\":\"healthy\",\"service\":");
    json::write_str(&mut out, &shared.config.service_name);
    out.push(b'}');
    Response::success(&out, None)
}

/// Overall `degraded` (still HTTP 200) when a dependency is down: the gateway keeps serving
/// the last state it has, and the body says why that state may be old.
pub fn detailed(shared: &Shared) -> Response {
    let redis = shared.redis.load();
    let snap = shared.snapshot.load();
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(b"{\"status\":");
    json::write_str(&mut out, if redis.healthy { "healthy" } else { "degraded" });
    out.extend_from_slice(b",\"service\":");
    json::write_str(&mut out, &shared.config.service_name);
    out.extend_from_slice(b",\"timestamp\":");
    json::write_str(&mut out, &crate::time::iso_now());
    out.extend_from_slice(b",\"uptime_seconds\":");
    json::write_u64(&mut out, shared.started.elapsed().as_secs());
    out.extend_from_slice(b",\"connections\":");
    json::write_u64(&mut out, shared.connections.load(Ordering::Relaxed) as u64);
    out.extend_from_slice(b",\"websockets_per_shard\":[");
    for (i, n) in shared.websockets.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_u64(&mut out, n.load(Ordering::Relaxed) as u64);
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
    out.extend_from_slice(b"}}}");
    Response::success(&out, None)
}
