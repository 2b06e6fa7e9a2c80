//! `/api/config/channels…`: channel definitions and each channel's point table (JSON, or CSV
//! for bulk import/export), kept in Redis (`crate::catalog`): admin to change, viewer to read,
//! validated (each 400 names the field), effective at once — a configured channel is known to
//! `/api/channels` and subscriptions before its first write, and control values are checked
//! against the point limits by the library's `control_submit`.

use super::{Call, Step};
use crate::catalog::jobs::{Channel, Channels, DeleteChannel, Points, ReplacePoints, SaveChannel};
use crate::catalog::{self, ChannelDef, PointDef};
use crate::error::{ApiError, ErrorCode, Upstream};
use crate::http::Response;
use crate::json;
use crate::model::ChannelId;
use std::time::Duration;

/// How long a configuration route waits for Redis.
const DEADLINE: Duration = Duration::from_secs(2);

fn unavailable(why: Upstream) -> ApiError {
    match why {
        Upstream::Refused(e) => ErrorCode::InternalError.context(e),
        why => why.unavailable("the configuration could not be read or written"),
    }
}

/// `GET /api/config/channels`: every configured channel.
pub fn channels(_: &Call<'_>) -> Result<Step, ApiError> {
    Ok(Step::redis(Channels, DEADLINE, |catalog, _, now| {
        let catalog = catalog.map_err(unavailable)?;
        let mut out = vec![b'['];
        for (i, def) in catalog.channels.values().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            def.write_json(&mut out);
        }
        out.push(b']');
        let msg = format!("Found {} configured channels", catalog.channels.len());
        Ok(Response::success(&out, Some(&msg), now).into())
    }))
}

/// `GET /api/config/channels/{id}`.
pub fn channel(c: &Call<'_>) -> Result<Step, ApiError> {
    let id = c.params.channel();
    Ok(Step::redis(Channel(id), DEADLINE, move |def, _, now| {
        let def = def
            .map_err(unavailable)?
            .ok_or_else(|| not_configured(id))?;
        let mut out = Vec::new();
        def.write_json(&mut out);
        Ok(Response::success(&out, None, now).into())
    }))
}

/// `PUT /api/config/channels/{id}`: created or replaced (validated; a refusal names the
/// field and nothing is written).
pub fn save_channel(c: &Call<'_>) -> Result<Step, ApiError> {
    let def = ChannelDef::parse(c.params.channel(), &c.req.body, c.view.max_depth())?;
    let mut out = Vec::new();
    def.write_json(&mut out);
    Ok(Step::redis(
        SaveChannel(def),
        DEADLINE,
        move |saved, _, now| {
            saved.map_err(unavailable)?;
            Ok(Response::success(&out, Some("Saved"), now).into())
        },
    ))
}

/// `DELETE /api/config/channels/{id}`: the definition and its point table.
pub fn delete_channel(c: &Call<'_>) -> Result<Step, ApiError> {
    let id = c.params.channel();
    Ok(Step::redis(
        DeleteChannel(id),
        DEADLINE,
        move |deleted, _, now| {
            if !deleted.map_err(unavailable)? {
                return Err(not_configured(id));
            }
            Ok(
                Response::success(&channel_json(id, ",\"deleted\":true"), Some("Deleted"), now)
                    .into(),
            )
        },
    ))
}

/// `GET /api/config/channels/{id}/points`.
pub fn points(c: &Call<'_>) -> Result<Step, ApiError> {
    Ok(Step::redis(
        Points(c.params.channel()),
        DEADLINE,
        |points, _, now| {
            let points = points.map_err(unavailable)?;
            let mut out = Vec::new();
            catalog::write_points(&mut out, &points);
            let msg = format!("Found {} points", points.len());
            Ok(Response::success(&out, Some(&msg), now).into())
        },
    ))
}

/// `GET /api/config/channels/{id}/points.csv`: the table for a spreadsheet.
pub fn points_csv(c: &Call<'_>) -> Result<Step, ApiError> {
    let id = c.params.channel();
    Ok(Step::redis(Points(id), DEADLINE, move |points, _, _| {
        let csv = catalog::to_csv(&points.map_err(unavailable)?);
        let mut resp = Response::json(200, csv.into_bytes());
        resp.content_type = "text/csv; charset=utf-8";
        Ok(resp
            .with_header(
                "Content-Disposition",
                format!("attachment; filename=\"points-{}.csv\"", id.0),
            )
            .into())
    }))
}

/// `PUT /api/config/channels/{id}/points`: the table replaced by a JSON array.
pub fn put_points(c: &Call<'_>) -> Result<Step, ApiError> {
    let points = PointDef::parse_table(&c.req.body, c.view.max_depth())?;
    Ok(replace(c.params.channel(), points))
}

/// `PUT /api/config/channels/{id}/points.csv`: the table replaced by CSV rows.
pub fn put_points_csv(c: &Call<'_>) -> Result<Step, ApiError> {
    let text = std::str::from_utf8(&c.req.body)
        .map_err(|_| ApiError::invalid_parameter("csv", "must be UTF-8 text"))?;
    Ok(replace(c.params.channel(), catalog::from_csv(text)?))
}

fn replace(channel: ChannelId, points: Vec<PointDef>) -> Step {
    let n = points.len();
    Step::redis(
        ReplacePoints { channel, points },
        DEADLINE,
        move |done, _, now| {
            done.map_err(unavailable)?;
            let mut tail = Vec::from(&b",\"points\":"[..]);
            json::write_u64(&mut tail, n as u64);
            let out = channel_json(channel, std::str::from_utf8(&tail).unwrap_or(""));
            Ok(Response::success(&out, Some("Point table replaced"), now).into())
        },
    )
}

/// `{"channel_id":id<rest>}`.
fn channel_json(id: ChannelId, rest: &str) -> Vec<u8> {
    let mut out = Vec::from(&b"{\"channel_id\":"[..]);
    json::write_u64(&mut out, u64::from(id.0));
    out.extend_from_slice(rest.as_bytes());
    out.push(b'}');
    out
}

fn not_configured(id: ChannelId) -> ApiError {
    ErrorCode::NotFound.context(format!("channel {id} is not configured"))
}
