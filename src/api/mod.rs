//! REST handlers: pure functions of a call (request, parameters, [`View`], now) to a
//! response — or to the work they need done first and what to make of its result
//! ([`Step`]). The view holds the feed's latest snapshot, so reading the site costs no Redis
//! round trip; routes that need Redis name a job (`*/jobs.rs`). Which handler answers a
//! path, and who may call it, is one row of [`routes::ROUTES`].

pub mod alarms;
pub mod auth;
pub mod catalog;
mod channels;
pub mod control;
pub mod definitions;
mod health;
mod points;
pub mod routes;
pub mod step;
pub mod web;

pub use step::{Ask, Step, Work};

use crate::alarm::ActiveAlarms;
use crate::auth::{Auth, Principal};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::http::origin::OriginPolicy;
use crate::http::{Method, Query, Request, Response};
use crate::site::{DependencyHealth, Snapshot};
use smallvec::SmallVec;
use std::net::IpAddr;

/// Everything a handler may read, at one instant.
pub struct View<'a> {
    pub snapshot: &'a Snapshot,
    pub redis: &'a DependencyHealth,
    pub config: &'a Config,
    pub alarms: &'a ActiveAlarms,
    /// The configured channels (known before their first write).
    pub catalog: &'a crate::catalog::Catalog,
    /// Who the request acts as (authenticated before the handler runs).
    pub principal: &'a Principal,
    /// Why the request's token was refused, if it was (routes open to everyone ignore it).
    pub auth_error: Option<&'a ApiError>,
    pub auth: &'a Auth,
    /// The client's address (behind trusted proxies: the forwarded one).
    pub client_ip: IpAddr,
    /// The running gateway's counters and the randomness for tokens.
    pub gateway: &'a dyn Gateway,
}

/// What a handler may read of the running gateway besides the site: counters kept by the
/// shell, and fresh randomness (the one thing a token needs that is not a pure function).
pub trait Gateway {
    /// Uptime and connections (`/health/detailed`).
    fn stats(&self) -> Stats {
        Stats::default()
    }
    /// Everything `/metrics` reports.
    fn metrics(&self, _now: i64) -> crate::metrics::Sample {
        crate::metrics::Sample::default()
    }
    /// The history recorder's state (`None`: no history store configured).
    fn history_status(&self) -> Option<crate::history::Status> {
        None
    }
    /// How long ago (ms) the feed last completed a collect (`None`: not yet).
    fn feed_lag_ms(&self, _now: i64) -> Option<u64> {
        None
    }
    /// 32 fresh random bytes for a token.
    fn random(&self) -> Result<[u8; 32], ApiError> {
        Err(ErrorCode::InternalError.context("no randomness for a token"))
    }
}

/// A gateway with nothing running (benchmarks and unit tests).
pub struct Idle;

impl Gateway for Idle {}

impl<'a> View<'a> {
    /// A view of an idle gateway: what a plain read route needs.
    pub fn new(
        snapshot: &'a Snapshot,
        redis: &'a DependencyHealth,
        config: &'a Config,
        alarms: &'a ActiveAlarms,
        catalog: &'a crate::catalog::Catalog,
        principal: &'a Principal,
        auth: &'a Auth,
    ) -> View<'a> {
        View {
            snapshot,
            redis,
            config,
            alarms,
            catalog,
            principal,
            auth_error: None,
            auth,
            client_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            gateway: &Idle,
        }
    }

    /// The JSON nesting limit for request bodies.
    pub fn max_depth(&self) -> usize {
        self.config.ws.max_json_depth
    }

    /// 503 until the site's data has been loaded from Redis (an empty site and an
    /// unreachable one must look different).
    pub fn loaded(&self) -> Result<(), ApiError> {
        if self.snapshot.loaded {
            return Ok(());
        }
        Err(ErrorCode::ServiceUnavailable.context(format!(
            "the gateway has not loaded the site's data from Redis yet ({})",
            self.redis.message
        )))
    }
}

/// Gateway counters for `/health/detailed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub uptime_secs: u64,
    pub connections: usize,
    pub websockets_per_shard: SmallVec<[usize; 8]>,
}

/// One request as its handler sees it.
pub struct Call<'a> {
    pub req: &'a Request,
    /// The route's pattern (`/api/models/:id`).
    pub route: &'static str,
    pub query: &'a Query,
    pub params: &'a routes::Params<'a>,
    pub view: &'a View<'a>,
    pub now: i64,
}

/// What a path names: one of the page's assets, a route's pattern and parameters, nothing
/// (404), or a malformed parameter (400). Resolved once per request.
pub enum Resolved<'p> {
    Page(usize),
    Route(&'static str, routes::Params<'p>),
    NotFound,
    Invalid(ApiError),
}

/// Resolves `path` (a trailing `/` ignored).
pub fn resolve(path: &str) -> Resolved<'_> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    if let Some(i) = web::find(path) {
        return Resolved::Page(i);
    }
    match routes::find(path) {
        Ok(Some((pattern, params))) => Resolved::Route(pattern, params),
        Ok(None) => Resolved::NotFound,
        Err(e) => Resolved::Invalid(e),
    }
}

impl Resolved<'_> {
    /// The route's name for metrics: its pattern (ids as `:id`), so a client cannot grow
    /// the label set; unknown paths are one label.
    pub fn label(&self) -> &'static str {
        match self {
            Resolved::Page(i) => web::ASSETS[*i].path,
            Resolved::Route(pattern, _) => routes::label(pattern),
            Resolved::NotFound => "unknown",
            Resolved::Invalid(_) => "invalid",
        }
    }
}

/// Answers `req` at `now` (Unix ms): the method and role checks of its row, then its handler.
pub fn start(req: &Request, resolved: &Resolved<'_>, view: &View<'_>, now: i64) -> Step {
    let fail = |e: &ApiError| Step::Done(Response::error(e, now));
    let (pattern, params) = match resolved {
        Resolved::Page(i) => {
            return match req.method {
                Method::Get | Method::Head => web::serve(*i, req.if_none_match.as_deref()).into(),
                Method::Options => routes::preflight("GET, HEAD, OPTIONS").into(),
                _ => not_allowed(req, "GET, HEAD, OPTIONS", now).into(),
            }
        }
        Resolved::Route(pattern, params) => (*pattern, params),
        Resolved::NotFound => {
            return fail(&ErrorCode::NotFound.context(format!("No route for {}", req.path)))
        }
        Resolved::Invalid(e) => return fail(e),
    };
    if req.method == Method::Options {
        return routes::preflight(&routes::allow(pattern)).into();
    }
    let Some(row) = routes::row_for(pattern, req.method) else {
        return not_allowed(req, &routes::allow(pattern), now).into();
    };
    if let Some(role) = row.access.role(view.config) {
        // 401 when logging in could help, 403 when the user's role is too low.
        let permitted = match view.auth_error {
            Some(e) => Err(e.clone()),
            None => view.principal.require(role),
        };
        if let Err(e) = permitted {
            return fail(&e);
        }
    }
    let query = match Query::parse(&req.query) {
        Ok(q) => q,
        Err(e) => return fail(&e),
    };
    let call = Call {
        req,
        route: pattern,
        query: &query,
        params,
        view,
        now,
    };
    (row.handler)(&call).unwrap_or_else(|e| fail(&e))
}

/// Answers one request whose route is resolved here (benchmarks, tests).
pub fn handle(req: &Request, view: &View<'_>, now: i64) -> Step {
    start(req, &resolve(&req.path), view, now)
}

fn not_allowed(req: &Request, allow: &str, now: i64) -> Response {
    Response::error(
        &ErrorCode::MethodNotAllowed.context(format!(
            "{} accepts {}",
            req.path,
            allow.trim_end_matches(", OPTIONS")
        )),
        now,
    )
    .with_header("Allow", allow.to_string())
}

/// The checks every request passes first: the `Host` allow-list (400: DNS rebinding), and
/// for a browser page on an origin not allowed, any request that changes state or opens a
/// WebSocket (403: such a page must not act through an operator's browser). Reading is left
/// to CORS: without the allow header the page cannot see the answer.
pub fn gate(req: &Request, origins: &OriginPolicy, hosts: &[String]) -> Result<(), ApiError> {
    let host = req.host.as_deref();
    if !crate::http::origin::host_allowed(hosts, host) {
        return Err(ErrorCode::BadRequest.context(format!(
            "this gateway does not answer to Host '{}' (http.allowed_hosts)",
            host.unwrap_or("")
        )));
    }
    let changes = req.websocket
        || matches!(
            req.method,
            Method::Post | Method::Put | Method::Delete | Method::Patch
        );
    if changes && origins.refuses(req.origin.as_deref(), host) {
        return Err(ErrorCode::Forbidden.context(format!(
                "pages from {} may not use this gateway (http.allowed_origins; its own pages under a DNS name need that name in http.allowed_hosts)",
                req.origin.as_deref().unwrap_or("")
            )));
    }
    Ok(())
}

/// The OpenAPI 3 description of every REST route (`GET /api/openapi.json`, open to all).
pub const OPENAPI: &[u8] = include_bytes!("openapi.json");

fn openapi(_: &Call<'_>) -> Result<Step, ApiError> {
    Ok(Response::json(200, OPENAPI.to_vec()).into())
}
