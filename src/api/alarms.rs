//! `/api/alarms…`: the active alarms (from the feed's set, no Redis round trip) and the event
//! log (a page of `alarm:events`, read by the feed for the request).

use super::{Call, Step};
use crate::alarm::jobs::{Ack, Events};
use crate::alarm::wire::{write_active, write_event};
use crate::alarm::{EventId, Range};
use crate::error::{ApiError, ErrorCode, Upstream};
use crate::http::{Query, Response};
use crate::json;
use std::time::Duration;

/// An alarm id as the library assigns them: `ALM_{n}`.
pub fn valid_alarm_id(id: &str) -> bool {
    id.strip_prefix("ALM_")
        .is_some_and(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// How long a read of the alarm log or an acknowledgement waits for Redis.
const DEADLINE: Duration = Duration::from_secs(2);

/// `POST /api/alarms/{alarm_id}/ack`: `{alarm_id, acknowledged_by, acknowledged_at, already}`
/// (`already`: it had been acknowledged before — by whom and when is the first one's).
pub fn ack(c: &Call<'_>) -> Result<Step, ApiError> {
    let alarm_id = c.params.get("alarm_id").to_string();
    let job = Ack {
        alarm_id: alarm_id.clone(),
        by: c.view.principal.name().to_string(),
    };
    Ok(Step::redis(job, DEADLINE, move |acked, _, now| {
        let acked = match acked {
            Ok(a) => a,
            Err(Upstream::Refused(e)) if e.contains("ALARM_NOT_FOUND") => {
                return Err(ErrorCode::NotFound.context(format!(
                    "no active alarm {alarm_id} (recovered, or never raised)"
                )))
            }
            Err(Upstream::Refused(e)) => {
                return Err(
                    ErrorCode::InternalError.context(e.trim_start_matches("ERR ").to_string())
                )
            }
            Err(e) => return Err(e.unavailable("the acknowledgement could not be recorded")),
        };
        let mut d = Vec::with_capacity(160);
        d.extend_from_slice(b"{\"alarm_id\":");
        json::write_str(&mut d, &alarm_id);
        d.extend_from_slice(b",\"acknowledged_by\":");
        json::write_str(&mut d, &acked.by);
        d.extend_from_slice(b",\"acknowledged_at\":");
        match acked.at {
            Some(ms) => {
                d.push(b'"');
                d.extend_from_slice(crate::wire::iso(ms).as_bytes());
                d.push(b'"');
            }
            None => d.extend_from_slice(b"null"),
        }
        d.extend_from_slice(b",\"already\":");
        d.extend_from_slice(if acked.already { b"true" } else { b"false" });
        d.push(b'}');
        Ok(Response::success(&d, Some("Acknowledged"), now).into())
    }))
}

/// Events per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// What `GET /api/alarms/events` asks of the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsQuery {
    pub after: EventId,
    pub limit: usize,
    /// `since` was given: a page that does not start right after it says so.
    pub check_gap: bool,
}

impl EventsQuery {
    pub fn parse(q: &Query) -> Result<EventsQuery, ApiError> {
        let since = match q.get("since")? {
            None | Some("") => None,
            Some(s) => Some(EventId::parse(s).ok_or_else(|| {
                ApiError::invalid_parameter(
                    "since",
                    &format!("must be an alarm event id such as 1733150000123-0, got '{s}'"),
                )
            })?),
        };
        let limit = q.u32_in("limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT) as usize;
        Ok(EventsQuery {
            after: since.unwrap_or_default(),
            limit,
            check_gap: since.is_some(),
        })
    }
}

fn not_loaded() -> ApiError {
    ErrorCode::ServiceUnavailable.context("the gateway has not read the alarms from Redis yet")
}

/// `GET /api/alarms/active`: the active alarms, oldest trigger first.
pub fn active(c: &Call<'_>) -> Result<Step, ApiError> {
    let (view, now) = (c.view, c.now);
    if !view.alarms.loaded {
        return Err(not_loaded());
    }
    let list = view.alarms.in_order();
    let mut out = Vec::with_capacity(16 + list.len() * 320);
    out.push(b'[');
    for (i, a) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_active(&mut out, &a.event);
    }
    out.push(b']');
    let msg = format!("Found {} active alarms", list.len());
    Ok(Response::success(&out, Some(&msg), now).into())
}

/// `GET /api/alarms/events?since=&limit=`: `{events, more, next_since, gap, oldest_event_id}`;
/// page on with `since=next_since` while `more`.
pub fn events(c: &Call<'_>) -> Result<Step, ApiError> {
    let q = EventsQuery::parse(c.query)?;
    let job = Events {
        after: q.after,
        limit: q.limit,
        check_gap: q.check_gap,
    };
    Ok(Step::redis(job, DEADLINE, move |page, view, now| {
        let page = page.map_err(|e| {
            e.unavailable(&format!(
                "the alarm log could not be read ({})",
                view.redis.message
            ))
        })?;
        Ok(Response::success(&page_json(&page, q.after), None, now).into())
    }))
}

fn page_json(page: &Range, after: EventId) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + page.events.len() * 320);
    out.extend_from_slice(b"{\"events\":[");
    for (i, a) in page.events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_event(&mut out, &a.event);
    }
    let next = page.events.last().map_or(after, |a| a.event.event_id);
    out.extend_from_slice(b"],\"more\":");
    out.extend_from_slice(if page.more { b"true" } else { b"false" });
    out.extend_from_slice(b",\"next_since\":");
    json::write_str(&mut out, &next.to_string());
    out.extend_from_slice(b",\"gap\":");
    out.extend_from_slice(if page.gap { b"true" } else { b"false" });
    out.extend_from_slice(b",\"oldest_event_id\":");
    match page.oldest {
        Some(id) => json::write_str(&mut out, &id.to_string()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    out
}
