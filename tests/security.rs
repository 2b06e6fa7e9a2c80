//! Security end to end over real HTTP and WebSocket: login, refresh rotation and reuse,
//! logout, the role matrix over every route and the control message, tokens refused
//! (tampered, `alg: none`, another key, expired on an open WebSocket), anonymous access off,
//! the failed-login limit and that password hashing never stalls a shard, origins (CORS,
//! upgrades, state-changing requests), hosts, and client-id takeover across users.

mod common;
#[path = "common/ws.rs"]
mod wsc;

use common::*;
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use voltage_gateway::auth::Role;
use voltage_gateway::config::{AnonymousRole, Config, DriverKind, UserConfig};
use wsc::*;

const SEED_CONTROL: &str = r#"{"type":"control","id":"ctrl_001","timestamp":"2025-08-12T10:30:00Z","data":{"channel_id":2001,"point_id":20,"command_type":"set_value","value":50.0,"operator":"user_001","reason":"Production adjustment"}}"#;

/// One argon2id hash per password for the whole test binary (hashing is slow by design).
fn hash_of(password: &'static str) -> String {
    static H: OnceLock<std::sync::Mutex<std::collections::HashMap<&'static str, String>>> =
        OnceLock::new();
    let m = H.get_or_init(Default::default);
    let mut m = m.lock().unwrap();
    m.entry(password)
        .or_insert_with(|| voltage_gateway::auth::password::hash(password, &[9; 16]).unwrap())
        .clone()
}

/// Users vic (viewer), olga (operator), ada (admin); password = name + "-pw".
fn users(cfg: &mut Config) {
    cfg.auth.secret = "a test secret that is at least 32 bytes long".into();
    for (name, pw, role) in [
        ("vic", "vic-pw", Role::Viewer),
        ("olga", "olga-pw", Role::Operator),
        ("ada", "ada-pw", Role::Admin),
    ] {
        cfg.auth.users.push(UserConfig {
            username: name.into(),
            password_hash: hash_of(pw),
            role,
        });
    }
}

/// A request with optional bearer token, Origin and JSON body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    origin: Option<&str>,
    body: &str,
) -> HttpResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(o) = origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(addr, req.as_bytes())
}

fn login(addr: SocketAddr, user: &str, password: &str) -> HttpResponse {
    let body = json!({"username": user, "password": password}).to_string();
    http(addr, "POST", "/api/auth/login", None, None, &body)
}

/// An access token (and the whole login answer) for `user`.
fn token(addr: SocketAddr, user: &str) -> (String, Json) {
    let r = login(addr, user, &format!("{user}-pw"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let d = r.json()["data"].clone();
    (d["access_token"].as_str().unwrap().to_string(), d)
}

/// A WebSocket upgrade's answer: 101, or the status and JSON error of the refusal.
fn upgrade(addr: SocketAddr, path: &str, extra: &str) -> (u16, Option<Json>) {
    let r = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").as_bytes(),
    );
    let body = (r.status != 101).then(|| r.json());
    (r.status, body)
}

#[test]
fn login_me_refresh_rotation_reuse_and_logout() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, users);
    let addr = gw.local_addr();
    login(addr, "olga", "wrong").error(401, "UNAUTHORIZED");
    login(addr, "nobody", "x").error(401, "UNAUTHORIZED");
    http(
        addr,
        "POST",
        "/api/auth/login",
        None,
        None,
        r#"{"username":"olga"}"#,
    )
    .error(400, "INVALID_PARAMETER");
    let (access, d) = token(addr, "olga");
    assert_eq!(d["token_type"], "Bearer");
    assert_eq!(d["expires_in"], 900);
    assert_eq!(d["user"], json!({"username":"olga","role":"operator"}));

    let me = http(addr, "GET", "/api/auth/me", Some(&access), None, "").json();
    assert_eq!(me["data"]["username"], "olga");
    assert_eq!(me["data"]["role"], "operator");
    assert_eq!(me["data"]["anonymous"], false);
    let anon = get_ok(addr, "/api/auth/me");
    assert_eq!(
        anon["data"],
        json!({"username":null,"role":"viewer","anonymous":true,"expires_at":null})
    );

    // Refresh: a new pair; the old refresh token is used up, and using it again revokes the
    // family — the new tokens included.
    let refresh = |t: &str| {
        http(
            addr,
            "POST",
            "/api/auth/refresh",
            None,
            None,
            &json!({"refresh_token": t}).to_string(),
        )
    };
    let r1 = d["refresh_token"].as_str().unwrap().to_string();
    let d2 = refresh(&r1).json()["data"].clone();
    let (a2, r2) = (
        d2["access_token"].as_str().unwrap().to_string(),
        d2["refresh_token"].as_str().unwrap().to_string(),
    );
    assert_ne!(r2, r1);
    assert_eq!(
        http(addr, "GET", "/api/auth/me", Some(&a2), None, "").status,
        200
    );
    let e = refresh(&r1).error(401, "UNAUTHORIZED");
    assert!(
        e["details"].as_str().unwrap().contains("already used"),
        "{e}"
    );
    refresh(&r2).error(401, "UNAUTHORIZED");
    http(addr, "GET", "/api/auth/me", Some(&a2), None, "").error(401, "UNAUTHORIZED");

    // Logout with the access token: it stops working at once. Unknown body properties are
    // ignored whatever their value (a 20-digit integer once made this an INVALID_JSON).
    let (a3, _) = token(addr, "olga");
    let body = r#"{"x":-51861110584153047040}"#;
    assert_eq!(
        http(addr, "POST", "/api/auth/logout", Some(&a3), None, body).status,
        200
    );
    let e = http(addr, "GET", "/api/channels", Some(&a3), None, "").error(401, "UNAUTHORIZED");
    assert!(e["details"].as_str().unwrap().contains("revoked"), "{e}");
    // Nothing names a login to end.
    http(addr, "POST", "/api/auth/logout", None, None, "").error(401, "UNAUTHORIZED");
    // A stale token does not block login, refresh or the health probes.
    assert_eq!(
        http(addr, "GET", "/health", Some(&a3), None, "").status,
        200
    );
    let r = http(
        addr,
        "POST",
        "/api/auth/login",
        Some(&a3),
        None,
        r#"{"username":"vic","password":"vic-pw"}"#,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn role_matrix_over_every_route_and_the_control_message() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, users);
    let addr = gw.local_addr();
    write(&mut con, "comsrv:5000:T", r#"{"1":1}"#, None);
    let model = r#"{"output":{"channel_id":5000,"point_id":9},"op":"scale","scale":2,"inputs":[{"channel_id":1001,"point_id":1}]}"#;
    let control = r#"{"channel_id":2001,"point_id":20,"command_type":"set_value","value":5}"#;
    // (method, path, body, role needed: None = open to all)
    let routes: Vec<(&str, &str, &str, Option<Role>)> = vec![
        ("GET", "/health", "", None),
        ("GET", "/health/ready", "", None),
        ("GET", "/health/detailed", "", Some(Role::Viewer)),
        ("GET", "/api/channels", "", Some(Role::Viewer)),
        ("GET", "/api/channels/1001/status", "", Some(Role::Viewer)),
        ("GET", "/api/channels/1001/realtime", "", Some(Role::Viewer)),
        ("GET", "/api/alarms/active", "", Some(Role::Viewer)),
        ("GET", "/api/alarms/events", "", Some(Role::Viewer)),
        ("GET", "/api/commands/CMD_1", "", Some(Role::Viewer)),
        ("GET", "/api/models", "", Some(Role::Viewer)),
        ("GET", "/api/rules", "", Some(Role::Viewer)),
        ("GET", "/api/rules/firings", "", Some(Role::Viewer)),
        ("GET", "/api/forwarding", "", Some(Role::Viewer)),
        ("GET", "/api/auth/me", "", Some(Role::Viewer)),
        ("GET", "/api/audit", "", Some(Role::Admin)),
        ("POST", "/api/control", control, Some(Role::Operator)),
        ("PUT", "/api/models/m_x2", model, Some(Role::Admin)),
        ("DELETE", "/api/models/m_x2", "", Some(Role::Admin)),
        ("GET", "/api/alarms/rules", "", Some(Role::Viewer)),
        (
            "PUT",
            "/api/alarms/rules/r_x",
            r#"{"channel_id":1001,"data_type":"T","point_id":1,"operator":">","threshold":1e9}"#,
            Some(Role::Admin),
        ),
        ("DELETE", "/api/alarms/rules/r_x", "", Some(Role::Admin)),
        ("POST", "/api/alarms/ALM_1/ack", "", Some(Role::Operator)),
        ("GET", "/api/config/channels", "", Some(Role::Viewer)),
        ("GET", "/metrics", "", Some(Role::Viewer)),
        (
            "GET",
            "/api/config/channels/2001/points.csv",
            "",
            Some(Role::Viewer),
        ),
        (
            "PUT",
            "/api/config/channels/7777",
            r#"{"name":"x"}"#,
            Some(Role::Admin),
        ),
        (
            "PUT",
            "/api/config/channels/7777/points",
            "[]",
            Some(Role::Admin),
        ),
        ("DELETE", "/api/config/channels/7777", "", Some(Role::Admin)),
        ("POST", "/api/auth/login", "{}", None),
    ];
    let tokens: Vec<(Option<Role>, Option<String>)> = vec![
        (None, None), // anonymous = viewer here, checked below as viewer
        (Some(Role::Viewer), Some(token(addr, "vic").0)),
        (Some(Role::Operator), Some(token(addr, "olga").0)),
        (Some(Role::Admin), Some(token(addr, "ada").0)),
    ];
    for (role, tok) in &tokens {
        let has = role.unwrap_or(Role::Viewer);
        for (method, path, body, needed) in &routes {
            let r = http(addr, method, path, tok.as_deref(), None, body);
            let refused = matches!(r.status, 401 | 403);
            let must_refuse = needed.is_some_and(|n| has < n);
            assert_eq!(
                refused,
                must_refuse,
                "{method} {path} as {role:?}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            if must_refuse {
                let code = if tok.is_none() {
                    "UNAUTHORIZED"
                } else {
                    "FORBIDDEN"
                };
                r.error(if tok.is_none() { 401 } else { 403 }, code);
            }
        }
    }
    // Refused control queued nothing; the operator's queued one names the token's user.
    let queued: i64 = redis::cmd("LLEN")
        .arg("comsrv:2001:A:TODO")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        queued, 2,
        "only the operator's and the admin's commands were queued"
    );

    // The WebSocket control message: anonymous viewer → UNAUTHORIZED, viewer → FORBIDDEN,
    // operator → queued under the token's user (never the message's `operator`).
    let (mut anon, _) = Client::connect(addr, "/ws");
    anon.send(SEED_CONTROL);
    assert_eq!(anon.recv_type("error")["data"]["code"], "UNAUTHORIZED");
    let (mut v, _) = Client::connect(
        addr,
        &format!("/ws?token={}", tokens[1].1.as_ref().unwrap()),
    );
    v.send(SEED_CONTROL);
    assert_eq!(v.recv_type("error")["data"]["code"], "FORBIDDEN");
    let (mut o, _) = Client::connect(
        addr,
        &format!("/ws?token={}", tokens[2].1.as_ref().unwrap()),
    );
    o.send(SEED_CONTROL);
    let ack = o.recv_type("control_ack");
    assert_eq!(ack["data"]["status"], "queued", "{ack}");
    let id = ack["data"]["command_id"].as_str().unwrap();
    let operator: String = redis::cmd("HGET")
        .arg(format!("cmd:{id}"))
        .arg("operator")
        .query(&mut con)
        .unwrap();
    assert_eq!(operator, "olga");
    let queued: i64 = redis::cmd("LLEN")
        .arg("comsrv:2001:A:TODO")
        .query(&mut con)
        .unwrap();
    assert_eq!(queued, 3);

    // The audit log (admins only): who, what, when, from where — for REST and WebSocket.
    let audit = http(
        addr,
        "GET",
        "/api/audit?limit=10",
        tokens[3].1.as_deref(),
        None,
        "",
    )
    .json();
    let entries = audit["data"]["entries"].as_array().unwrap().clone();
    let queued: Vec<&Json> = entries.iter().filter(|e| e["event"] == "queued").collect();
    assert_eq!(queued.len(), 3, "{entries:?}");
    let who: Vec<&str> = queued
        .iter()
        .map(|e| e["operator"].as_str().unwrap())
        .collect();
    assert_eq!(
        who,
        ["olga", "ada", "olga"],
        "the token's user, never the message's"
    );
    for e in &queued {
        assert_eq!(e["source"], "127.0.0.1", "{e}");
        assert_eq!(e["channel_id"], 2001);
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    assert_eq!(queued[2]["command_id"], id);
    assert_eq!(queued[2]["reason"], "Production adjustment");
    assert_eq!(
        queued[2]["client_id"]
            .as_str()
            .map(|c| c.starts_with("client_")),
        Some(true)
    );
}

#[test]
fn forged_tokens_are_refused() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, users);
    let addr = gw.local_addr();
    let (access, _) = token(addr, "ada");
    let parts: Vec<&str> = access.split('.').collect();
    // alg none with ada's own claims; a token of another key; a tampered payload.
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    let other = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub":"ada","role":"admin","fam":"f","iat":1,"exp":4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"not the gateway's secret, but 32+ bytes"),
    )
    .unwrap();
    let mut payload = parts[1].as_bytes().to_vec();
    payload[5] = if payload[5] == b'A' { b'B' } else { b'A' };
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        String::from_utf8(payload).unwrap(),
        parts[2]
    );
    for bad in [none.as_str(), other.as_str(), tampered.as_str(), "garbage"] {
        http(addr, "GET", "/api/channels", Some(bad), None, "").error(401, "UNAUTHORIZED");
        let (status, body) = upgrade(addr, &format!("/ws?token={bad}"), "");
        assert_eq!(status, 401, "{body:?}");
    }
    assert_eq!(
        http(addr, "GET", "/api/channels", Some(&access), None, "").status,
        200
    );
}

#[test]
fn anonymous_access_off() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        users(cfg);
        cfg.auth.anonymous_role = AnonymousRole::None;
    });
    let addr = gw.local_addr();
    for path in ["/health", "/health/ready"] {
        assert_eq!(get(addr, path).status, 200, "{path}");
    }
    for path in [
        "/api/channels",
        "/api/channels/1001/realtime",
        "/health/detailed",
        "/api/alarms/active",
        "/api/auth/me",
    ] {
        get(addr, path).error(401, "UNAUTHORIZED");
    }
    let (status, body) = upgrade(addr, "/ws", "");
    assert_eq!(status, 401);
    assert_eq!(body.unwrap()["error"]["code"], "UNAUTHORIZED");
    let (vic, _) = token(addr, "vic");
    assert_eq!(
        http(addr, "GET", "/api/channels", Some(&vic), None, "").status,
        200
    );
    let (mut c, _) = Client::connect(addr, &format!("/ws?token={vic}"));
    c.send(r#"{"type":"subscribe","id":"s","data":{"channels":[1001]}}"#);
    assert_eq!(
        c.recv_type("subscribe_ack")["data"]["subscribed"],
        json!([1001])
    );
    // The header works for upgrades too (non-browser clients).
    let (status, _) = upgrade(addr, "/ws", &format!("Authorization: Bearer {vic}\r\n"));
    assert_eq!(status, 101);
}

#[test]
fn an_open_websocket_renews_its_token_and_is_downgraded_or_closed_when_it_expires() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        users(cfg);
        cfg.auth.access_ttl_secs = 2;
    });
    let addr = gw.local_addr();
    let (t1, d) = token(addr, "olga");
    let (mut c, _) = Client::connect(addr, &format!("/ws?token={t1}"));
    // Renew with a token from the refresh: auth_ack with the new expiry.
    let refresh = json!({"refresh_token": d["refresh_token"]}).to_string();
    let d2 = http(addr, "POST", "/api/auth/refresh", None, None, &refresh).json()["data"].clone();
    c.send(&json!({"type":"auth","id":"a1","data":{"token": d2["access_token"]}}).to_string());
    let ack = c.recv_type("auth_ack");
    assert_eq!(ack["id"], "a1_ack");
    assert_eq!(ack["data"]["username"], "olga");
    // Without another renewal it expires: the connection goes on as an anonymous viewer.
    let started = Instant::now();
    let m = c.recv_type("auth_expired");
    assert_eq!(m["data"]["role"], "viewer");
    assert!(started.elapsed() < Duration::from_secs(4));
    c.send(SEED_CONTROL);
    assert_eq!(c.recv_type("error")["data"]["code"], "UNAUTHORIZED");
    c.send(r#"{"type":"subscribe","id":"s","data":{"channels":[1001]}}"#);
    c.recv_type("subscribe_ack");
    drop(gw);

    // With anonymous access off, the expired connection is closed (4401).
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        users(cfg);
        cfg.auth.access_ttl_secs = 1;
        cfg.auth.anonymous_role = AnonymousRole::None;
    });
    let addr = gw.local_addr();
    let (t, _) = token(addr, "vic");
    let (mut c, _) = Client::connect(addr, &format!("/ws?token={t}"));
    assert_eq!(c.expect_close(), (4401, "token expired".into()));
}

#[test]
fn failed_logins_are_limited_and_hashing_never_stalls_a_shard() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        users(cfg);
        cfg.auth.max_login_failures = 3;
    });
    let addr = gw.local_addr();
    for _ in 0..3 {
        login(addr, "olga", "wrong").error(401, "UNAUTHORIZED");
    }
    let e = login(addr, "olga", "olga-pw").error(429, "RATE_LIMITED");
    assert!(e["details"].as_str().unwrap().contains("retry in"), "{e}");
    // Another user from this address is limited too (the address is).
    login(addr, "vic", "vic-pw").error(429, "RATE_LIMITED");
    drop(gw);

    // 40 logins in flight (each an argon2id check of tens of ms on the one verifier thread)
    // while a probe asks /health: the shards answer it at once.
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        users(cfg);
        cfg.auth.max_login_failures = 1000;
    });
    let addr = gw.local_addr();
    let logins: Vec<_> = (0..40)
        .map(|i| {
            std::thread::spawn(move || {
                let r = login(addr, "vic", if i % 2 == 0 { "vic-pw" } else { "nope" });
                r.status
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(get(addr, "/health").status, 200);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let statuses: Vec<u16> = logins.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| [200, 401, 503].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        20,
        "{statuses:?}"
    );
    assert!(
        worst < Duration::from_millis(100),
        "a /health waited {worst:?} behind password checks"
    );
}

#[test]
fn origins_govern_cors_upgrades_and_state_changes() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        cfg.http.allowed_origins = vec!["https://scada.example.com".into()];
        cfg.auth.anonymous_role = AnonymousRole::Operator;
    });
    let addr = gw.local_addr();
    let good = "https://scada.example.com";
    let evil = "http://evil.example";
    let same = format!("http://{addr}");
    let r = http(addr, "GET", "/api/channels", None, Some(good), "");
    assert_eq!(
        r.header("Access-Control-Allow-Origin").as_deref(),
        Some(good)
    );
    assert_eq!(r.header("Vary").as_deref(), Some("Origin"));
    let r = http(addr, "GET", "/api/channels", None, Some(evil), "");
    assert_eq!(r.status, 200, "reading is left to the browser's CORS");
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    assert_eq!(
        http(addr, "GET", "/api/channels", None, None, "").header("Access-Control-Allow-Origin"),
        None
    );
    let control = r#"{"channel_id":2001,"point_id":20,"command_type":"set_value","value":5}"#;
    http(addr, "POST", "/api/control", None, Some(evil), control).error(403, "FORBIDDEN");
    assert_eq!(
        http(addr, "POST", "/api/control", None, Some(good), control).status,
        202
    );
    assert_eq!(
        http(addr, "POST", "/api/control", None, Some(&same), control).status,
        202
    );
    assert_eq!(
        http(addr, "POST", "/api/control", None, None, control).status,
        202,
        "no Origin: a script"
    );
    let (status, body) = upgrade(addr, "/ws", &format!("Origin: {evil}\r\n"));
    assert_eq!(status, 403);
    assert_eq!(body.unwrap()["error"]["code"], "FORBIDDEN");
    assert_eq!(upgrade(addr, "/ws", &format!("Origin: {good}\r\n")).0, 101);
    assert_eq!(upgrade(addr, "/ws", &format!("Origin: {same}\r\n")).0, 101);
    assert_eq!(
        upgrade(addr, "/ws", "").0,
        101,
        "device tools send no Origin"
    );
    let pre = http(addr, "OPTIONS", "/api/control", None, Some(good), "");
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("Access-Control-Allow-Origin").as_deref(),
        Some(good)
    );
    drop(gw);

    // Host allow-list.
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        cfg.http.allowed_hosts = vec!["127.0.0.1".into()];
    });
    let addr = gw.local_addr();
    assert_eq!(
        get(addr, "/api/channels").status,
        400,
        "Host: test is not on the list"
    );
    assert_eq!(
        http(addr, "GET", "/api/channels", None, None, "").status,
        200
    );
}

#[test]
fn client_id_takeover_only_for_the_same_user() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, users);
    let addr = gw.local_addr();
    let (olga, _) = token(addr, "olga");
    let (olga2, _) = token(addr, "olga");
    let (vic, _) = token(addr, "vic");
    let (mut first, _) = Client::connect(addr, &format!("/ws?client_id=dash_1&token={olga}"));
    let (status, body) = upgrade(addr, &format!("/ws?client_id=dash_1&token={vic}"), "");
    assert_eq!(status, 403);
    assert!(body.unwrap()["error"]["details"]
        .as_str()
        .unwrap()
        .contains("another user"));
    assert_eq!(
        upgrade(addr, "/ws?client_id=dash_1", "").0,
        403,
        "anonymous cannot evict a user"
    );
    // The same user (another login of hers) takes it over: the old one gets 4001.
    let (_second, hello) = Client::connect(addr, &format!("/ws?client_id=dash_1&token={olga2}"));
    assert_eq!(hello["data"]["client_id"], "dash_1");
    assert_eq!(first.expect_close().0, 4001);
    // Anonymous → anonymous stays allowed while anonymous access is on.
    let (mut a, _) = Client::connect(addr, "/ws?client_id=kiosk");
    let (_b, _) = Client::connect(addr, "/ws?client_id=kiosk");
    assert_eq!(a.expect_close().0, 4001);
}

#[test]
fn hash_password_makes_a_hash_the_gateway_accepts() {
    use std::io::Write;
    let mut child = std::process::Command::new(BIN)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(voltage_gateway::auth::password::verify(
        "s3cret pass",
        Some(&hash)
    ));
    assert!(!voltage_gateway::auth::password::verify(
        "s3cret pas",
        Some(&hash)
    ));
}

#[test]
fn one_user_refreshing_in_a_loop_logs_nobody_else_out_and_a_void_logout_says_so() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        users(cfg);
        cfg.auth.max_refresh_tokens = 20;
    });
    let addr = gw.local_addr();
    let (_, olga) = token(addr, "olga");
    let (_, vic) = token(addr, "vic");
    // Many times the store's size of refreshes of one login.
    let mut rt = vic["refresh_token"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let body = json!({ "refresh_token": rt }).to_string();
        let r = http(addr, "POST", "/api/auth/refresh", None, None, &body);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        rt = r.json()["data"]["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
    }
    // olga's login lives on: her refresh works, and her logout revokes it.
    let body = json!({ "refresh_token": olga["refresh_token"] }).to_string();
    let r = http(addr, "POST", "/api/auth/refresh", None, None, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let fresh = r.json()["data"].clone();
    let body = json!({ "refresh_token": fresh["refresh_token"] }).to_string();
    assert_eq!(
        http(addr, "POST", "/api/auth/logout", None, None, &body).status,
        200
    );
    let access = fresh["access_token"].as_str().unwrap();
    http(addr, "GET", "/api/auth/me", Some(access), None, "").error(401, "UNAUTHORIZED");
    // The same logout again revoked nothing: 401, not 200.
    http(addr, "POST", "/api/auth/logout", None, None, &body).error(401, "UNAUTHORIZED");
    let body = json!({ "refresh_token": "rt_0123.abcd" }).to_string();
    http(addr, "POST", "/api/auth/logout", None, None, &body).error(401, "UNAUTHORIZED");
}

#[test]
fn a_logout_ends_the_login_on_its_open_websockets_at_once() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, users);
    let addr = gw.local_addr();
    let (t, d) = token(addr, "olga");
    let (mut c, _) = Client::connect(addr, &format!("/ws?token={t}"));
    let (mut other, _) = Client::connect(addr, &format!("/ws?token={}", token(addr, "olga").0));
    let started = Instant::now();
    let body = json!({"refresh_token": d["refresh_token"]}).to_string();
    assert_eq!(
        http(addr, "POST", "/api/auth/logout", None, None, &body).status,
        200
    );
    let m = c.recv_type("auth_expired");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(m["data"]["role"], "viewer");
    assert!(
        m["data"]["message"]
            .as_str()
            .unwrap()
            .contains("login was ended"),
        "{m}"
    );
    // It sends no more commands as olga; her other login is untouched.
    c.send(SEED_CONTROL);
    assert_eq!(c.recv_type("error")["data"]["code"], "UNAUTHORIZED");
    let queued: i64 = redis::cmd("LLEN")
        .arg("comsrv:2001:A:TODO")
        .query(&mut con)
        .unwrap();
    assert_eq!(queued, 0);
    other.send(SEED_CONTROL);
    assert_eq!(other.recv_type("control_ack")["data"]["status"], "queued");
    drop(gw);

    // With anonymous access off, the connection is closed (4401 "login revoked").
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        users(cfg);
        cfg.auth.anonymous_role = AnonymousRole::None;
    });
    let addr = gw.local_addr();
    let (t, _) = token(addr, "vic");
    let (mut c, _) = Client::connect(addr, &format!("/ws?token={t}"));
    assert_eq!(
        http(addr, "POST", "/api/auth/logout", Some(&t), None, "").status,
        200
    );
    assert_eq!(c.expect_close(), (4401, "login revoked".into()));
}

/// A login of `user` as if from `from` (the test is a trusted proxy).
fn login_from(addr: SocketAddr, user: &str, password: &str, from: &str) -> HttpResponse {
    let body = json!({"username": user, "password": password}).to_string();
    raw(
        addr,
        format!(
            "POST /api/auth/login HTTP/1.1\r\nHost: {addr}\r\nX-Forwarded-For: {from}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

#[test]
fn a_remote_guesser_cannot_lock_the_real_user_out() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        users(cfg);
        cfg.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    });
    let addr = gw.local_addr();
    // Ada works from her console.
    assert_eq!(login_from(addr, "ada", "ada-pw", "192.0.2.10").status, 200);
    // Someone guesses her password from many addresses.
    for i in 1..=5 {
        login_from(addr, "ada", "guess", &format!("198.51.100.{i}")).error(401, "UNAUTHORIZED");
    }
    // The guesser, from yet another address, is refused without a password check...
    login_from(addr, "ada", "ada-pw", "198.51.100.99").error(429, "RATE_LIMITED");
    // ...while Ada, from where she logged in before, gets in.
    assert_eq!(login_from(addr, "ada", "ada-pw", "192.0.2.10").status, 200);
}

#[test]
fn who_sent_a_command_is_for_operators_not_viewers() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, users);
    let addr = gw.local_addr();
    let (olga, _) = token(addr, "olga");
    let (vic, _) = token(addr, "vic");
    let body = r#"{"channel_id":2001,"point_id":20,"command_type":"set_value","value":4,"reason":"night shift"}"#;
    let r = http(addr, "POST", "/api/control", Some(&olga), None, body);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["data"]["command_id"].as_str().unwrap().to_string();
    let path = format!("/api/commands/{id}");
    let as_olga = http(addr, "GET", &path, Some(&olga), None, "").json()["data"].clone();
    assert_eq!(
        (as_olga["operator"].as_str(), as_olga["reason"].as_str()),
        (Some("olga"), Some("night shift"))
    );
    for token in [Some(vic.as_str()), None] {
        let d = http(addr, "GET", &path, token, None, "").json()["data"].clone();
        assert_eq!(d["status"], "queued", "{d}");
        for k in ["operator", "reason", "client_id", "request_id", "origin"] {
            assert!(d[k].is_null(), "{k} shown to a viewer: {d}");
        }
    }
}

#[test]
fn a_parked_ack_goes_only_to_its_senders_user() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, users);
    let addr = gw.local_addr();
    let (t, _) = token(addr, "olga");
    let (mut c, _) = Client::connect(addr, &format!("/ws?client_id=ui_x&token={t}"));
    c.send(SEED_CONTROL);
    let id = c.recv_type("control_ack")["data"]["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(c);
    wait_until("olga's connection gone", Duration::from_secs(3), || {
        open_websockets(addr) == 0
    });
    let _: String = redis::cmd("FCALL")
        .arg("control_report")
        .arg(1)
        .arg(format!("cmd:{id}"))
        .arg(r#"{"success":true,"actual_value":50}"#)
        .query(&mut con)
        .unwrap();
    // An anonymous client claiming the free id does not get olga's ack...
    let (mut anon, _) = Client::connect(addr, "/ws?client_id=ui_x");
    let acks: Vec<_> = anon
        .collect_for(Duration::from_millis(800))
        .into_iter()
        .filter(|(_, m)| m["type"] == "control_ack")
        .collect();
    assert!(acks.is_empty(), "{acks:?}");
    drop(anon);
    wait_until("anonymous gone", Duration::from_secs(3), || {
        open_websockets(addr) == 0
    });
    // ...olga does, when she is back.
    let (mut c, _) = Client::connect(addr, &format!("/ws?client_id=ui_x&token={t}"));
    let done = c.recv_type("control_ack");
    assert_eq!(done["data"]["command_id"], id.as_str());
    assert_eq!(done["data"]["status"], "executed");
}

#[test]
fn a_logout_holds_on_every_gateway_of_the_site_and_across_a_restart() {
    let (redis, a, _con) = start_with(DriverKind::Auto, users);
    let start_b = || {
        let mut cfg = config(&redis.url(), DriverKind::Auto);
        users(&mut cfg);
        cfg.control.instance_id = "gw_b".into();
        let gw = voltage_gateway::Server::start(cfg).expect("gateway b starts");
        wait_until("b loaded", Duration::from_secs(5), || {
            gw.published().snapshot.load().loaded
        });
        gw
    };
    let b = start_b();
    let (t, d) = token(a.local_addr(), "olga");
    // The same secret: the login works on b, and b's WebSocket acts as olga.
    assert_eq!(
        http(b.local_addr(), "GET", "/api/auth/me", Some(&t), None, "").status,
        200
    );
    let (mut on_b, _) = Client::connect(b.local_addr(), &format!("/ws?token={t}"));
    // Logged out on a: b refuses the token and ends the login on its WebSocket.
    let body = json!({"refresh_token": d["refresh_token"]}).to_string();
    assert_eq!(
        http(
            a.local_addr(),
            "POST",
            "/api/auth/logout",
            None,
            None,
            &body
        )
        .status,
        200
    );
    let started = Instant::now();
    let m = on_b.recv_type("auth_expired");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        m["data"]["message"]
            .as_str()
            .unwrap()
            .contains("login was ended"),
        "{m}"
    );
    http(b.local_addr(), "GET", "/api/auth/me", Some(&t), None, "").error(401, "UNAUTHORIZED");
    // A gateway started afterwards (a restart) refuses it from its first request on.
    drop(on_b);
    drop(b);
    let c = start_b();
    http(c.local_addr(), "GET", "/api/auth/me", Some(&t), None, "").error(401, "UNAUTHORIZED");
}

#[test]
fn sessions_belong_to_the_site_not_to_one_gateway() {
    let (redis, a, _con) = start_with(DriverKind::Auto, users);
    let start = |id: &str| {
        let mut cfg = config(&redis.url(), DriverKind::Auto);
        users(&mut cfg);
        cfg.control.instance_id = id.into();
        let gw = voltage_gateway::Server::start(cfg).expect("gateway starts");
        wait_until("loaded", Duration::from_secs(5), || {
            gw.published().snapshot.load().loaded
        });
        gw
    };
    let b = start("gw_b");
    let refresh = |gw: &voltage_gateway::Server, rt: &Json| {
        let body = json!({ "refresh_token": rt }).to_string();
        http(
            gw.local_addr(),
            "POST",
            "/api/auth/refresh",
            None,
            None,
            &body,
        )
    };
    // Issued by a, refreshed by b; the used token is a reuse on a, which ends the login
    // everywhere (the pair b issued included).
    let (_, d) = token(a.local_addr(), "olga");
    let r = refresh(&b, &d["refresh_token"]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let fresh = r.json()["data"].clone();
    let t2 = fresh["access_token"].as_str().unwrap();
    assert_eq!(
        http(a.local_addr(), "GET", "/api/auth/me", Some(t2), None, "").status,
        200
    );
    let e = refresh(&a, &d["refresh_token"]).error(401, "UNAUTHORIZED");
    assert!(
        e["details"].as_str().unwrap().contains("already used"),
        "{e}"
    );
    refresh(&b, &fresh["refresh_token"]).error(401, "UNAUTHORIZED");
    http(a.local_addr(), "GET", "/api/auth/me", Some(t2), None, "").error(401, "UNAUTHORIZED");
    wait_until("b refuses it too", Duration::from_secs(1), || {
        http(b.local_addr(), "GET", "/api/auth/me", Some(t2), None, "").status == 401
    });
    // A restart keeps logins: a's login refreshes on the gateway started after it.
    let (_, d) = token(b.local_addr(), "vic");
    drop(b);
    let b2 = start("gw_b");
    assert_eq!(refresh(&b2, &d["refresh_token"]).status, 200);
    // Failed logins count on every gateway: five on a, the sixth refused on b2.
    for _ in 0..5 {
        assert_eq!(login(a.local_addr(), "ada", "wrong").status, 401);
    }
    let r = login(b2.local_addr(), "ada", "ada-pw");
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn a_rebound_dns_name_is_not_the_gateways_own_origin() {
    let (_redis, gw, _con) = start(DriverKind::Auto);
    let addr = gw.local_addr();
    let port = addr.port();
    let upgrade_as = |host: &str| {
        let mut s = connect(addr);
        std::io::Write::write_all(&mut s, format!("GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://{host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes()).unwrap();
        read_response(&mut s, &mut Vec::new(), true).status
    };
    // A page of an attacker's name that now resolves to the gateway: Origin and Host agree,
    // and it is refused (no http.allowed_hosts lists that name).
    assert_eq!(upgrade_as("rebind.example"), 403);
    // The gateway's own page under its address or localhost works as before.
    assert_eq!(upgrade_as("127.0.0.1"), 101);
    assert_eq!(upgrade_as("localhost"), 101);
}
