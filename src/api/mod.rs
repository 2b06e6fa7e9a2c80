//! REST handlers: pure functions of (request, [`View`], now) → response. The view holds the
//! feed's latest snapshot, so no request costs a Redis round trip; the one live measurement
//! a route wants (the Redis round-trip time for `/health/detailed`) is declared by
//! [`needs`] and gathered by the connection before the handler runs.

pub mod alarms;
pub mod auth;
pub mod catalog;
mod channels;
pub mod control;
pub mod definitions;
mod health;
pub mod web;

use crate::alarm::{ActiveAlarms, Range};
use crate::auth::{Auth, Principal, Role};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::http::origin::OriginPolicy;
use crate::http::{Method, Query, Request, Response};
use crate::model::ChannelId;
use crate::site::{DependencyHealth, Snapshot};
use smallvec::SmallVec;
use std::net::IpAddr;
use std::time::Duration;

/// Everything a handler may read, at one instant.
pub struct View<'a> {
    pub snapshot: &'a Snapshot,
    pub redis: &'a DependencyHealth,
    pub config: &'a Config,
    pub stats: Stats,
    /// A live `PING` round trip through the feed, when the route asked for one and it came
    /// back in time.
    pub redis_rtt: Option<Duration>,
    pub alarms: &'a ActiveAlarms,
    /// The page of the alarm log the route asked for, when the feed could read it.
    pub alarm_events: Option<Range>,
    /// `POST /api/control`: the command as queued or refused (`None`: Redis not asked).
    pub control: Option<Result<crate::control::Submitted, ApiError>>,
    /// `GET /api/commands/{id}`: the record's fields (empty: no such command; `None`: Redis
    /// not asked).
    pub command: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Definitions read for the route (`None`: Redis not asked or not answering).
    pub definitions: Option<Vec<definitions::Record>>,
    /// The library call the route made (save/delete).
    pub library: Option<definitions::Called>,
    /// A page of the log the route reads (`rule:firings`, `audit:control`; one more than
    /// asked when more follow).
    pub stream: Option<Vec<crate::alarm::StreamEntry>>,
    /// Who the request acts as (authenticated before anything was gathered).
    /// The gateway's counters for `/metrics`.
    pub metrics: Option<crate::metrics::Sample>,
    /// The replies to the commands the route ran (`None`: Redis not asked or not answering).
    pub exec: Option<Result<Vec<redis::Value>, String>>,
    /// The configured channels (known before their first write).
    pub catalog: &'a crate::catalog::Catalog,
    pub principal: &'a Principal,
    /// Why the request's token was refused, if it was (routes open to everyone ignore it).
    pub auth_error: Option<&'a ApiError>,
    pub auth: &'a Auth,
    /// The client's address (behind trusted proxies: the forwarded one).
    pub client_ip: IpAddr,
    /// `POST /api/auth/login`: whether the password matched, or why it was not checked
    /// (`None`: the verifier did not answer in time).
    pub login: Option<Result<bool, ApiError>>,
    /// Fresh randomness for tokens (login and refresh only; zeros otherwise).
    pub random: [u8; 32],
    /// A history query's page, or why InfluxDB did not answer (`None`: not asked, or no
    /// answer before the deadline).
    pub history: Option<Result<crate::history::Page, String>>,
    /// The history recorder's state (`None`: no history store configured).
    pub history_status: Option<crate::history::Status>,
    /// How long ago (ms) the feed last completed a collect (`None`: not yet).
    pub feed_lag_ms: Option<u64>,
}

impl<'a> View<'a> {
    /// A view with nothing gathered (no live measurement, no Redis answer): what a plain
    /// read route needs. The connection fills in what [`needs`] asked for.
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
            stats: Stats::default(),
            redis_rtt: None,
            alarms,
            alarm_events: None,
            control: None,
            command: None,
            definitions: None,
            library: None,
            stream: None,
            metrics: None,
            exec: None,
            catalog,
            principal,
            auth_error: None,
            auth,
            client_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            login: None,
            random: [0; 32],
            history: None,
            history_status: None,
            feed_lag_ms: None,
        }
    }
}

/// Gateway counters for `/health/detailed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub uptime_secs: u64,
    pub connections: usize,
    pub websockets_per_shard: SmallVec<[usize; 8]>,
}

/// What a request needs gathered before [`handle`] can answer it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Needs {
    /// A live Redis round trip (asked of the feed, with a short deadline).
    pub redis_rtt: bool,
    /// The gateway's counters (other routes get `Stats::default()`).
    pub stats: bool,
    /// A page of the alarm log (read by the feed).
    pub alarm_events: Option<alarms::EventsQuery>,
    /// A control command to queue (a valid `POST /api/control` body).
    pub control: Option<crate::control::ControlRequest>,
    /// A command record to read, and how long to wait for its final state (ms).
    pub command: Option<(String, u32)>,
    /// Definitions to read (one id, or all of the kind).
    pub definitions: Option<(definitions::Kind, Option<String>)>,
    /// A library function to call: (function, key, arguments).
    pub library: Option<(&'static str, String, Vec<String>)>,
    /// A page of a log (stream): (stream, after, limit).
    pub stream: Option<(&'static str, crate::alarm::EventId, usize)>,
    /// The counters for `/metrics`.
    pub metrics: bool,
    /// Commands to run in Redis: (commands, atomic).
    pub exec: Option<(Vec<Vec<String>>, bool)>,
    /// A password to check: (user, password).
    pub login: Option<(String, String)>,
    /// Randomness for new tokens.
    pub random: bool,
    /// A history query to run (a valid `GET /api/channels/{id}/history` with a store).
    pub history: Option<crate::history::HistoryQuery>,
}

/// What `req`, made by `principal` at `now`, needs gathered before it is answered (nothing
/// when it will be refused: a refused request queues, saves and checks nothing).
pub fn needs(
    req: &Request,
    principal: &Principal,
    auth_error: Option<&ApiError>,
    config: &Config,
    now: i64,
) -> Needs {
    let max_depth = config.ws.max_json_depth;
    let get = matches!(req.method, Method::Get | Method::Head);
    let route = route(&req.path);
    if let Ok(Some(r)) = &route {
        if permitted(r, req.method, principal, auth_error, config).is_err() {
            return Needs::default();
        }
    }
    let login = (req.method == Method::Post && matches!(route, Ok(Some(Route::AuthLogin))))
        .then(|| auth::parse_login(&req.body, max_depth).ok())
        .flatten();
    let random = req.method == Method::Post
        && matches!(route, Ok(Some(Route::AuthLogin | Route::AuthRefresh)));
    let control = (req.method == Method::Post && matches!(route, Ok(Some(Route::Control))))
        .then(|| control::parse_body(&req.body, max_depth).ok())
        .flatten();
    let command = match &route {
        Ok(Some(Route::Command(id))) if get => Query::parse(&req.query)
            .and_then(|q| control::wait_ms(&q))
            .ok()
            .map(|wait| (id.clone(), wait)),
        _ => None,
    };
    let detailed = get && matches!(route, Ok(Some(Route::HealthDetailed)));
    let alarm_events = (get && matches!(route, Ok(Some(Route::AlarmEvents))))
        .then(|| Query::parse(&req.query).and_then(|q| alarms::EventsQuery::parse(&q)))
        .and_then(Result::ok);
    let (mut definitions, mut library, mut stream) = (None, None, None);
    match &route {
        Ok(Some(Route::Definitions(kind))) if get => definitions = Some((*kind, None)),
        Ok(Some(Route::Definition(kind, id))) => match req.method {
            Method::Get | Method::Head => definitions = Some((*kind, Some(id.clone()))),
            Method::Put => {
                if let Ok(body) = definitions::body(&req.body, max_depth, *kind) {
                    let key = format!("{}{id}", kind.prefix());
                    library = Some((kind.save_function(), key, vec![body.to_string()]));
                }
            }
            Method::Delete => {
                let key = format!("{}{id}", kind.prefix());
                library = Some((kind.delete_function(), key, Vec::new()));
            }
            _ => {}
        },
        Ok(Some(Route::AlarmAck(alarm_id))) if req.method == Method::Post => {
            let who = principal.name().to_string();
            library = Some((
                "alarmsrv_ack",
                "alarm:active".to_string(),
                vec![alarm_id.clone(), who],
            ));
        }
        Ok(Some(r @ (Route::RuleFirings | Route::Audit))) if get => {
            let key = if *r == Route::Audit {
                "audit:control"
            } else {
                "rule:firings"
            };
            stream = Query::parse(&req.query)
                .and_then(|q| definitions::page_query(&q))
                .ok()
                .map(|(after, limit)| (key, after, limit));
        }
        _ => {}
    }
    Needs {
        redis_rtt: detailed,
        stats: detailed,
        alarm_events,
        control,
        command,
        definitions,
        library,
        stream,
        metrics: get && matches!(route, Ok(Some(Route::Metrics))),
        exec: match &route {
            Ok(Some(Route::Config(t))) => catalog::needs(*t, req, max_depth),
            _ => None,
        },
        login,
        random,
        history: match &route {
            Ok(Some(Route::ChannelHistory(id))) if get && config.history.enabled() => {
                Query::parse(&req.query)
                    .and_then(|q| {
                        crate::history::HistoryQuery::parse(*id, &q, now, &config.history.limits())
                    })
                    .ok()
            }
            _ => None,
        },
    }
}

/// The checks every request passes first: the `Host` allow-list (400: DNS rebinding), and
/// for a browser page on an origin not allowed, any request that changes state or opens a
/// WebSocket (403: such a page must not act through an operator's browser). Reading is left
/// to CORS: without the allow header the page cannot see the answer.
pub fn gate(req: &Request, origins: &OriginPolicy, hosts: &[String]) -> Result<(), ApiError> {
    let host = req.host.as_deref();
    if !crate::http::origin::host_allowed(hosts, host) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "Host not allowed",
            format!(
                "this gateway does not answer to Host '{}' (http.allowed_hosts)",
                host.unwrap_or("")
            ),
        ));
    }
    let changes = req.websocket
        || matches!(
            req.method,
            Method::Post | Method::Put | Method::Delete | Method::Patch
        );
    if changes && origins.refuses(req.origin.as_deref(), host) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "Origin not allowed",
            format!(
                "pages from {} may not use this gateway (http.allowed_origins; its own pages under a DNS name need that name in http.allowed_hosts)",
                req.origin.as_deref().unwrap_or("")
            ),
        ));
    }
    Ok(())
}

/// The role a route needs (`None`: open to everyone — health probes, login and refresh,
/// CORS preflights).
fn required_role(route: &Route, method: Method, config: &Config) -> Option<Role> {
    if method == Method::Options {
        return None;
    }
    match route {
        Route::Metrics => config.http.metrics_role.role(),
        Route::Health | Route::HealthReady | Route::OpenApi | Route::Page(_) => None,
        Route::AuthLogin | Route::AuthRefresh | Route::AuthLogout => None,
        Route::Control | Route::AlarmAck(_) => Some(Role::Operator),
        Route::Audit => Some(Role::Admin),
        Route::Definition(..) | Route::Config(_)
            if matches!(method, Method::Put | Method::Delete) =>
        {
            Some(Role::Admin)
        }
        _ => Some(Role::Viewer),
    }
}

/// Whether `principal` may make this request: 401 when logging in could help, 403 when the
/// user's role is too low.
fn permitted(
    route: &Route,
    method: Method,
    principal: &Principal,
    auth_error: Option<&ApiError>,
    config: &Config,
) -> Result<(), ApiError> {
    match (required_role(route, method, config), auth_error) {
        (None, _) => Ok(()),
        (Some(_), Some(e)) => Err(e.clone()),
        (Some(role), None) => principal.require(role),
    }
}

/// Which resource a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// The operator page or one of its assets (`web::ASSETS` index).
    Page(usize),
    Channels,
    ChannelStatus(ChannelId),
    ChannelRealtime(ChannelId),
    ChannelHistory(ChannelId),
    Health,
    HealthReady,
    HealthDetailed,
    AlarmsActive,
    AlarmEvents,
    Control,
    Command(String),
    Definitions(definitions::Kind),
    Definition(definitions::Kind, String),
    RuleFirings,
    Audit,
    AlarmAck(String),
    Config(catalog::Target),
    Metrics,
    OpenApi,
    AuthLogin,
    AuthRefresh,
    AuthLogout,
    AuthMe,
}

impl Route {
    /// Routes that serve the site's data: until the first load from Redis they answer 503
    /// (an empty site and an unreachable one must look different).
    fn serves_data(&self) -> bool {
        matches!(
            self,
            Route::Channels | Route::ChannelStatus(_) | Route::ChannelRealtime(_)
        )
    }
}

fn route(path: &str) -> Result<Option<Route>, ApiError> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    if let Some(i) = web::find(path) {
        return Ok(Some(Route::Page(i)));
    }
    let route = match path {
        "/api/channels" => Route::Channels,
        "/health" => Route::Health,
        "/health/ready" => Route::HealthReady,
        "/health/detailed" => Route::HealthDetailed,
        "/api/alarms/active" => Route::AlarmsActive,
        "/api/alarms/events" => Route::AlarmEvents,
        "/api/control" => Route::Control,
        "/api/models" => Route::Definitions(definitions::Kind::Models),
        "/api/rules" => Route::Definitions(definitions::Kind::Rules),
        "/api/forwarding" => Route::Definitions(definitions::Kind::Forwarding),
        "/api/alarms/rules" => Route::Definitions(definitions::Kind::AlarmRules),
        "/api/rules/firings" => Route::RuleFirings,
        "/api/audit" => Route::Audit,
        "/metrics" => Route::Metrics,
        "/api/openapi.json" => Route::OpenApi,
        "/api/auth/login" => Route::AuthLogin,
        "/api/auth/refresh" => Route::AuthRefresh,
        "/api/auth/logout" => Route::AuthLogout,
        "/api/auth/me" => Route::AuthMe,
        _ if [
            "/api/models/",
            "/api/rules/",
            "/api/forwarding/",
            "/api/alarms/rules/",
        ]
        .iter()
        .any(|p| path.starts_with(p)) =>
        {
            let (kind, id) = if let Some(id) = path.strip_prefix("/api/models/") {
                (definitions::Kind::Models, id)
            } else if let Some(id) = path.strip_prefix("/api/rules/") {
                (definitions::Kind::Rules, id)
            } else if let Some(id) = path.strip_prefix("/api/alarms/rules/") {
                (definitions::Kind::AlarmRules, id)
            } else {
                let id = path.strip_prefix("/api/forwarding/").unwrap_or_default();
                (definitions::Kind::Forwarding, id)
            };
            if !definitions::valid_id(id) {
                return Err(ApiError::invalid_parameter(
                    "id",
                    &format!("must be 1-64 of A-Za-z0-9_.-, got '{id}'"),
                ));
            }
            Route::Definition(kind, id.to_string())
        }
        _ if path.starts_with("/api/config/channels") => {
            match catalog::Target::parse(&path["/api/config/channels".len()..])? {
                Some(t) => Route::Config(t),
                None => return Ok(None),
            }
        }
        _ if path.starts_with("/api/alarms/") && path.ends_with("/ack") => {
            let id = &path["/api/alarms/".len()..path.len() - "/ack".len()];
            if !alarms::valid_alarm_id(id) {
                return Err(ApiError::invalid_parameter(
                    "alarm_id",
                    &format!("must be ALM_{{n}}, got '{id}'"),
                ));
            }
            Route::AlarmAck(id.to_string())
        }
        _ if path.starts_with("/api/commands/") => {
            let id = &path["/api/commands/".len()..];
            if !control::valid_command_id(id) {
                return Err(ApiError::invalid_parameter(
                    "command_id",
                    &format!("must be CMD_{{n}}, got '{id}'"),
                ));
            }
            Route::Command(id.to_string())
        }
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

/// Answers one request at `now` (Unix ms).
pub fn handle(req: &Request, view: &View<'_>, now: i64) -> Response {
    let route = match route(&req.path) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Response::error(
                &ApiError::new(
                    ErrorCode::NotFound,
                    "Not found",
                    format!("No route for {}", req.path),
                ),
                now,
            )
        }
        Err(e) => return Response::error(&e, now),
    };
    let allow = match route {
        Route::Control
        | Route::AuthLogin
        | Route::AuthRefresh
        | Route::AuthLogout
        | Route::AlarmAck(_) => "POST, OPTIONS",
        Route::Config(t) => t.allow(),
        Route::Definition(..) => "GET, HEAD, PUT, DELETE, OPTIONS",
        _ => "GET, HEAD, OPTIONS",
    };
    match (req.method, &route) {
        (
            Method::Post,
            Route::Control
            | Route::AuthLogin
            | Route::AuthRefresh
            | Route::AuthLogout
            | Route::AlarmAck(_),
        ) => {}
        (Method::Put | Method::Delete, Route::Definition(..)) => {}
        (Method::Put | Method::Delete, Route::Config(t))
            if t.allow().contains(req.method.as_str()) => {}
        (Method::Get | Method::Head, _) if !allow.starts_with("POST") => {}
        (Method::Options, _) => {
            return Response::json(204, Vec::new())
                .with_header("Allow", allow)
                .with_header("Access-Control-Allow-Methods", allow)
                .with_header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type",
                )
                .with_header("Access-Control-Max-Age", "600")
        }
        _ => {
            return Response::error(
                &ApiError::new(
                    ErrorCode::MethodNotAllowed,
                    "Method not allowed",
                    format!(
                        "{} accepts {}",
                        req.path,
                        allow.trim_end_matches(", OPTIONS")
                    ),
                ),
                now,
            )
            .with_header("Allow", allow)
        }
    }
    if let Err(e) = permitted(
        &route,
        req.method,
        view.principal,
        view.auth_error,
        view.config,
    ) {
        return Response::error(&e, now);
    }
    if route.serves_data() && !view.snapshot.loaded {
        return Response::error(&not_loaded(view), now);
    }
    let result = Query::parse(&req.query).and_then(|q| match route {
        Route::Channels => Ok(channels::list(view, now)),
        Route::ChannelStatus(id) => channels::status(view, id, now),
        Route::ChannelRealtime(id) => channels::realtime(view, id, &q, now),
        Route::ChannelHistory(id) => channels::history(view, id, &q, now),
        Route::Health => Ok(health::basic(view, now)),
        Route::HealthReady => health::ready(view, now),
        Route::HealthDetailed => Ok(health::detailed(view, now)),
        Route::AlarmsActive => alarms::active(view, now),
        Route::AlarmEvents => alarms::events(view, &q, now),
        Route::Control => control::parse_body(&req.body, view.config.ws.max_json_depth)
            .and_then(|_| control::submitted(view, now)),
        Route::Command(ref id) => {
            control::wait_ms(&q).and_then(|_| control::command(view, id, now))
        }
        Route::Definitions(kind) => definitions::list(view, kind, now),
        Route::Definition(kind, ref id) => match req.method {
            Method::Put => definitions::body(&req.body, view.config.ws.max_json_depth, kind)
                .and_then(|_| definitions::saved(view, kind, id, now)),
            Method::Delete => definitions::deleted(view, kind, id, now),
            _ => definitions::get(view, kind, id, now),
        },
        Route::RuleFirings => definitions::page(view, &q, "firings", now),
        Route::Audit => definitions::page(view, &q, "entries", now),
        Route::AlarmAck(ref id) => alarms::acknowledged(view, id, now),
        Route::Config(t) => catalog::handle(view, t, req, now),
        Route::Metrics => Ok(metrics(view)),
        Route::OpenApi => Ok(Response::json(200, OPENAPI.to_vec())),
        Route::Page(i) => Ok(web::serve(i, req.if_none_match.as_deref())),
        Route::AuthLogin => auth::login(view, &req.body, now),
        Route::AuthRefresh => auth::refresh(view, &req.body, now),
        Route::AuthLogout => auth::logout(view, &req.body, now),
        Route::AuthMe => auth::me(view, now),
    });
    result.unwrap_or_else(|e| Response::error(&e, now))
}

/// The OpenAPI 3 description of every REST route (`GET /api/openapi.json`, open to all).
pub const OPENAPI: &[u8] = include_bytes!("openapi.json");

/// `GET /metrics`: the Prometheus text format.
fn metrics(view: &View<'_>) -> Response {
    let text = view
        .metrics
        .as_ref()
        .map(crate::metrics::render)
        .unwrap_or_default();
    let mut r = Response::json(200, text.into_bytes());
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r
}

/// The route's name for metrics: its template (ids as `:id`), so a client cannot grow the
/// label set; unknown paths are one label.
pub fn route_label(path: &str) -> &'static str {
    match route(path) {
        Ok(Some(r)) => match r {
            Route::Channels => "/api/channels",
            Route::ChannelStatus(_) => "/api/channels/:id/status",
            Route::ChannelRealtime(_) => "/api/channels/:id/realtime",
            Route::ChannelHistory(_) => "/api/channels/:id/history",
            Route::Health => "/health",
            Route::HealthReady => "/health/ready",
            Route::HealthDetailed => "/health/detailed",
            Route::AlarmsActive => "/api/alarms/active",
            Route::AlarmEvents => "/api/alarms/events",
            Route::Control => "/api/control",
            Route::Command(_) => "/api/commands/:id",
            Route::Definitions(k) => k.collection_path(),
            Route::Definition(k, _) => k.item_path(),
            Route::RuleFirings => "/api/rules/firings",
            Route::Audit => "/api/audit",
            Route::AlarmAck(_) => "/api/alarms/:id/ack",
            Route::Config(catalog::Target::Channels) => "/api/config/channels",
            Route::Config(catalog::Target::Channel(_)) => "/api/config/channels/:id",
            Route::Config(catalog::Target::Points(_)) => "/api/config/channels/:id/points",
            Route::Config(catalog::Target::PointsCsv(_)) => "/api/config/channels/:id/points.csv",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/api/openapi.json",
            Route::Page(i) => web::ASSETS[i].path,
            Route::AuthLogin => "/api/auth/login",
            Route::AuthRefresh => "/api/auth/refresh",
            Route::AuthLogout => "/api/auth/logout",
            Route::AuthMe => "/api/auth/me",
        },
        Ok(None) => "unknown",
        Err(_) => "invalid",
    }
}

/// 503 before the site's data has been loaded, with why it has not.
fn not_loaded(view: &View<'_>) -> ApiError {
    ApiError::new(
        ErrorCode::ServiceUnavailable,
        "Data not loaded",
        format!(
            "the gateway has not loaded the site's data from Redis yet ({})",
            view.redis.message
        ),
    )
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
        assert_eq!(route("/").unwrap(), Some(Route::Page(0)));
        let e = route("/api/channels/abc/status").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParameter);
        assert!(route("/api/channels/0/status").is_err());
        assert!(route("/api/channels/4294967296/status").is_err());
    }
}
