//! `/api/config/channels…`: channel definitions and each channel's point table (JSON, or CSV
//! for bulk import/export), kept in Redis (`crate::catalog`): admin to change, viewer to read,
//! validated (each 400 names the field), effective at once — a configured channel is known to
//! `/api/channels` and subscriptions before its first write, and control values are checked
//! against the point limits by the library's `control_submit`.

use super::View;
use crate::catalog::{self, ChannelDef, PointDef};
use crate::error::{ApiError, ErrorCode};
use crate::http::{Method, Request, Response};
use crate::json;
use crate::model::ChannelId;

/// Which part of the configuration a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Channels,
    Channel(ChannelId),
    Points(ChannelId),
    PointsCsv(ChannelId),
}

impl Target {
    /// `/api/config/channels[/{id}[/points[.csv]]]` (the prefix removed) → the target.
    pub fn parse(rest: &str) -> Result<Option<Target>, ApiError> {
        if rest.is_empty() {
            return Ok(Some(Target::Channels));
        }
        let Some(rest) = rest.strip_prefix('/') else {
            return Ok(None);
        };
        let (id, leaf) = rest.split_once('/').unwrap_or((rest, ""));
        let id = ChannelId::parse(id).ok_or_else(|| {
            ApiError::invalid_parameter(
                "channel_id",
                &format!("must be an integer in 1..=4294967295, got '{id}'"),
            )
        })?;
        Ok(match leaf {
            "" => Some(Target::Channel(id)),
            "points" => Some(Target::Points(id)),
            "points.csv" => Some(Target::PointsCsv(id)),
            _ => None,
        })
    }

    pub fn allow(self) -> &'static str {
        match self {
            Target::Channels => "GET, HEAD, OPTIONS",
            Target::Channel(_) => "GET, HEAD, PUT, DELETE, OPTIONS",
            Target::Points(_) | Target::PointsCsv(_) => "GET, HEAD, PUT, OPTIONS",
        }
    }
}

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A point table replacing the stored one: every command of one `MULTI`.
fn replace_points(ch: ChannelId, points: &[PointDef]) -> Vec<Vec<String>> {
    let key = catalog::points_key(ch);
    let mut out = vec![cmd(&["DEL", &key])];
    if !points.is_empty() {
        let mut hset = cmd(&["HSET", &key]);
        for p in points {
            hset.push(p.field());
            hset.push(p.to_json());
        }
        out.push(hset);
    }
    out.push(cmd(&["INCR", catalog::VERSION_KEY]));
    out
}

/// The body of a `PUT`, validated (the handler answers the refusal; nothing is written).
fn parse_put(
    target: Target,
    req: &Request,
    max_depth: usize,
) -> Result<Vec<Vec<String>>, ApiError> {
    match target {
        Target::Channel(id) => {
            let def = ChannelDef::parse(id, &req.body, max_depth)?;
            Ok(vec![
                cmd(&[
                    "HSET",
                    catalog::CHANNELS_KEY,
                    &id.0.to_string(),
                    &def.to_json(),
                ]),
                cmd(&["INCR", catalog::VERSION_KEY]),
            ])
        }
        Target::Points(id) => Ok(replace_points(
            id,
            &PointDef::parse_table(&req.body, max_depth)?,
        )),
        Target::PointsCsv(id) => {
            let text = std::str::from_utf8(&req.body)
                .map_err(|_| ApiError::invalid_parameter("csv", "must be UTF-8 text"))?;
            Ok(replace_points(id, &catalog::from_csv(text)?))
        }
        Target::Channels => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "Method not allowed",
            "PUT a channel at /api/config/channels/{id}",
        )),
    }
}

/// What the route needs run in Redis: (commands, atomic). `None` when the request is refused
/// before Redis is asked.
pub fn needs(target: Target, req: &Request, max_depth: usize) -> Option<(Vec<Vec<String>>, bool)> {
    match (req.method, target) {
        (Method::Get | Method::Head, Target::Channels) => {
            Some((vec![cmd(&["HGETALL", catalog::CHANNELS_KEY])], false))
        }
        (Method::Get | Method::Head, Target::Channel(id)) => Some((
            vec![cmd(&["HGET", catalog::CHANNELS_KEY, &id.0.to_string()])],
            false,
        )),
        (Method::Get | Method::Head, Target::Points(id) | Target::PointsCsv(id)) => {
            Some((vec![cmd(&["HGETALL", &catalog::points_key(id)])], false))
        }
        (Method::Put, t) => parse_put(t, req, max_depth).ok().map(|c| (c, true)),
        (Method::Delete, Target::Channel(id)) => Some((
            vec![
                cmd(&["HDEL", catalog::CHANNELS_KEY, &id.0.to_string()]),
                cmd(&["DEL", &catalog::points_key(id)]),
                cmd(&["INCR", catalog::VERSION_KEY]),
            ],
            true,
        )),
        _ => None,
    }
}

fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::ServiceUnavailable,
        "Redis unavailable",
        "the configuration could not be read or written (Redis unavailable or not answering)",
    )
}

fn replies<'v>(view: &'v View<'_>) -> Result<&'v [redis::Value], ApiError> {
    match view.exec.as_ref().ok_or_else(unavailable)? {
        Ok(v) => Ok(v),
        Err(e) => Err(ApiError::new(
            ErrorCode::InternalError,
            "Redis error",
            e.clone(),
        )),
    }
}

fn fields(v: Option<&redis::Value>) -> Vec<(Vec<u8>, Vec<u8>)> {
    v.cloned()
        .map(crate::model::hash_fields)
        .unwrap_or_default()
}

fn points_of(v: Option<&redis::Value>) -> Vec<PointDef> {
    fields(v)
        .iter()
        .filter_map(|(_, json)| PointDef::from_stored(std::str::from_utf8(json).ok()?))
        .collect()
}

/// Answers a configuration request once Redis ran what [`needs`] asked.
pub fn handle(
    view: &View<'_>,
    target: Target,
    req: &Request,
    now: i64,
) -> Result<Response, ApiError> {
    let depth = view.config.ws.max_json_depth;
    if req.method == Method::Put {
        // Validated again here: a refusal is answered with its field, nothing was written.
        parse_put(target, req, depth)?;
    }
    let r = replies(view)?;
    match (req.method, target) {
        (Method::Get | Method::Head, Target::Channels) => {
            let catalog = catalog::Catalog::from_fields(&fields(r.first()));
            let mut out = vec![b'['];
            for (i, def) in catalog.channels.values().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                def.write_json(&mut out);
            }
            out.push(b']');
            let msg = format!("Found {} configured channels", catalog.channels.len());
            Ok(Response::success(&out, Some(&msg), now))
        }
        (Method::Get | Method::Head, Target::Channel(id)) => {
            let def = match r.first() {
                Some(redis::Value::BulkString(b)) => {
                    ChannelDef::from_stored(&id.0.to_string(), &String::from_utf8_lossy(b))
                }
                _ => None,
            }
            .ok_or_else(|| not_configured(id))?;
            let mut out = Vec::new();
            def.write_json(&mut out);
            Ok(Response::success(&out, None, now))
        }
        (Method::Get | Method::Head, Target::Points(_)) => {
            let mut out = Vec::new();
            let points = points_of(r.first());
            catalog::write_points(&mut out, &points);
            let msg = format!("Found {} points", points.len());
            Ok(Response::success(&out, Some(&msg), now))
        }
        (Method::Get | Method::Head, Target::PointsCsv(id)) => {
            let csv = catalog::to_csv(&points_of(r.first()));
            let mut resp = Response::json(200, csv.into_bytes());
            resp.content_type = "text/csv; charset=utf-8";
            Ok(resp.with_header(
                "Content-Disposition",
                format!("attachment; filename=\"points-{}.csv\"", id.0),
            ))
        }
        (Method::Put, Target::Channel(id)) => {
            let def = ChannelDef::parse(id, &req.body, depth)?;
            let mut out = Vec::new();
            def.write_json(&mut out);
            Ok(Response::success(&out, Some("Saved"), now))
        }
        (Method::Put, Target::Points(id) | Target::PointsCsv(id)) => {
            let n = match target {
                Target::PointsCsv(_) => {
                    catalog::from_csv(std::str::from_utf8(&req.body).unwrap_or_default())?.len()
                }
                _ => PointDef::parse_table(&req.body, depth)?.len(),
            };
            let mut out = Vec::from(&b"{\"channel_id\":"[..]);
            json::write_u64(&mut out, u64::from(id.0));
            out.extend_from_slice(b",\"points\":");
            json::write_u64(&mut out, n as u64);
            out.push(b'}');
            Ok(Response::success(&out, Some("Point table replaced"), now))
        }
        (Method::Delete, Target::Channel(id)) => {
            if !matches!(r.first(), Some(redis::Value::Int(1))) {
                return Err(not_configured(id));
            }
            let mut out = Vec::from(&b"{\"channel_id\":"[..]);
            json::write_u64(&mut out, u64::from(id.0));
            out.extend_from_slice(b",\"deleted\":true}");
            Ok(Response::success(&out, Some("Deleted"), now))
        }
        _ => Err(unavailable()),
    }
}

fn not_configured(id: ChannelId) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "Not found",
        format!("channel {id} is not configured"),
    )
}
