//! `POST /api/control` (the WebSocket `control`, for scripts and reporting tools) and
//! `GET /api/commands/{id}?wait=` (a command's record, optionally waiting for its final state).

use super::{Call, Step, View};
use crate::control::jobs::{Record, Submit};
use crate::control::ControlRequest;
use crate::error::{ApiError, ErrorCode};
use crate::http::{Query, Response};
use crate::json;
use crate::model::{hash_field, Value};
use crate::wire::{iso, rest};
use simd_json::prelude::*;
use std::time::Duration;

/// HTTP commands are queued under `http~{user}` (`http~anonymous` without a token): a
/// `request_id` de-duplicates one principal's retries, never another caller's command, and
/// no WebSocket can claim the id (`~` is not allowed there) to receive their acks.
const HTTP_CLIENT_PREFIX: &str = "http~";

/// The client id of `principal`'s HTTP commands.
pub fn http_client_id(principal: &crate::auth::Principal) -> String {
    format!("{HTTP_CLIENT_PREFIX}{}", principal.name())
}

/// Whether `client_id` is an HTTP caller's (its acks are read, not pushed).
pub fn is_http_client_id(client_id: &str) -> bool {
    client_id.starts_with(HTTP_CLIENT_PREFIX) || client_id == "http"
}
/// Longest `wait` of `GET /api/commands/{id}`.
pub const MAX_WAIT_MS: u32 = 30_000;

/// The body of `POST /api/control`: the WebSocket `control`'s `data` plus an optional
/// `request_id` that makes retries idempotent.
pub fn parse_body(body: &[u8], max_depth: usize) -> Result<ControlRequest, ApiError> {
    let invalid_json = |why: &str| ErrorCode::InvalidJson.context(why);
    if body.is_empty() {
        return Err(invalid_json(
            "the body must be a JSON object {channel_id, point_id, command_type, value, ...}",
        ));
    }
    if !crate::json::nesting_within(body, max_depth) {
        return Err(invalid_json(&format!(
            "the body nests arrays/objects deeper than {max_depth} levels"
        )));
    }
    let mut buf = body.to_vec();
    let v = simd_json::to_borrowed_value(&mut buf)
        .map_err(|e| invalid_json(&format!("the body is not valid JSON: {e}")))?;
    let mut req = ControlRequest::parse(Some(&v))?;
    req.request_id = match v.get("request_id") {
        None => None,
        Some(r) if r.is_null() => None,
        Some(r) => Some(
            r.as_str()
                .ok_or_else(|| ApiError::invalid_parameter("request_id", "must be a string"))?
                .to_string(),
        ),
    };
    req.validate()
}

/// `wait` of `GET /api/commands/{id}` (ms, 0..=30000; default 0).
pub fn wait_ms(q: &Query) -> Result<u32, ApiError> {
    Ok(q.u32_in("wait", 0, MAX_WAIT_MS)?.unwrap_or(0))
}

/// A command id as the library assigns them: `CMD_{n}`.
pub fn valid_command_id(id: &str) -> bool {
    id.strip_prefix("CMD_")
        .is_some_and(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// How long `POST /api/control` waits for Redis to queue the command.
const CONTROL_DEADLINE: Duration = Duration::from_secs(5);
/// How long one read of a command's record waits, and how often a waiting read asks again.
const RECORD_DEADLINE: Duration = Duration::from_secs(2);
const RECORD_POLL: Duration = Duration::from_millis(100);

/// `POST /api/control`: 202 `{command_id, status, duplicate}` once queued, or the refusal
/// (429 with `Retry-After` past the rate limit).
pub fn submit(c: &Call<'_>) -> Result<Step, ApiError> {
    let command = parse_body(&c.req.body, c.view.max_depth())?;
    let principal = c.view.principal;
    let job = Submit::new(
        command,
        principal,
        c.view.client_ip,
        http_client_id(principal),
    );
    Ok(Step::redis(job, CONTROL_DEADLINE, |queued, _, now| {
        let s = match queued {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.code == ErrorCode::RateLimited => {
                return Ok(Response::error(&e, now)
                    .with_header("Retry-After", "1")
                    .into())
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(crate::control::not_queued(&e)),
        };
        let mut d = Vec::with_capacity(96);
        d.extend_from_slice(b"{\"command_id\":");
        json::write_str(&mut d, &s.command_id);
        d.extend_from_slice(b",\"status\":");
        json::write_str(&mut d, &s.status);
        d.extend_from_slice(b",\"duplicate\":");
        d.extend_from_slice(if s.duplicate { b"true" } else { b"false" });
        d.push(b'}');
        Ok(Response::json(202, rest::success(&d, Some("Command queued"), now)).into())
    }))
}

/// `GET /api/commands/{id}?wait=`: the record as the library keeps it; with `wait`, read
/// again every 100 ms while the command is still queued (at most `wait` ms), so a script can
/// wait for the final state in one request.
pub fn command(c: &Call<'_>) -> Result<Step, ApiError> {
    let until = c.now + i64::from(wait_ms(c.query)?);
    Ok(read_record(c.params.get("command_id").to_string(), until))
}

fn read_record(id: String, until: i64) -> Step {
    let job = Record {
        command_id: id.clone(),
    };
    Step::redis(job, RECORD_DEADLINE, move |fields, view, now| {
        let fields = fields.map_err(|e| e.unavailable("the command could not be read"))?;
        let queued = fields.iter().any(|(k, v)| k == b"status" && v == b"queued");
        if queued && now < until {
            return Ok(read_record(id, until).after(RECORD_POLL));
        }
        record(view, &id, &fields, now).map(Step::from)
    })
}

/// The record's fields as JSON (personal fields for operators and admins only).
fn record(
    view: &View<'_>,
    id: &str,
    fields: &[(Vec<u8>, Vec<u8>)],
    now: i64,
) -> Result<Response, ApiError> {
    if fields.is_empty() {
        return Err(
            ErrorCode::NotFound.context(format!("no command {id} (unknown, or older than a day)"))
        );
    }
    let get = |k: &str| hash_field(fields, k).filter(|v| !v.is_empty());
    let mut d = Vec::with_capacity(320);
    d.push(b'{');
    let mut first = true;
    let mut key = |d: &mut Vec<u8>, k: &str| {
        if !first {
            d.push(b',');
        }
        first = false;
        json::write_key(d, k);
    };
    for k in ["command_id", "data_type", "command_type", "status"] {
        key(&mut d, k);
        json::write_str(&mut d, get(k).unwrap_or(""));
    }
    // Who sent it, from which client and why: for operators and admins, null for viewers
    // (anonymous dashboards among them).
    let personal = view
        .principal
        .role
        .is_some_and(|r| r >= crate::auth::Role::Operator);
    for k in ["client_id", "request_id", "operator", "reason", "origin"] {
        key(&mut d, k);
        match get(k).filter(|_| personal) {
            Some(v) => json::write_str(&mut d, v),
            None => d.extend_from_slice(b"null"),
        }
    }
    for k in ["channel_id", "point_id", "value"] {
        key(&mut d, k);
        let v = get(k).map_or_else(|| Value::from_redis(""), Value::from_redis);
        d.extend_from_slice(v.json().as_bytes());
    }
    for k in ["queued_at", "deadline", "finished_at"] {
        key(&mut d, k);
        match get(k).and_then(|v| v.parse::<i64>().ok()) {
            Some(ms) => {
                d.push(b'"');
                d.extend_from_slice(iso(ms).as_bytes());
                d.push(b'"');
            }
            None => d.extend_from_slice(b"null"),
        }
    }
    key(&mut d, "result");
    match get("status") {
        Some("executed" | "failed" | "timeout") => {
            d.extend_from_slice(b"{\"success\":");
            d.extend_from_slice(if get("success") == Some("1") {
                b"true"
            } else {
                b"false"
            });
            d.extend_from_slice(b",\"actual_value\":");
            let actual = get("actual_value").map(Value::from_redis);
            d.extend_from_slice(actual.as_ref().map_or("null", |v| v.json()).as_bytes());
            d.extend_from_slice(b",\"message\":");
            match get("message") {
                Some(m) => json::write_str(&mut d, m),
                None => d.extend_from_slice(b"null"),
            }
            d.push(b'}');
        }
        _ => d.extend_from_slice(b"null"),
    }
    d.push(b'}');
    Ok(Response::success(&d, None, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let r = parse_body(
            br#"{"channel_id":2001,"point_id":20,"command_type":"set_value","value":50.0,"request_id":"r1"}"#,
            32,
        )
        .unwrap();
        assert_eq!((r.channel.0, r.request_id.as_deref()), (2001, Some("r1")));
        assert_eq!(
            parse_body(b"", 32).unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse_body(b"{nope", 32).unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse_body(&[b'['; 100], 32).unwrap_err().code,
            ErrorCode::InvalidJson
        );
        let e = parse_body(
            br#"{"channel_id":2001,"point_id":20,"command_type":"control","value":5}"#,
            32,
        )
        .unwrap_err();
        assert!(e.details.contains("0 or 1"));
        assert!(valid_command_id("CMD_12") && !valid_command_id("CMD_") && !valid_command_id("x"));
    }
}
