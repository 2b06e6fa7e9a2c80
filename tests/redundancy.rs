//! Redundancy end to end on the loopback: a Sentinel-watched Redis (master, replica, three
//! sentinels) whose master is killed while the gateway serves clients.

mod common;
#[path = "common/sentinel.rs"]
mod sentinel;
#[path = "common/ws.rs"]
mod wsc;

use common::*;
use sentinel::SentinelSite;
use serde_json::Value as Json;
use std::time::{Duration, Instant};
use voltage_gateway::config::DriverKind;
use wsc::Client;

/// The next message `pred` accepts, waiting at most until `deadline`.
fn recv_until(c: &mut Client, deadline: Instant, pred: impl Fn(&Json) -> bool) -> Json {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "nothing wanted arrived in time");
        c.ws.get_mut().set_read_timeout(Some(left)).unwrap();
        let m = c.recv();
        if pred(&m) {
            return m;
        }
    }
}

fn realtime_t1(addr: std::net::SocketAddr) -> Json {
    get_ok(addr, "/api/channels/1001/realtime?data_type=T")["data"][0]["values"]["1"].clone()
}

#[test]
fn a_sentinel_failover_is_followed_and_nothing_stale_is_shown_as_live() {
    let mut site = SentinelSite::start();
    let mut cfg = config(&site.url(), DriverKind::Auto);
    cfg.reconnect_max_ms = 1000;
    let gw = voltage_gateway::Server::start(cfg).expect("gateway starts");
    let addr = gw.local_addr();
    wait_until("redis healthy", Duration::from_secs(10), || {
        gw.published().redis.load().healthy
    });
    let first = site.master_port().expect("the sentinels name a master");
    let mut con = redis_con(site.server_on(first));
    write(&mut con, "comsrv:1001:T", r#"{"1":1}"#, None);
    write(&mut con, "comsrv:1002:T", r#"{"1":1}"#, None);
    let replicated: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert_eq!(replicated, 1, "the writes reached the replica");
    wait_until("values served", Duration::from_secs(5), || {
        realtime_t1(addr) == 1 && channel_ids(addr) == [1001, 1002]
    });
    // The replica never got 1002 (as if promoted before the write reached it): the gateway
    // must not keep showing it once it follows the failover.
    let replica = site
        .servers
        .iter()
        .map(|s| s.port())
        .find(|p| *p != first)
        .unwrap();
    let mut behind = redis_con(site.server_on(replica));
    redis::pipe()
        .cmd("DEL")
        .arg("comsrv:1002:T")
        .cmd("ZREM")
        .arg("netsrv:dirty")
        .arg("comsrv:1002:T")
        .query::<()>(&mut behind)
        .unwrap();

    let (mut c, _) = Client::connect(addr, "/ws");
    c.send(r#"{"type":"subscribe","data":{"channels":[1001],"data_types":["T"],"interval":100}}"#);
    c.recv_type("subscribe_ack");

    site.server_on(first).kill();
    let killed = Instant::now();
    // No master answers: told, and REST never calls the last values live.
    let s = recv_until(&mut c, killed + Duration::from_secs(5), |m| {
        m["type"] == "status"
    });
    assert_eq!(s["data"]["source"], "degraded", "{s}");
    assert_eq!(
        get_ok(addr, "/api/channels/1001/status")["data"]["status"],
        "unavailable"
    );
    assert_eq!(get(addr, "/health/ready").status, 503);

    let mut second = None;
    wait_until(
        "the sentinels promote the replica",
        Duration::from_secs(30),
        || {
            second = site.master_port().filter(|p| *p != first);
            second.is_some()
        },
    );
    let switched = Instant::now();
    let second = second.unwrap();
    assert_eq!(second, replica);
    // The promoted replica takes writes; they reach the client and REST.
    let mut con = redis_con(site.server_on(second));
    write(&mut con, "comsrv:1001:T", r#"{"1":2}"#, None);
    let m = recv_until(&mut c, switched + Duration::from_secs(10), |m| {
        m["type"] == "data_update" && m["data"]["values"]["1"] == 2
    });
    let served = switched.elapsed();
    assert_eq!(m["data"]["channel_id"], 1001);
    wait_until("healthy after the switch", Duration::from_secs(5), || {
        get_ok(addr, "/api/channels/1001/status")["data"]["status"] == "active"
    });
    assert_eq!(realtime_t1(addr), 2);
    assert_eq!(
        channel_ids(addr),
        [1001],
        "what the new master lacks is gone"
    );
    assert_eq!(get(addr, "/health/ready").status, 200);
    let detailed = get_ok(addr, "/health/detailed");
    assert_eq!(detailed["data"]["status"], "healthy", "{detailed}");
    eprintln!(
        "failover: master killed -> sentinels switched {:.1} s; switch -> new write at the client {:.2} s",
        (switched - killed).as_secs_f64(),
        served.as_secs_f64()
    );
}

#[test]
fn a_master_name_no_sentinel_knows_is_reported() {
    let site = SentinelSite::start();
    let url = site.url().replace("/site", "/nosuchsite");
    let cfg = config(&url, DriverKind::Auto);
    let gw = voltage_gateway::Server::start(cfg).expect("gateway starts");
    let addr = gw.local_addr();
    wait_until("the reason is shown", Duration::from_secs(10), || {
        let d = get_ok(addr, "/health/detailed");
        d["data"]["dependencies"]["redis"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no sentinel names the master 'nosuchsite'"))
    });
    assert_eq!(get(addr, "/health/ready").status, 503);
}
