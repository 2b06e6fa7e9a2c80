//! `GET /api/channels/{id}/points`: every point of a channel — written or configured — with
//! its configured name and unit and its current value, so a dashboard labels what it shows
//! in one request.

use super::{Call, Step};
use crate::catalog::jobs::Points;
use crate::catalog::PointDef;
use crate::error::ApiError;
use crate::http::Response;
use crate::json;
use crate::model::{DataType, PointId};
use std::collections::BTreeMap;
use std::time::Duration;

/// A point's definition (if configured) and current value as JSON (if written).
type Point<'a> = (Option<&'a PointDef>, Option<&'a str>);

/// How long the point table's read waits for Redis.
const DEADLINE: Duration = Duration::from_secs(2);

pub fn list(c: &Call<'_>) -> Result<Step, ApiError> {
    c.view.loaded()?;
    let id = c.params.channel();
    Ok(Step::redis(
        Points(id),
        DEADLINE,
        move |table, view, now| {
            let table = table.map_err(|e| e.unavailable("the point table could not be read"))?;
            let data = view.snapshot.channels.get(&id);
            if data.is_none() && table.is_empty() && !view.catalog.channels.contains_key(&id) {
                return Err(ApiError::channel_not_found(id));
            }
            // (type, point) → (its definition, its current value as JSON), sorted.
            let mut points: BTreeMap<(DataType, PointId), Point<'_>> = BTreeMap::new();
            for p in &table {
                points.entry((p.data_type, p.point)).or_default().0 = Some(p);
            }
            for t in DataType::ALL {
                let Some(state) = data.and_then(|ch| ch.get(t)) else {
                    continue;
                };
                for (point, value) in &state.points {
                    points.entry((t, *point)).or_default().1 = Some(value.json());
                }
            }
            let mut out = Vec::with_capacity(16 + points.len() * 96);
            out.push(b'[');
            for (i, ((t, point), (def, value))) in points.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"data_type\":");
                json::write_str(&mut out, t.as_str());
                out.extend_from_slice(b",\"point_id\":");
                json::write_u64(&mut out, u64::from(*point));
                for (key, text) in [
                    ("name", def.map(|d| d.name.as_str())),
                    ("unit", def.map(|d| d.unit.as_str())),
                ] {
                    out.push(b',');
                    json::write_key(&mut out, key);
                    match text.filter(|s| !s.is_empty()) {
                        Some(s) => json::write_str(&mut out, s),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                out.extend_from_slice(b",\"value\":");
                out.extend_from_slice(value.unwrap_or("null").as_bytes());
                out.push(b'}');
            }
            out.push(b']');
            let msg = format!("Found {} points", points.len());
            Ok(Response::success(&out, Some(&msg), now).into())
        },
    ))
}
