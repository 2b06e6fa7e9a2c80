//! The REST routes: one row each — method, path pattern, who may call it, handler. The
//! `Allow` header and 405, the role check and the metrics label all come from these rows;
//! adding a route is a row here and a handler in its own file (and its OpenAPI entry).
//!
//! A pattern's `:name` segments are parameters, validated when the path is matched (a
//! malformed id is 400 naming it, whatever the method). Rows are tried in order: a literal
//! segment listed first wins over a parameter (`/api/rules/firings` before
//! `/api/rules/:id`).

use super::{alarms, auth, catalog, channels, control, definitions, health, Call, Step};
use crate::auth::Role;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Method, Response};
use crate::model::ChannelId;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Everyone, without a token (probes, login, the API description).
    Anyone,
    /// At least this role.
    Least(Role),
    /// The role `http.metrics_role` names (Prometheus scrapes without a token by default).
    MetricsRole,
}

impl Access {
    /// The role needed (`None`: open to everyone).
    pub fn role(self, config: &Config) -> Option<Role> {
        match self {
            Access::Anyone => None,
            Access::Least(r) => Some(r),
            Access::MetricsRole => config.http.metrics_role.role(),
        }
    }
}

/// A handler: a pure function of the call to a response or to the work it needs first.
pub type Handler = fn(&Call<'_>) -> Result<Step, ApiError>;

pub struct Row {
    /// `GET` rows answer `HEAD` too.
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
}

const fn row(method: Method, path: &'static str, access: Access, handler: Handler) -> Row {
    Row {
        method,
        path,
        access,
        handler,
    }
}

use Access::{Anyone, Least, MetricsRole};
use Method::{Delete, Get, Post, Put};
const VIEWER: Access = Least(Role::Viewer);
const OPERATOR: Access = Least(Role::Operator);
const ADMIN: Access = Least(Role::Admin);

pub static ROUTES: &[Row] = &[
    row(Get, "/health", Anyone, health::basic),
    row(Get, "/health/ready", Anyone, health::ready),
    row(Get, "/health/detailed", VIEWER, health::detailed),
    row(Get, "/metrics", MetricsRole, health::metrics),
    row(Get, "/api/openapi.json", Anyone, super::openapi),
    row(Get, "/api/channels", VIEWER, channels::list),
    row(
        Get,
        "/api/channels/:channel_id/status",
        VIEWER,
        channels::status,
    ),
    row(
        Get,
        "/api/channels/:channel_id/realtime",
        VIEWER,
        channels::realtime,
    ),
    row(
        Get,
        "/api/channels/:channel_id/history",
        VIEWER,
        channels::history,
    ),
    row(
        Get,
        "/api/channels/:channel_id/points",
        VIEWER,
        super::points::list,
    ),
    row(Get, "/api/alarms/active", VIEWER, alarms::active),
    row(Get, "/api/alarms/events", VIEWER, alarms::events),
    row(Get, "/api/alarms/rules", VIEWER, definitions::list),
    row(Get, "/api/alarms/rules/:id", VIEWER, definitions::get),
    row(Put, "/api/alarms/rules/:id", ADMIN, definitions::put),
    row(Delete, "/api/alarms/rules/:id", ADMIN, definitions::delete),
    row(Post, "/api/alarms/:alarm_id/ack", OPERATOR, alarms::ack),
    row(Post, "/api/control", OPERATOR, control::submit),
    row(Get, "/api/commands/:command_id", VIEWER, control::command),
    row(Get, "/api/models", VIEWER, definitions::list),
    row(Get, "/api/models/:id", VIEWER, definitions::get),
    row(Put, "/api/models/:id", ADMIN, definitions::put),
    row(Delete, "/api/models/:id", ADMIN, definitions::delete),
    row(Get, "/api/rules", VIEWER, definitions::list),
    row(Get, "/api/rules/firings", VIEWER, definitions::firings),
    row(Get, "/api/rules/:id", VIEWER, definitions::get),
    row(Put, "/api/rules/:id", ADMIN, definitions::put),
    row(Delete, "/api/rules/:id", ADMIN, definitions::delete),
    row(Get, "/api/forwarding", VIEWER, definitions::list),
    row(Get, "/api/forwarding/:name", VIEWER, definitions::get),
    row(Put, "/api/forwarding/:name", ADMIN, definitions::put),
    row(Delete, "/api/forwarding/:name", ADMIN, definitions::delete),
    row(Get, "/api/audit", ADMIN, definitions::audit),
    row(Get, "/api/config/channels", VIEWER, catalog::channels),
    row(
        Get,
        "/api/config/channels/:channel_id",
        VIEWER,
        catalog::channel,
    ),
    row(
        Put,
        "/api/config/channels/:channel_id",
        ADMIN,
        catalog::save_channel,
    ),
    row(
        Delete,
        "/api/config/channels/:channel_id",
        ADMIN,
        catalog::delete_channel,
    ),
    row(
        Get,
        "/api/config/channels/:channel_id/points",
        VIEWER,
        catalog::points,
    ),
    row(
        Put,
        "/api/config/channels/:channel_id/points",
        ADMIN,
        catalog::put_points,
    ),
    row(
        Get,
        "/api/config/channels/:channel_id/points.csv",
        VIEWER,
        catalog::points_csv,
    ),
    row(
        Put,
        "/api/config/channels/:channel_id/points.csv",
        ADMIN,
        catalog::put_points_csv,
    ),
    row(Post, "/api/auth/login", Anyone, auth::login),
    row(Post, "/api/auth/refresh", Anyone, auth::refresh),
    row(Post, "/api/auth/logout", Anyone, auth::logout),
    row(Get, "/api/auth/me", VIEWER, auth::me),
];

/// A path's parameters, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params<'p> {
    /// At most [`MAX_PARAMS`]; a plain array keeps the borrow of the path covariant.
    values: [(&'static str, &'p str); MAX_PARAMS],
    len: usize,
}

/// The most parameters a pattern has.
const MAX_PARAMS: usize = 2;

impl<'p> Params<'p> {
    /// The raw value of `:name` (empty when the route has none).
    pub fn get(&self, name: &str) -> &'p str {
        self.values[..self.len]
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v)
    }

    /// `:channel_id` (validated when matched).
    pub fn channel(&self) -> ChannelId {
        ChannelId::parse(self.get("channel_id")).unwrap_or(ChannelId(0))
    }

    /// The definition's `:id` or `:name`.
    pub fn id(&self) -> &'p str {
        match self.get("id") {
            "" => self.get("name"),
            id => id,
        }
    }
}

/// Checks a parameter's value when the path is matched.
fn validate(name: &str, value: &str) -> Result<(), ApiError> {
    let ok = match name {
        "channel_id" => ChannelId::parse(value).is_some(),
        "id" | "name" => definitions::valid_id(value),
        "alarm_id" => alarms::valid_alarm_id(value),
        "command_id" => control::valid_command_id(value),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let (param, expected) = match name {
        "channel_id" => ("channel_id", "must be an integer in 1..=4294967295"),
        "alarm_id" => ("alarm_id", "must be ALM_{n}"),
        "command_id" => ("command_id", "must be CMD_{n}"),
        _ => ("id", "must be 1-64 of A-Za-z0-9_.-"),
    };
    Err(ApiError::invalid_parameter(
        param,
        &format!("{expected}, got '{value}'"),
    ))
}

/// Whether `path` has `pattern`'s shape, with its parameters (not yet validated).
fn shape<'p>(pattern: &'static str, path: &'p str) -> Option<Params<'p>> {
    let mut params = Params::default();
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(h)) => match w.strip_prefix(':') {
                Some(name) if !h.is_empty() && params.len < MAX_PARAMS => {
                    params.values[params.len] = (name, h);
                    params.len += 1;
                }
                None if w == h => {}
                _ => return None,
            },
            _ => return None,
        }
    }
}

/// The route a path names: its pattern and parameters; `Ok(None)`: no route; `Err`: a
/// parameter is malformed.
pub fn find(path: &str) -> Result<Option<(&'static str, Params<'_>)>, ApiError> {
    for r in ROUTES {
        if let Some(params) = shape(r.path, path) {
            for (name, value) in &params.values[..params.len] {
                validate(name, value)?;
            }
            return Ok(Some((r.path, params)));
        }
    }
    Ok(None)
}

/// A route's metrics label: its pattern with every id parameter as `:id` (as dashboards
/// have always seen them; `:name` stays), from a table made once.
pub fn label(pattern: &'static str) -> &'static str {
    static LABELS: std::sync::LazyLock<Vec<(&'static str, &'static str)>> =
        std::sync::LazyLock::new(|| {
            ROUTES
                .iter()
                .map(|r| {
                    let l = [":channel_id", ":alarm_id", ":command_id"]
                        .iter()
                        .fold(r.path.to_string(), |l, p| l.replace(p, ":id"));
                    (r.path, &*Box::leak(l.into_boxed_str()))
                })
                .collect()
        });
    LABELS
        .iter()
        .find(|(p, _)| *p == pattern)
        .map_or(pattern, |(_, l)| l)
}

/// The row for `method` at `pattern` (`HEAD` is `GET`'s).
pub fn row_for(pattern: &str, method: Method) -> Option<&'static Row> {
    let method = if method == Method::Head {
        Method::Get
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|r| r.path == pattern && r.method == method)
}

/// The methods `pattern` answers, as `Allow` lists them.
pub fn allow(pattern: &str) -> String {
    let mut out = String::new();
    for m in [Get, Head, Post, Put, Delete] {
        let has = ROUTES
            .iter()
            .any(|r| r.path == pattern && r.method == if m == Head { Get } else { m });
        if has {
            out.push_str(m.as_str());
            out.push_str(", ");
        }
    }
    out.push_str("OPTIONS");
    out
}

use Method::Head;

/// 204 to a CORS preflight: what the route accepts.
pub fn preflight(allow: &str) -> Response {
    Response::json(204, Vec::new())
        .with_header("Allow", allow.to_string())
        .with_header("Access-Control-Allow-Methods", allow.to_string())
        .with_header(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type",
        )
        .with_header("Access-Control-Max-Age", "600")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_rows() {
        let (p, params) = find("/api/channels/1001/realtime").unwrap().unwrap();
        assert_eq!(p, "/api/channels/:channel_id/realtime");
        assert_eq!(params.channel(), ChannelId(1001));
        assert_eq!(find("/api/channels/1001/nope").unwrap(), None);
        assert_eq!(find("/nope").unwrap(), None);
        assert!(find("/api/channels/abc/status").is_err());
        assert!(find("/api/channels/0/status").is_err());
        assert!(find("/api/channels/4294967296/status").is_err());
        // A literal segment listed first wins over a parameter.
        assert_eq!(
            find("/api/rules/firings").unwrap().unwrap().0,
            "/api/rules/firings"
        );
        let (p, params) = find("/api/alarms/rules/ack").unwrap().unwrap();
        assert_eq!((p, params.id()), ("/api/alarms/rules/:id", "ack"));
        assert_eq!(
            find("/api/alarms/ALM_3/ack").unwrap().unwrap().0,
            "/api/alarms/:alarm_id/ack"
        );
        assert_eq!(
            find("/api/forwarding/dest-1").unwrap().unwrap().1.id(),
            "dest-1"
        );
    }

    #[test]
    fn labels_name_ids_as_they_always_did() {
        assert_eq!(
            label("/api/channels/:channel_id/realtime"),
            "/api/channels/:id/realtime"
        );
        assert_eq!(label("/api/alarms/:alarm_id/ack"), "/api/alarms/:id/ack");
        assert_eq!(label("/api/forwarding/:name"), "/api/forwarding/:name");
        assert_eq!(label("/api/channels"), "/api/channels");
    }

    #[test]
    fn allow_lists_each_patterns_methods() {
        assert_eq!(allow("/api/channels"), "GET, HEAD, OPTIONS");
        assert_eq!(allow("/api/control"), "POST, OPTIONS");
        assert_eq!(allow("/api/models/:id"), "GET, HEAD, PUT, DELETE, OPTIONS");
        assert_eq!(
            allow("/api/config/channels/:channel_id/points"),
            "GET, HEAD, PUT, OPTIONS"
        );
        assert!(row_for("/api/channels", Method::Head).is_some());
        assert!(row_for("/api/channels", Method::Post).is_none());
    }

    #[test]
    fn every_route_is_described_in_the_openapi_document() {
        let doc = std::str::from_utf8(super::super::OPENAPI).unwrap();
        for r in ROUTES {
            // `:channel_id` → `{id}`, as the document names path parameters.
            let path: Vec<String> = r
                .path
                .split('/')
                .map(|s| match s.strip_prefix(':') {
                    Some("alarm_id") => "{alarm_id}".to_string(),
                    Some(_) => "{id}".to_string(),
                    None => s.to_string(),
                })
                .collect();
            let path = path.join("/");
            let method = format!("\"{}\"", r.method.as_str().to_lowercase());
            let entry = doc
                .split(&format!("\n  \"{path}\": {{"))
                .nth(1)
                .unwrap_or_else(|| panic!("{path} is not in openapi.json"));
            let entry = entry.split("\n  },").next().unwrap_or(entry);
            assert!(
                entry.contains(&format!("\n   {method}: {{")),
                "{path} has no {method} in openapi.json"
            );
        }
    }

    #[test]
    fn every_row_has_a_unique_method_and_pattern() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.path == b.path && a.method == b.method),
                    "{} {} twice",
                    a.method.as_str(),
                    a.path
                );
            }
        }
    }
}
