//! `/api/models`, `/api/rules`, `/api/forwarding`: the library's definitions over HTTP — list,
//! get, create or replace (`PUT`), delete — validated by the library's own save functions (a
//! refusal names the field: 400 `INVALID_PARAMETER`), effective at once; and
//! `/api/rules/firings` (the automation rules' firing log).

use super::{Call, Step};
use crate::alarm::EventId;
use crate::definitions::jobs::{Delete, Page, Read, Save};
use crate::error::{ApiError, ErrorCode, Upstream};
use crate::http::{Query, Response};
use crate::json;
use crate::model::Value;
use crate::wire::iso;
use simd_json::prelude::*;
use std::time::Duration;

pub use crate::definitions::{valid_id, Fields, Kind, Record};

/// How long a definitions route waits for Redis.
const DEADLINE: Duration = Duration::from_secs(2);

fn unavailable(why: Upstream) -> ApiError {
    match why {
        Upstream::Refused(msg) => refused(&msg),
        why => why.unavailable("the definitions could not be read or written"),
    }
}

/// The kind a route's pattern names.
fn kind(c: &Call<'_>) -> Kind {
    [
        Kind::Models,
        Kind::Rules,
        Kind::Forwarding,
        Kind::AlarmRules,
    ]
    .into_iter()
    .find(|k| c.route == k.collection_path() || c.route == k.item_path())
    .unwrap_or(Kind::Models)
}

fn write_fields(out: &mut Vec<u8>, id: &str, fields: &Fields) {
    out.extend_from_slice(b"{\"id\":");
    json::write_str(out, id);
    for (k, v) in fields {
        let (Ok(k), Ok(v)) = (std::str::from_utf8(k), std::str::from_utf8(v)) else {
            continue;
        };
        if k == "id" {
            continue;
        }
        out.push(b',');
        json::write_key(out, k);
        out.extend_from_slice(Value::from_redis(v).json().as_bytes());
    }
    out.push(b'}');
}

/// `GET /api/{kind}`: every definition.
pub fn list(c: &Call<'_>) -> Result<Step, ApiError> {
    let kind = kind(c);
    let job = Read { kind, id: None };
    Ok(Step::redis(job, DEADLINE, move |defs, _, now| {
        let defs = defs.map_err(unavailable)?;
        let mut out = vec![b'['];
        for (i, (id, fields)) in defs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_fields(&mut out, id, fields);
        }
        out.push(b']');
        let msg = format!("Found {} {}s", defs.len(), kind.noun());
        Ok(Response::success(&out, Some(&msg), now).into())
    }))
}

/// `GET /api/{kind}/{id}`.
pub fn get(c: &Call<'_>) -> Result<Step, ApiError> {
    let (kind, id) = (kind(c), c.params.id().to_string());
    let job = Read {
        kind,
        id: Some(id.clone()),
    };
    Ok(Step::redis(job, DEADLINE, move |defs, _, now| {
        let defs = defs.map_err(unavailable)?;
        let Some((id, fields)) = defs.iter().find(|(i, f)| *i == id && !f.is_empty()) else {
            return Err(not_found(kind, &id));
        };
        let mut out = Vec::new();
        write_fields(&mut out, id, fields);
        Ok(Response::success(&out, None, now).into())
    }))
}

fn not_found(kind: Kind, id: &str) -> ApiError {
    ErrorCode::NotFound.context(format!("no {} '{id}'", kind.noun()))
}

/// The library's refusal → the stable code it names.
fn refused(msg: &str) -> ApiError {
    let msg = msg.trim_start_matches("ERR ").to_string();
    // The alarm functions' refusals ("invalid rule field threshold: …") predate the codes.
    if msg.starts_with("INVALID_PARAMETER")
        || msg.starts_with("invalid key")
        || msg.starts_with("invalid rule")
    {
        ErrorCode::InvalidParameter.context(msg)
    } else {
        ErrorCode::InternalError.context(msg)
    }
}

/// A `PUT` body: a JSON object (the library reads its fields; anything else is refused here
/// with 400 rather than handed to Redis), as the text the save function takes.
pub fn body(body: &[u8], max_depth: usize, kind: Kind) -> Result<&str, ApiError> {
    let shape = format!("a JSON object of the {}'s fields", kind.noun());
    let bad = || ErrorCode::InvalidJson.context(format!("the body must be {shape}"));
    let text = std::str::from_utf8(body).map_err(|_| bad())?;
    let simd_json::OwnedValue::Object(o) = crate::http::body::parse_body(body, max_depth, &shape)?
    else {
        return Err(bad());
    };
    for f in kind.array_fields() {
        if o.get(*f).is_some_and(|v| !v.is_array() && !v.is_null()) {
            return Err(ApiError::invalid_parameter(f, "must be an array"));
        }
    }
    Ok(text)
}

/// `PUT /api/{kind}/{id}`: created or replaced; the model's computed value when there is one.
pub fn put(c: &Call<'_>) -> Result<Step, ApiError> {
    let (kind, id) = (kind(c), c.params.id().to_string());
    let body = body(&c.req.body, c.view.max_depth(), kind)?.to_string();
    let job = Save {
        kind,
        id: id.clone(),
        body,
    };
    Ok(Step::redis(job, DEADLINE, move |value, _, now| {
        let value = value.map_err(unavailable)?;
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"id\":");
        json::write_str(&mut out, &id);
        if kind == Kind::Models {
            out.extend_from_slice(b",\"value\":");
            match value {
                Some(v) => out.extend_from_slice(Value::from_redis(&v).json().as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'}');
        Ok(Response::success(&out, Some("Saved"), now).into())
    }))
}

/// `DELETE /api/{kind}/{id}`.
pub fn delete(c: &Call<'_>) -> Result<Step, ApiError> {
    let (kind, id) = (kind(c), c.params.id().to_string());
    let job = Delete {
        kind,
        id: id.clone(),
    };
    Ok(Step::redis(job, DEADLINE, move |deleted, _, now| {
        if !deleted.map_err(unavailable)? {
            return Err(not_found(kind, &id));
        }
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"id\":");
        json::write_str(&mut out, &id);
        out.extend_from_slice(b",\"deleted\":true}");
        Ok(Response::success(&out, Some("Deleted"), now).into())
    }))
}

/// `since` / `limit` of a log page (`GET /api/rules/firings`, `GET /api/audit`).
pub fn page_query(q: &Query) -> Result<(EventId, usize), ApiError> {
    let q = super::alarms::EventsQuery::parse(q)?;
    Ok((q.after, q.limit))
}

/// `GET /api/rules/firings?since&limit`: the automation rules' firing log.
pub fn firings(c: &Call<'_>) -> Result<Step, ApiError> {
    page(c, "rule:firings", "firings")
}

/// `GET /api/audit?since&limit`: the control audit log.
pub fn audit(c: &Call<'_>) -> Result<Step, ApiError> {
    page(c, "audit:control", "entries")
}

/// A page of a log, oldest first: `{<field>:[{id, …fields, time as ISO}], more, next_since}`.
fn page(c: &Call<'_>, stream: &'static str, field: &'static str) -> Result<Step, ApiError> {
    let (after, limit) = page_query(c.query)?;
    let job = Page {
        stream,
        after,
        count: limit + 1,
    };
    Ok(Step::redis(job, DEADLINE, move |page, _, now| {
        let page = page.map_err(|e| match e {
            Upstream::Refused(_) => Upstream::Unavailable,
            e => e,
        });
        let page = page.map_err(unavailable)?;
        Ok(page_json(&page, after, limit, field, now).into())
    }))
}

fn page_json(
    page: &[crate::alarm::StreamEntry],
    after: EventId,
    limit: usize,
    field: &str,
    now: i64,
) -> Response {
    let more = page.len() > limit;
    let page = &page[..page.len().min(limit)];
    let mut out = Vec::with_capacity(64 + 256 * page.len());
    out.push(b'{');
    json::write_key(&mut out, field);
    out.push(b'[');
    for (i, (id, fields)) in page.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut f: Fields = fields.clone();
        for (k, v) in f.iter_mut() {
            if k == b"time" {
                if let Some(ms) = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()) {
                    *v = iso(ms).into_bytes();
                }
            }
        }
        write_fields(&mut out, &id.to_string(), &f);
    }
    let next = page.last().map_or(after, |(id, _)| *id);
    out.extend_from_slice(b"],\"more\":");
    out.extend_from_slice(if more { b"true" } else { b"false" });
    out.extend_from_slice(b",\"next_since\":");
    json::write_str(&mut out, &next.to_string());
    out.push(b'}');
    Response::success(&out, None, now)
}
