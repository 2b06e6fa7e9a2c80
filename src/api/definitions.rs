//! `/api/models`, `/api/rules`, `/api/forwarding`: the library's definitions over HTTP — list,
//! get, create or replace (`PUT`), delete — validated by the library's own save functions (a
//! refusal names the field: 400 `INVALID_PARAMETER`), effective at once; and
//! `/api/rules/firings` (the automation rules' firing log).

use super::View;
use crate::alarm::EventId;
use crate::error::{ApiError, ErrorCode};
use crate::http::{Query, Response};
use crate::json;
use crate::model::Value;
use crate::wire::iso;
use simd_json::prelude::*;

/// Field/value pairs as Redis holds them.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// A definition: its id and its fields.
pub type Record = (String, Fields);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Models,
    Rules,
    Forwarding,
    AlarmRules,
}

impl Kind {
    /// Key prefix of one definition (`model:{id}`).
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Models => "model:",
            Kind::Rules => "rule:",
            Kind::Forwarding => "forward:",
            Kind::AlarmRules => "alarm:rule:",
        }
    }

    /// The set of every defined id.
    pub fn ids_key(self) -> &'static str {
        match self {
            Kind::Models => "model:ids",
            Kind::Rules => "rule:ids",
            Kind::Forwarding => "forward:names",
            Kind::AlarmRules => "alarm:rules",
        }
    }

    pub fn save_function(self) -> &'static str {
        match self {
            Kind::Models => "modsrv_model_save",
            Kind::Rules => "rulesrv_rule_save",
            Kind::Forwarding => "netsrv_forward_save",
            Kind::AlarmRules => "alarmsrv_rule_save",
        }
    }

    pub fn delete_function(self) -> &'static str {
        match self {
            Kind::Models => "modsrv_model_delete",
            Kind::Rules => "rulesrv_rule_delete",
            Kind::Forwarding => "netsrv_forward_delete",
            Kind::AlarmRules => "alarmsrv_rule_delete",
        }
    }

    /// The list route (for metrics labels and the API description).
    pub fn collection_path(self) -> &'static str {
        match self {
            Kind::Models => "/api/models",
            Kind::Rules => "/api/rules",
            Kind::Forwarding => "/api/forwarding",
            Kind::AlarmRules => "/api/alarms/rules",
        }
    }

    /// One definition's route template.
    pub fn item_path(self) -> &'static str {
        match self {
            Kind::Models => "/api/models/:id",
            Kind::Rules => "/api/rules/:id",
            Kind::Forwarding => "/api/forwarding/:name",
            Kind::AlarmRules => "/api/alarms/rules/:id",
        }
    }

    /// Destinations also report their counters (`forward:{name}:stats`).
    pub fn has_stats(self) -> bool {
        self == Kind::Forwarding
    }

    /// Fields that must be JSON arrays: the library's JSON decoder reads `{}` as `[]`, so the
    /// gateway tells them apart.
    fn array_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Models => &["inputs"],
            Kind::Rules => &["conditions"],
            Kind::Forwarding => &["channels", "data_types"],
            Kind::AlarmRules => &[],
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Models => "model",
            Kind::Rules => "rule",
            Kind::Forwarding => "destination",
            Kind::AlarmRules => "alarm rule",
        }
    }
}

/// An id as the library accepts them: 1–64 of `A-Za-z0-9_.-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !matches!(id, "ids" | "index" | "firings" | "names" | "destinations")
}

/// A library call's outcome: its reply, or the library's error text.
pub type Called = Result<redis::Value, String>;

fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::ServiceUnavailable,
        "Redis unavailable",
        "the definitions could not be read or written (Redis unavailable or not answering)",
    )
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
pub fn list(view: &View<'_>, kind: Kind, now: i64) -> Result<Response, ApiError> {
    let defs = view.definitions.as_ref().ok_or_else(unavailable)?;
    let mut out = vec![b'['];
    for (i, (id, fields)) in defs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_fields(&mut out, id, fields);
    }
    out.push(b']');
    let msg = format!("Found {} {}s", defs.len(), kind.noun());
    Ok(Response::success(&out, Some(&msg), now))
}

/// `GET /api/{kind}/{id}`.
pub fn get(view: &View<'_>, kind: Kind, id: &str, now: i64) -> Result<Response, ApiError> {
    let defs = view.definitions.as_ref().ok_or_else(unavailable)?;
    let Some((id, fields)) = defs.iter().find(|(i, f)| i == id && !f.is_empty()) else {
        return Err(not_found(kind, id));
    };
    let mut out = Vec::new();
    write_fields(&mut out, id, fields);
    Ok(Response::success(&out, None, now))
}

fn not_found(kind: Kind, id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "Not found",
        format!("no {} '{id}'", kind.noun()),
    )
}

/// The library's refusal → the stable code it names.
fn refused(msg: &str) -> ApiError {
    let msg = msg.trim_start_matches("ERR ").to_string();
    // The alarm functions' refusals ("invalid rule field threshold: …") predate the codes.
    if msg.starts_with("INVALID_PARAMETER")
        || msg.starts_with("invalid key")
        || msg.starts_with("invalid rule")
    {
        ApiError::new(ErrorCode::InvalidParameter, "Invalid parameter", msg)
    } else {
        ApiError::new(ErrorCode::InternalError, "Library error", msg)
    }
}

/// A `PUT` body: a JSON object (the library reads its fields; anything else is refused here
/// with 400 rather than handed to Redis), as the text the save function takes.
pub fn body(body: &[u8], max_depth: usize, kind: Kind) -> Result<&str, ApiError> {
    let shape = format!("a JSON object of the {}'s fields", kind.noun());
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidJson,
            "Invalid JSON",
            format!("the body must be {shape}"),
        )
    };
    let text = std::str::from_utf8(body).map_err(|_| bad())?;
    let simd_json::OwnedValue::Object(o) = json::parse_body(body, max_depth, &shape)? else {
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
pub fn saved(view: &View<'_>, kind: Kind, id: &str, now: i64) -> Result<Response, ApiError> {
    let reply = match view.library.as_ref().ok_or_else(unavailable)? {
        Ok(v) => v,
        Err(e) => return Err(refused(e)),
    };
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"id\":");
    json::write_str(&mut out, id);
    if kind == Kind::Models {
        out.extend_from_slice(b",\"value\":");
        let v = match reply {
            redis::Value::BulkString(b) => Value::from_redis(&String::from_utf8_lossy(b)),
            _ => Value::from_redis(""),
        };
        out.extend_from_slice(if matches!(reply, redis::Value::Nil) {
            b"null"
        } else {
            v.json().as_bytes()
        });
    }
    out.push(b'}');
    Ok(Response::success(&out, Some("Saved"), now))
}

/// `DELETE /api/{kind}/{id}`.
pub fn deleted(view: &View<'_>, kind: Kind, id: &str, now: i64) -> Result<Response, ApiError> {
    match view.library.as_ref().ok_or_else(unavailable)? {
        Ok(redis::Value::Int(1)) => {
            let mut out = Vec::new();
            out.extend_from_slice(b"{\"id\":");
            json::write_str(&mut out, id);
            out.extend_from_slice(b",\"deleted\":true}");
            Ok(Response::success(&out, Some("Deleted"), now))
        }
        Ok(_) => Err(not_found(kind, id)),
        Err(e) => Err(refused(e)),
    }
}

/// `since` / `limit` of a log page (`GET /api/rules/firings`, `GET /api/audit`).
pub fn page_query(q: &Query) -> Result<(EventId, usize), ApiError> {
    let q = super::alarms::EventsQuery::parse(q)?;
    Ok((q.after, q.limit))
}

/// A page of a log, oldest first: `{<field>:[{id, …fields, time as ISO}], more, next_since}`
/// (`GET /api/rules/firings?since&limit` as `firings`, `GET /api/audit` as `entries`).
pub fn page(view: &View<'_>, q: &Query, field: &str, now: i64) -> Result<Response, ApiError> {
    let (after, limit) = page_query(q)?;
    let page = view.stream.as_ref().ok_or_else(unavailable)?;
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
    Ok(Response::success(&out, None, now))
}
