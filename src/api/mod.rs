//! REST handlers: pure functions of (request, shared state) → response. The state is the
//! feed's latest snapshot, so no request costs a Redis round trip.

mod channels;
mod health;

use crate::error::{ApiError, ErrorCode};
use crate::http::{Method, Query, Request, Response};
use crate::model::ChannelId;
use crate::state::Shared;

/// Which resource a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Channels,
    ChannelStatus(ChannelId),
    ChannelRealtime(ChannelId),
    ChannelHistory(ChannelId),
    Health,
    HealthDetailed,
}

fn route(path: &str) -> Result<Option<Route>, ApiError> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    let route = match path {
        "/api/channels" => Route::Channels,
        "/health" => Route::Health,
        "/health/detailed" => Route::HealthDetailed,
        _ => {
            let Some(rest) = path.strip_prefix("/api/channels/") else {
                return Ok(None);
            };
            let Some((id, leaf)) = rest.split_once('/') else {
                return Ok(None);
            };
            let make = match leaf {
                "status" => Route::ChannelStatus,
                "realtime" => Route::ChannelRealtime,
                "history" => Route::ChannelHistory,
                _ => return Ok(None),
            };
            let id = ChannelId::parse(id).ok_or_else(|| {
                ApiError::invalid_parameter(
                    "channel_id",
                    &format!("must be an integer in 1..=4294967295, got '{id}'"),
                )
            })?;
            make(id)
        }
    };
    Ok(Some(route))
}

/// Answers one request.
pub fn handle(req: &Request, shared: &Shared) -> Response {
    let route = match route(&req.path) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Response::error(&ApiError::new(
                ErrorCode::NotFound,
                "Not found",
                format!("No route for {}", req.path),
            ))
        }
        Err(e) => return Response::error(&e),
    };
    match req.method {
        Method::Get | Method::Head => {}
        Method::Options => {
            return Response::json(204, Vec::new())
                .with_header("Allow", "GET, HEAD, OPTIONS")
                .with_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
                .with_header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type",
                )
                .with_header("Access-Control-Max-Age", "600")
        }
        _ => {
            return Response::error(&ApiError::new(
                ErrorCode::MethodNotAllowed,
                "Method not allowed",
                format!("{} accepts GET and HEAD", req.path),
            ))
            .with_header("Allow", "GET, HEAD, OPTIONS")
        }
    }
    let result = Query::parse(&req.query).and_then(|q| match route {
        Route::Channels => Ok(channels::list(shared)),
        Route::ChannelStatus(id) => channels::status(shared, id),
        Route::ChannelRealtime(id) => channels::realtime(shared, id, &q),
        Route::ChannelHistory(id) => channels::history(shared, id, &q),
        Route::Health => Ok(health::basic(shared)),
        Route::HealthDetailed => Ok(health::detailed(shared)),
    });
    result.unwrap_or_else(|e| Response::error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/api/channels").unwrap(), Some(Route::Channels));
        assert_eq!(route("/api/channels/").unwrap(), Some(Route::Channels));
        assert_eq!(
            route("/api/channels/1001/realtime").unwrap(),
            Some(Route::ChannelRealtime(ChannelId(1001)))
        );
        assert_eq!(route("/api/channels/1001/nope").unwrap(), None);
        assert_eq!(route("/nope").unwrap(), None);
        assert_eq!(route("/").unwrap(), None);
        let e = route("/api/channels/abc/status").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParameter);
        assert!(route("/api/channels/0/status").is_err());
        assert!(route("/api/channels/4294967296/status").is_err());
    }
}
