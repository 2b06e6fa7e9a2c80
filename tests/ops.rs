//! Operations end to end: `/metrics` in the Prometheus text format (parsed by a Prometheus
//! text-format parser), counting what happened — WebSocket frames and bytes, HTTP requests by
//! route with latency histograms, control commands by status, alarms by level, refused
//! tokens — and the role it needs.

mod common;
#[path = "common/ws.rs"]
mod wsc;

use common::*;
use serde_json::json;
use std::time::Duration;
use voltage_gateway::config::{AnonymousRole, DriverKind};
use wsc::*;

fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(r.body).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format")
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_count_what_happened_and_parse() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, trust);
    let addr = gw.local_addr();
    redis::cmd("FCALL")
        .arg("alarmsrv_rule_save")
        .arg(1)
        .arg("alarm:rule:hot")
        .arg(json!({"channel_id":1001,"data_type":"T","point_id":1,"operator":">","threshold":90,"level":3}).to_string())
        .query::<i64>(&mut con)
        .unwrap();
    let (mut c, _) = Client::connect(addr, "/ws");
    c.send(r#"{"type":"subscribe","id":"s","data":{"channels":[1001],"interval":100}}"#);
    c.recv_type("subscribe_ack");
    write(&mut con, "comsrv:1001:T", r#"{"1":95}"#, None);
    c.recv_type("alarm");
    c.send(r#"{"type":"control","id":"c1","data":{"channel_id":2001,"point_id":20,"command_type":"set_value","value":5}}"#);
    c.recv_type("control_ack");
    for _ in 0..3 {
        get_ok(addr, "/api/channels/1001/realtime");
    }
    get(addr, "/api/channels/999/status");
    get(addr, "/nope");
    http_bearer(addr, "/api/channels", "forged.token.here");

    let s = scrape(addr);
    assert_eq!(value(&s, "voltage_up", &[]), 1.0);
    // The instance is named (here the default, {hostname}:{port}).
    let port = addr.port().to_string();
    let named: Vec<_> = s
        .samples
        .iter()
        .filter(|x| x.metric == "voltage_instance_info")
        .collect();
    assert_eq!(named.len(), 1);
    assert!(named[0]
        .labels
        .get("instance")
        .unwrap()
        .ends_with(&format!(":{port}")));
    assert_eq!(value(&s, "voltage_redis_up", &[]), 1.0);
    assert_eq!(value(&s, "voltage_websocket_connections", &[]), 1.0);
    assert!(value(&s, "voltage_ws_frames_sent_total", &[]) >= 5.0);
    assert!(value(&s, "voltage_ws_bytes_sent_total", &[]) > 500.0);
    assert_eq!(
        value(
            &s,
            "voltage_http_requests_total",
            &[("route", "/api/channels/:id/realtime"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            "voltage_http_requests_total",
            &[("route", "/api/channels/:id/status"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        value(&s, "voltage_http_requests_total", &[("route", "unknown")]),
        1.0
    );
    let hist = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "voltage_http_request_duration_seconds"
                && x.labels.get("route") == Some("/api/channels/:id/realtime")
        })
        .expect("a latency histogram per route");
    let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
        panic!("{:?}", hist.value)
    };
    assert_eq!(
        buckets.last().unwrap().count,
        3.0,
        "+Inf counts every request"
    );
    assert_eq!(
        value(
            &s,
            "voltage_control_commands_total",
            &[("status", "queued")]
        ),
        1.0
    );
    assert_eq!(value(&s, "voltage_alarms_active", &[("level", "3")]), 1.0);
    assert_eq!(
        value(&s, "voltage_alarm_events_total", &[("kind", "trigger")]),
        1.0
    );
    assert_eq!(
        value(&s, "voltage_auth_failures_total", &[("kind", "token")]),
        1.0
    );
    assert!(value(&s, "voltage_feed_collects_total", &[]) > 0.0);
    let lag = value(&s, "voltage_feed_lag_seconds", &[]);
    assert!((0.0..1.0).contains(&lag), "lag {lag}");
}

fn http_bearer(addr: std::net::SocketAddr, path: &str, token: &str) -> HttpResponse {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn metrics_need_the_configured_role() {
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        cfg.auth.anonymous_role = AnonymousRole::None;
    });
    get(gw.local_addr(), "/metrics").error(401, "UNAUTHORIZED");
    drop(gw);
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        cfg.auth.anonymous_role = AnonymousRole::None;
        cfg.http.metrics_role = AnonymousRole::None;
    });
    scrape(gw.local_addr());
    std::thread::sleep(Duration::from_millis(1));
}
