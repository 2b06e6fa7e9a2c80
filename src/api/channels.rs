//! `/api/channels…`: list, status, realtime values, history.

use super::{Call, Step, View};
use crate::error::{ApiError, ErrorCode, Upstream};
use crate::http::Response;
use crate::model::{ChannelId, DataType};
use crate::site::ChannelState;
use crate::wire::values::{values, write_channel, write_record, ChannelSummary};

/// A channel is `unavailable` while its source (Redis) is unreachable — its last known
/// values are still served, but nothing says they are current — and `stale` after
/// `stale_after_secs` without a write.
fn summary(view: &View<'_>, id: ChannelId, ch: &ChannelState, now: i64) -> ChannelSummary {
    let stale_after = i64::try_from(view.config.stale_after_secs).unwrap_or(i64::MAX);
    let last_update = ch.last_update();
    ChannelSummary {
        channel: id,
        status: if !view.redis.healthy {
            "unavailable"
        } else if now.div_euclid(1000) - last_update > stale_after {
            "stale"
        } else {
            "active"
        },
        last_update,
        active_points: ch.active_points(),
    }
}

/// A channel configured but never written: known, with nothing in it.
static EMPTY: std::sync::LazyLock<ChannelState> = std::sync::LazyLock::new(ChannelState::default);

/// The channel's state: its data, or — configured but never written — an empty one.
fn known<'v>(view: &'v View<'_>, id: ChannelId) -> Option<&'v ChannelState> {
    view.snapshot
        .channels
        .get(&id)
        .or_else(|| view.catalog.channels.contains_key(&id).then(|| &*EMPTY))
}

/// `GET /api/channels`: every known channel (with data, or configured), sorted by id.
pub fn list(c: &Call<'_>) -> Result<Step, ApiError> {
    let (view, now) = (c.view, c.now);
    view.loaded()?;
    let snap = view.snapshot;
    let mut out = Vec::with_capacity(16 + snap.channels.len() * 72);
    out.push(b'[');
    let mut n = 0;
    let configured_only = view
        .catalog
        .channels
        .keys()
        .filter(|id| !snap.channels.contains_key(id))
        .map(|id| (*id, &*EMPTY));
    let mut all: Vec<(ChannelId, &ChannelState)> =
        snap.channels.iter().map(|(id, ch)| (*id, ch)).collect();
    if !view.catalog.channels.is_empty() {
        all.extend(configured_only);
        all.sort_by_key(|(id, _)| *id);
    }
    for (id, ch) in all {
        if n > 0 {
            out.push(b',');
        }
        write_channel(&mut out, &summary(view, id, ch, now));
        n += 1;
    }
    out.push(b']');
    let msg = format!("Found {n} channels");
    Ok(Response::success(&out, Some(&msg), now).into())
}

/// `GET /api/channels/{id}/status`.
pub fn status(c: &Call<'_>) -> Result<Step, ApiError> {
    let (view, id, now) = (c.view, c.params.channel(), c.now);
    view.loaded()?;
    let ch = known(view, id).ok_or_else(|| ApiError::channel_not_found(id))?;
    let mut out = Vec::with_capacity(96);
    write_channel(&mut out, &summary(view, id, ch, now));
    Ok(Response::success(&out, None, now).into())
}

/// `GET /api/channels/{id}/realtime?data_type&point_id&limit`: one record per data type that
/// has values (after the filters); `limit` caps the points in each record.
pub fn realtime(c: &Call<'_>) -> Result<Step, ApiError> {
    let (view, id, q, now) = (c.view, c.params.channel(), c.query, c.now);
    view.loaded()?;
    let data_type = q.data_type("data_type")?;
    let point_id = q.u32_in("point_id", 0, u32::MAX)?;
    let limit = q.u32_in("limit", 1, 1000)?.unwrap_or(100) as usize;
    let ch = known(view, id).ok_or_else(|| ApiError::channel_not_found(id))?;
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    let mut records = 0;
    for t in DataType::ALL {
        if data_type.is_some_and(|want| want != t) {
            continue;
        }
        let Some(state) = ch.get(t) else { continue };
        let found = point_id.map(|pid| state.points.binary_search_by_key(&pid, |(p, _)| *p));
        if matches!(found, Some(Err(_))) {
            continue;
        }
        if records > 0 {
            out.push(b',');
        }
        if let Some(Ok(i)) = found {
            write_record(
                &mut out,
                id,
                t,
                state.timestamp,
                &values(&state.points[i..=i]),
            );
        } else if state.points.len() <= limit {
            // The common case splices the fragment rendered once at ingest.
            write_record(&mut out, id, t, state.timestamp, &state.values_json);
        } else {
            write_record(
                &mut out,
                id,
                t,
                state.timestamp,
                &values(&state.points[..limit]),
            );
        }
        records += 1;
    }
    out.push(b']');
    let msg = format!("Retrieved {records} data records");
    Ok(Response::success(&out, Some(&msg), now).into())
}

/// `GET /api/channels/{id}/history`: recorded values from InfluxDB as realtime-shaped
/// records (JSON) or one row per value (`format=csv`). Parameters are validated first (each
/// 400 names its parameter); 503 `HISTORY_UNAVAILABLE` when no store is configured or it did
/// not answer. A page of raw records that is not the last says so in `X-History-More: true`
/// and `X-History-Next-After` (ask again with `after=` that value).
pub fn history(c: &Call<'_>) -> Result<Step, ApiError> {
    let id = c.params.channel();
    let cfg = &c.view.config.history;
    let query = crate::history::HistoryQuery::parse(id, c.query, c.now, &cfg.limits())?;
    let unavailable = |why: &str| ErrorCode::HistoryUnavailable.context(why);
    if !cfg.enabled() {
        return Err(unavailable(
            "No history store (InfluxDB) is configured for this gateway (history.url)",
        ));
    }
    let format = query.format;
    // The querier's own timeout answers first; this only covers a stuck thread.
    let deadline = std::time::Duration::from_millis(cfg.timeout_ms + 500);
    Ok(Step::history(query, deadline, move |page, _, now| {
        let page = match page {
            Ok(page) => page,
            Err(Upstream::Failed(e)) => return Err(unavailable(&e)),
            Err(_) => return Err(unavailable("InfluxDB did not answer in time")),
        };
        Ok(history_page(id, format, &page, now).into())
    }))
}

fn history_page(
    id: ChannelId,
    format: crate::history::Format,
    page: &crate::history::Page,
    now: i64,
) -> Response {
    let mut resp = match format {
        crate::history::Format::Json => {
            let mut out = Vec::with_capacity(64 + 96 * page.records.len());
            crate::history::write_json(&mut out, id, &page.records);
            let msg = format!("Retrieved {} history records", page.records.len());
            Response::success(&out, Some(&msg), now)
        }
        crate::history::Format::Csv => {
            let mut out = Vec::with_capacity(64 + 64 * page.records.len());
            crate::history::write_csv(&mut out, id, &page.records);
            let mut r = Response::json(200, out);
            r.content_type = "text/csv; charset=utf-8";
            r.with_header(
                "Content-Disposition",
                format!("attachment; filename=\"history-{}.csv\"", id.0),
            )
        }
    };
    if page.more {
        if let Some(last) = page.records.last() {
            resp = resp
                .with_header("X-History-More", "true".to_string())
                .with_header("X-History-Next-After", last.time_ms.to_string());
        }
    }
    resp
}
