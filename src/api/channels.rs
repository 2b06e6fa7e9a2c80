//! `/api/channels…`: list, status, realtime values, history.

use crate::error::{ApiError, ErrorCode};
use crate::http::{Query, Response};
use crate::json;
use crate::model::{ChannelId, DataType};
use crate::state::{render_values, ChannelState, Shared, TypeState};

fn write_channel(out: &mut Vec<u8>, id: ChannelId, ch: &ChannelState, now: i64, stale_after: i64) {
    let last = ch.last_update();
    let status = if now - last > stale_after {
        "stale"
    } else {
        "active"
    };
    out.extend_from_slice(b"{\"channel_id\":");
    json::write_u64(out, u64::from(id.0));
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"last_update\":");
    json::write_i64(out, last);
    out.extend_from_slice(b",\"active_points\":");
    json::write_u64(out, ch.active_points() as u64);
    out.push(b'}');
}

fn stale_after(shared: &Shared) -> i64 {
    i64::try_from(shared.config.stale_after_secs).unwrap_or(i64::MAX)
}

/// `GET /api/channels`: every known channel, sorted by id.
pub fn list(shared: &Shared) -> Response {
    let snap = shared.snapshot.load();
    let now = crate::time::now_secs();
    let mut out = Vec::with_capacity(16 + snap.channels.len() * 72);
    out.push(b'[');
    for (i, (id, ch)) in snap.channels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_channel(&mut out, *id, ch, now, stale_after(shared));
    }
    out.push(b']');
    let msg = format!("Found {} channels", snap.channels.len());
    Response::success(&out, Some(&msg))
}

/// `GET /api/channels/{id}/status`.
pub fn status(shared: &Shared, id: ChannelId) -> Result<Response, ApiError> {
    let snap = shared.snapshot.load();
    let ch = snap
        .channels
        .get(&id)
        .ok_or_else(|| ApiError::channel_not_found(id))?;
    let mut out = Vec::with_capacity(96);
    write_channel(
        &mut out,
        id,
        ch,
        crate::time::now_secs(),
        stale_after(shared),
    );
    Ok(Response::success(&out, None))
}

fn write_record(out: &mut Vec<u8>, id: ChannelId, t: DataType, state: &TypeState, values: &[u8]) {
    out.extend_from_slice(b"{\"channel_id\":");
    json::write_u64(out, u64::from(id.0));
    out.extend_from_slice(b",\"data_type\":\"");
    out.extend_from_slice(t.as_str().as_bytes());
    out.extend_from_slice(b"\",\"timestamp\":");
    json::write_i64(out, state.timestamp);
    out.extend_from_slice(b",\"values\":");
    out.extend_from_slice(values);
    out.push(b'}');
}

/// `GET /api/channels/{id}/realtime?data_type&point_id&limit`: one record per data type that
/// has values (after the filters); `limit` caps the points in each record.
pub fn realtime(shared: &Shared, id: ChannelId, q: &Query) -> Result<Response, ApiError> {
    let data_type = q.data_type("data_type")?;
    let point_id = q.u32_in("point_id", 0, u32::MAX)?;
    let limit = q.u32_in("limit", 1, 1000)?.unwrap_or(100) as usize;
    let snap = shared.snapshot.load();
    let ch = snap
        .channels
        .get(&id)
        .ok_or_else(|| ApiError::channel_not_found(id))?;
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    let mut records = 0;
    for t in DataType::ALL {
        if data_type.is_some_and(|want| want != t) {
            continue;
        }
        let Some(state) = ch.get(t) else { continue };
        if records > 0 {
            out.push(b',');
        }
        if let Some(pid) = point_id {
            let Ok(i) = state.points.binary_search_by_key(&pid, |(p, _)| *p) else {
                continue;
            };
            write_record(&mut out, id, t, state, &render_values(&state.points[i..=i]));
        } else if state.points.len() <= limit {
            // The common case splices the fragment rendered once at ingest.
            write_record(&mut out, id, t, state, &state.values_json);
        } else {
            write_record(
                &mut out,
                id,
                t,
                state,
                &render_values(&state.points[..limit]),
            );
        }
        records += 1;
    }
    out.push(b']');
    let msg = format!("Retrieved {records} data records");
    Ok(Response::success(&out, Some(&msg)))
}

/// `GET /api/channels/{id}/history`: parameters are validated as the contract says; the
/// answer is 503 `HISTORY_UNAVAILABLE` until a history store is configured.
pub fn history(shared: &Shared, id: ChannelId, q: &Query) -> Result<Response, ApiError> {
    let now = crate::time::now_secs();
    let end = q.unix_secs("end_time")?.unwrap_or(now);
    let start = q.unix_secs("start_time")?.unwrap_or(end - 3600);
    if start >= end {
        return Err(ApiError::invalid_parameter(
            "start_time",
            &format!("must be before end_time ({start} >= {end})"),
        ));
    }
    q.data_type("data_type")?;
    q.u32_in("point_id", 0, u32::MAX)?;
    q.u32_in("limit", 1, 1000)?;
    let _ = (shared, id);
    Err(ApiError::new(
        ErrorCode::HistoryUnavailable,
        "History store unavailable",
        "No history store (InfluxDB) is configured for this gateway",
    ))
}
