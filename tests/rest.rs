//! REST API end to end: real redis-server, real gateway, real HTTP.

mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

both_drivers!(seed_write_is_visible_within_a_tick, driver, {
    let redis = redis();
    let gw = gateway(&redis, driver);
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    // The issue's acceptance example, verbatim.
    let written = write(&mut con, "comsrv:1001:T", r#"{"1":25.6,"2":101.3}"#, None);
    assert_eq!(written, 2);
    let start = Instant::now();
    wait_until("1001 realtime", Duration::from_secs(2), || {
        get(addr, "/api/channels/1001/realtime?data_type=T").status == 200
    });
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let j = get_ok(addr, "/api/channels/1001/realtime?data_type=T");
    assert_eq!(j["message"], "Retrieved 1 data records");
    let rec = &j["data"][0];
    assert_eq!(rec["channel_id"], 1001);
    assert_eq!(rec["data_type"], "T");
    assert_eq!(rec["values"], json!({"1": 25.6, "2": 101.3}));
    assert!(rec["timestamp"].as_i64().unwrap() > 1_700_000_000);
});

both_drivers!(channel_list_and_status, driver, {
    let redis = redis();
    let gw = gateway(&redis, driver);
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    let now = voltage_gateway::time::now_secs();
    write(&mut con, "comsrv:1002:T", r#"{"1":1,"2":2}"#, Some(now - 5));
    write(
        &mut con,
        "comsrv:1002:S",
        r#"{"10":1,"11":0,"12":1}"#,
        Some(now),
    );
    write(&mut con, "comsrv:1001:T", r#"{"1":25.6}"#, Some(now));
    // Written long ago: stale (default window 60 s).
    write(&mut con, "comsrv:7:T", r#"{"1":3}"#, Some(now - 3600));
    wait_until("4 channels", Duration::from_secs(2), || {
        channel_ids(addr).len() == 3
    });
    let j = get_ok(addr, "/api/channels");
    assert_eq!(j["message"], "Found 3 channels");
    let ids: Vec<i64> = j["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![7, 1001, 1002], "sorted by id");
    let c1002 = &j["data"][2];
    assert_eq!(c1002["status"], "active");
    assert_eq!(c1002["active_points"], 5);
    assert_eq!(c1002["last_update"], now);
    assert_eq!(j["data"][0]["status"], "stale");

    let s = get_ok(addr, "/api/channels/1002/status");
    assert_eq!(s["data"], *c1002);
    assert!(s.get("message").is_none());
    let e = get(addr, "/api/channels/9999/status").error(404, "CHANNEL_NOT_FOUND");
    assert_eq!(e["details"], "Channel 9999 not found");
    for bad in ["abc", "0", "4294967296", "-1", "1.5"] {
        let e = get(addr, &format!("/api/channels/{bad}/status")).error(400, "INVALID_PARAMETER");
        assert!(e["details"].as_str().unwrap().contains("channel_id"), "{e}");
    }
});

#[test]
fn realtime_filters_and_bad_parameters() {
    let redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    write(
        &mut con,
        "comsrv:2001:T",
        r#"{"1":10,"2":20,"3":30,"10":100}"#,
        Some(1_736_755_800),
    );
    write(&mut con, "comsrv:2001:A", r#"{"20":50.0,"21":0.1}"#, None);
    write(
        &mut con,
        "comsrv:2001:S",
        r#"{"10":"open","11":true}"#,
        None,
    );
    wait_until("2001 three types", Duration::from_secs(2), || {
        get(addr, "/api/channels/2001/realtime").status == 200
            && get_ok(addr, "/api/channels/2001/realtime")["data"]
                .as_array()
                .unwrap()
                .len()
                == 3
    });
    let all = get_ok(addr, "/api/channels/2001/realtime");
    let types: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["T", "S", "A"],
        "one record per type, in T S C A order"
    );
    assert_eq!(all["data"][0]["timestamp"], 1_736_755_800);
    assert_eq!(
        all["data"][0]["values"],
        json!({"1":10,"2":20,"3":30,"10":100})
    );
    assert_eq!(all["data"][1]["values"], json!({"10":"open","11":1}));

    let a = get_ok(addr, "/api/channels/2001/realtime?data_type=A&point_id=20");
    assert_eq!(
        a["data"],
        json!([{"channel_id":2001,"data_type":"A","timestamp":a["data"][0]["timestamp"],"values":{"20":50}}])
    );
    let lim = get_ok(addr, "/api/channels/2001/realtime?data_type=T&limit=2");
    assert_eq!(lim["data"][0]["values"], json!({"1":10,"2":20}));
    let none = get_ok(addr, "/api/channels/2001/realtime?data_type=C");
    assert_eq!(none["data"], json!([]));
    assert_eq!(none["message"], "Retrieved 0 data records");
    // A point found in T but not in the types after it: one record, valid JSON (a separator
    // was once written before the types skipped — found by schemathesis).
    let one = get_ok(addr, "/api/channels/2001/realtime?point_id=1");
    assert_eq!(one["data"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["data"][0]["values"], json!({"1":10}));
    assert_eq!(one["message"], "Retrieved 1 data records");
    let missing_point = get_ok(addr, "/api/channels/2001/realtime?point_id=999");
    assert_eq!(missing_point["data"], json!([]));
    // Percent-encoded parameters decode before parsing.
    let enc = get_ok(
        addr,
        "/api/channels/2001/realtime?data_type=%41&point_id=%32%30",
    );
    assert_eq!(enc["data"][0]["values"], json!({"20":50}));

    for (q, param) in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=", "limit"),
        ("data_type=X", "data_type"),
        ("data_type=t", "data_type"),
        ("point_id=-1", "point_id"),
        ("point_id=1&point_id=2", "point_id"),
        ("point_id=%zz", "query"),
    ] {
        let e =
            get(addr, &format!("/api/channels/2001/realtime?{q}")).error(400, "INVALID_PARAMETER");
        assert!(e["details"].as_str().unwrap().contains(param), "{q}: {e}");
    }
    get(addr, "/api/channels/55/realtime").error(404, "CHANNEL_NOT_FOUND");
}

#[test]
fn values_keep_full_precision() {
    let redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let mut con = redis_con(&redis);
    write(
        &mut con,
        "comsrv:5:T",
        r#"{"1":0.30000000000000004,"2":1234567890.12345,"3":-0.5,"4":1e300,"5":42}"#,
        None,
    );
    wait_until("5", Duration::from_secs(2), || {
        get(gw.local_addr(), "/api/channels/5/realtime").status == 200
    });
    let j = get_ok(gw.local_addr(), "/api/channels/5/realtime");
    let v = &j["data"][0]["values"];
    assert_eq!(v["1"].as_f64().unwrap(), 0.1 + 0.2);
    assert_eq!(v["2"].as_f64().unwrap(), 1234567890.12345);
    assert_eq!(v["3"].as_f64().unwrap(), -0.5);
    assert_eq!(v["4"].as_f64().unwrap(), 1e300);
    assert_eq!(v["5"], 42);
}

#[test]
fn history_is_unavailable_without_a_store() {
    let redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let addr = gw.local_addr();
    get(
        addr,
        "/api/channels/1001/history?start_time=1736755200&end_time=1736841600&data_type=T&point_id=1&limit=100",
    )
    .error(503, "HISTORY_UNAVAILABLE");
    let e = get(addr, "/api/channels/1001/history?start_time=10&end_time=5")
        .error(400, "INVALID_PARAMETER");
    assert!(e["details"].as_str().unwrap().contains("start_time"));
    get(addr, "/api/channels/1001/history?end_time=abc").error(400, "INVALID_PARAMETER");
    get(addr, "/api/channels/x/history").error(400, "INVALID_PARAMETER");
}

#[test]
fn health_routes() {
    let redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let addr = gw.local_addr();
    let h = get_ok(addr, "/health");
    assert_eq!(h["data"]["status"], "healthy");
    assert_eq!(h["data"]["service"], "voltage-gateway");
    let d = get_ok(addr, "/health/detailed");
    assert_eq!(d["data"]["status"], "healthy");
    assert_eq!(d["data"]["dependencies"]["redis"]["status"], "healthy");
    assert_eq!(
        d["data"]["dependencies"]["redis"]["message"],
        "Redis connection successful"
    );
    // A live PING through the feed's inbox and back through the shard's.
    let rtt = d["data"]["dependencies"]["redis"]["rtt_ms"]
        .as_f64()
        .expect("rtt_ms is a number while Redis is up");
    assert!(rtt > 0.0 && rtt < 500.0, "rtt_ms {rtt}");
    let again = get_ok(addr, "/health/detailed")["data"]["dependencies"]["redis"]["rtt_ms"].clone();
    assert!(again.is_number(), "{again}");
    // HEAD asks too, and answers with the same headers and no body.
    let h = request(addr, "HEAD", "/health/detailed");
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
}

/// `PING`s Redis has answered so far.
fn pings(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_flood_of_health_checks_costs_redis_a_bounded_number_of_pings() {
    let redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    let before = pings(&mut con);
    let t0 = std::time::Instant::now();
    for _ in 0..300 {
        let d = get_ok(addr, "/health/detailed");
        assert!(
            d["data"]["dependencies"]["redis"]["rtt_ms"].is_number(),
            "{d}"
        );
    }
    let secs = t0.elapsed().as_secs_f64();
    let spent = pings(&mut con) - before;
    // At most one round trip per 100 ms (plus our own INFO's neighbourhood).
    assert!(
        (spent as f64) <= secs * 10.0 + 3.0,
        "{spent} PINGs for 300 checks in {secs:.2} s"
    );
}

#[test]
fn a_paused_redis_makes_the_round_trip_null_without_hanging_health() {
    let redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let addr = gw.local_addr();
    redis.pause();
    // Several checks: some find the feed blocked on the paused Redis, others find it
    // reconnecting; none may hang or report a round trip.
    for _ in 0..4 {
        let t0 = std::time::Instant::now();
        let d = get_ok(addr, "/health/detailed");
        let took = t0.elapsed();
        assert!(
            d["data"]["dependencies"]["redis"]["rtt_ms"].is_null(),
            "{d}"
        );
        assert!(took < Duration::from_secs(1), "health took {took:?}");
    }
    redis.resume();
    wait_until("round trip again", Duration::from_secs(10), || {
        get_ok(addr, "/health/detailed")["data"]["dependencies"]["redis"]["rtt_ms"].is_number()
    });
}

#[test]
fn http_protocol_behaviour() {
    let redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let addr = gw.local_addr();
    let e = get(addr, "/nope").error(404, "NOT_FOUND");
    assert!(e["details"].as_str().unwrap().contains("/nope"));
    let r = request(addr, "POST", "/api/channels");
    r.error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD, OPTIONS"));
    let head = request(addr, "HEAD", "/health");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    let opt = request(addr, "OPTIONS", "/api/channels");
    assert_eq!(opt.status, 204);
    assert_eq!(
        opt.header("access-control-allow-origin"),
        None,
        "no Origin, no CORS (allowed origins: tests/security.rs)"
    );

    // Keep-alive with pipelining: three requests in one write, answered in order.
    let mut s = connect(addr);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\nGET /api/channels HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let statuses: Vec<u16> = (0..3)
        .map(|_| read_response(&mut s, &mut buf, false).status)
        .collect();
    assert_eq!(statuses, [200, 404, 200]);
    // The same connection keeps serving, byte by byte too.
    for b in b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n" {
        s.write_all(&[*b]).unwrap();
    }
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    // Head and body in separate writes (as python-requests sends them), on the same
    // connection: a refused request with a body, an unknown method with a body, then a
    // login — each answered at once, none left waiting for the request timeout (408).
    for (method, path, status) in [
        ("POST", "/api/channels", 405),
        ("TRACE", "/health", 405),
        ("POST", "/api/auth/login", 401),
        ("POST", "/api/channels", 405),
    ] {
        let body = r#"{"username":"nobody","password":"x"}"#;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(body.as_bytes()).unwrap();
        let started = Instant::now();
        let r = read_response(&mut s, &mut buf, false);
        assert_eq!(r.status, status, "{method} {path}: {}", r.head);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{method} {path}"
        );
        assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    }

    // HTTP/1.0 without keep-alive closes.
    let r = raw(addr, b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("connection").as_deref(), Some("close"));

    // Limits: oversized head → 431, oversized body → 413, garbage → 400; all JSON envelopes.
    let big = format!(
        "GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    raw(addr, big.as_bytes()).error(431, "HEADERS_TOO_LARGE");
    let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
    raw(
        addr,
        format!("GET /health HTTP/1.1\r\n{many}\r\n").as_bytes(),
    )
    .error(431, "HEADERS_TOO_LARGE");
    let body = format!(
        "POST /api/channels HTTP/1.1\r\nContent-Length: 100000\r\n\r\n{}",
        "x".repeat(100_000)
    );
    raw(addr, body.as_bytes()).error(413, "PAYLOAD_TOO_LARGE");
    raw(addr, b"\x16\x03\x01garbage\r\n\r\n").error(400, "BAD_REQUEST");
}

#[test]
fn redis_down_keeps_serving_then_resynchronises() {
    let mut redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    write(&mut con, "comsrv:1001:T", r#"{"1":25.6}"#, None);
    write(&mut con, "comsrv:1002:S", r#"{"10":1}"#, None);
    wait_until("2 channels", Duration::from_secs(2), || {
        channel_ids(addr).len() == 2
    });

    redis.kill();
    wait_until("degraded", Duration::from_secs(5), || {
        get_ok(addr, "/health/detailed")["data"]["status"] == "degraded"
    });
    let d = get_ok(addr, "/health/detailed");
    assert_eq!(d["data"]["dependencies"]["redis"]["status"], "unhealthy");
    assert!(
        d["data"]["dependencies"]["redis"]["rtt_ms"].is_null(),
        "{d}"
    );
    assert!(d["data"]["dependencies"]["redis"]["message"]
        .as_str()
        .unwrap()
        .contains("Redis unavailable"));
    // The last known state is still served, marked as not current.
    assert_eq!(
        get_ok(addr, "/api/channels/1001/status")["data"]["status"],
        "unavailable"
    );
    let v = get_ok(addr, "/api/channels/1001/realtime?data_type=T");
    assert_eq!(v["data"][0]["values"]["1"], 25.6);

    // A restarted Redis without persistence: empty, no Function library, a new epoch.
    redis.restart().unwrap();
    wait_until("healthy again", Duration::from_secs(10), || {
        get_ok(addr, "/health/detailed")["data"]["status"] == "healthy"
    });
    let mut con = redis_con(&redis);
    // The gateway reloaded the library, so device writes work again.
    write(&mut con, "comsrv:3001:T", r#"{"1":65.5}"#, None);
    wait_until("resynchronised", Duration::from_secs(3), || {
        channel_ids(addr) == [3001]
    });
    get(addr, "/api/channels/1001/status").error(404, "CHANNEL_NOT_FOUND");
}

#[test]
fn flushed_redis_is_a_reset() {
    let redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    write(&mut con, "comsrv:1:T", r#"{"1":1}"#, None);
    write(&mut con, "comsrv:2:T", r#"{"1":2}"#, None);
    wait_until("2 channels", Duration::from_secs(2), || {
        channel_ids(addr).len() == 2
    });
    // FLUSHALL drops data and the seq/epoch keys (the library survives a FLUSHALL).
    redis::cmd("FLUSHALL").query::<()>(&mut con).unwrap();
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query::<()>(&mut con)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // The gateway notices the missing library and reloads it.
    wait_until("library reloaded", Duration::from_secs(3), || {
        redis::cmd("FCALL_RO")
            .arg("voltage_version")
            .arg(0)
            .query::<i64>(&mut con)
            .is_ok()
    });
    write(&mut con, "comsrv:3:T", r#"{"1":3}"#, None);
    wait_until("only channel 3", Duration::from_secs(3), || {
        channel_ids(addr) == [3]
    });
}

#[test]
fn no_load_functions_reports_missing_library() {
    let redis = redis();
    let mut cfg = config(&redis.url(), voltage_gateway::config::DriverKind::Auto);
    cfg.load_functions = false;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    wait_until("degraded", Duration::from_secs(3), || {
        let d = get_ok(gw.local_addr(), "/health/detailed");
        d["data"]["dependencies"]["redis"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-load-functions")
    });
    assert_eq!(
        get_ok(gw.local_addr(), "/health/detailed")["data"]["status"],
        "degraded"
    );
}

#[test]
fn large_backlog_is_paged_and_complete() {
    let redis = redis();
    let mut con = redis_con(&redis);
    // Written before the gateway starts: the initial load pages through it.
    let mut cfg = config(&redis.url(), voltage_gateway::config::DriverKind::Auto);
    cfg.collect_batch = 7;
    voltage_gateway::feed::library::load(&mut con).unwrap();
    for ch in 1..=50 {
        write(
            &mut con,
            &format!("comsrv:{ch}:T"),
            r#"{"1":1,"2":2}"#,
            None,
        );
    }
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    wait_until("50 channels", Duration::from_secs(3), || {
        get(gw.local_addr(), "/api/channels").status == 200
            && channel_ids(gw.local_addr()).len() == 50
    });
}

#[test]
fn an_unreadable_hash_is_skipped_and_does_not_stall_the_feed() {
    let redis = redis();
    let mut con = redis_con(&redis);
    voltage_gateway::feed::library::load(&mut con).unwrap();
    write(&mut con, "comsrv:1:T", r#"{"1":1}"#, None);
    write(&mut con, "comsrv:2:T", r#"{"1":2}"#, None);
    // A key of the wrong type recorded as changed (someone SET it by hand).
    redis::cmd("SET")
        .arg("comsrv:3:T")
        .arg("corrupt")
        .query::<()>(&mut con)
        .unwrap();
    let seq: i64 = redis::cmd("INCR")
        .arg("netsrv:seq")
        .query(&mut con)
        .unwrap();
    redis::cmd("ZADD")
        .arg("netsrv:dirty")
        .arg(seq)
        .arg("3:T")
        .query::<()>(&mut con)
        .unwrap();
    let mut cfg = config(&redis.url(), voltage_gateway::config::DriverKind::Auto);
    cfg.collect_batch = 2;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let addr = gw.local_addr();
    // Data routes answer 503 until the first load.
    wait_until("loaded", Duration::from_secs(3), || {
        gw.published().snapshot.load().loaded
    });
    wait_until(
        "the readable channels are served",
        Duration::from_secs(3),
        || channel_ids(addr) == [1, 2],
    );
    // Writes after the bad key still arrive: the feed moved past it.
    write(&mut con, "comsrv:4:T", r#"{"1":4}"#, None);
    wait_until("later writes", Duration::from_secs(3), || {
        channel_ids(addr) == [1, 2, 4]
    });
    assert_eq!(
        get_ok(addr, "/health/detailed")["data"]["status"],
        "healthy"
    );
}

/// Subscribers of the feed's wake-up channel.
fn wake_subscribers(con: &mut redis::Connection) -> i64 {
    let n: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(voltage_gateway::feed::WAKE_CHANNEL)
        .query(con)
        .unwrap();
    match n.get(1) {
        Some(redis::Value::Int(k)) => *k,
        other => panic!("PUBSUB NUMSUB: {other:?}"),
    }
}

/// How long until `value` of channel 1, point 1 is served, polling the REST API.
fn seen_after(addr: std::net::SocketAddr, value: i64, limit: Duration) -> Option<Duration> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        // 404 until the channel's first write is collected.
        let r = get(addr, "/api/channels/1/realtime?data_type=T");
        if r.status == 200 && r.json()["data"][0]["values"]["1"].as_i64() == Some(value) {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

#[test]
fn a_write_wakes_the_feed_instead_of_waiting_for_the_tick() {
    let redis = redis();
    let mut con = redis_con(&redis);
    let mut cfg = config(&redis.url(), voltage_gateway::config::DriverKind::Auto);
    // Polling alone would take up to two seconds per write.
    cfg.tick_ms = 2000;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let addr = gw.local_addr();
    wait_until("subscribed", Duration::from_secs(5), || {
        wake_subscribers(&mut con) == 1
    });
    let fast_writes = |con: &mut redis::Connection, values: std::ops::RangeInclusive<i64>| {
        for v in values {
            // Each write after the feed is idle again (its collect armed the hint).
            std::thread::sleep(Duration::from_millis(30));
            write(con, "comsrv:1:T", &format!(r#"{{"1":{v}}}"#), None);
            let took = seen_after(addr, v, Duration::from_secs(3)).expect("write served");
            assert!(took < Duration::from_millis(500), "write {v} took {took:?}");
        }
    };
    fast_writes(&mut con, 1..=5);
    // A lost subscription: the tick still delivers, and the feed subscribes again.
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query::<()>(&mut con)
        .unwrap();
    write(&mut con, "comsrv:1:T", r#"{"1":6}"#, None);
    seen_after(addr, 6, Duration::from_secs(5)).expect("served by the tick");
    wait_until("subscribed again", Duration::from_secs(10), || {
        wake_subscribers(&mut con) == 1
    });
    // Subscribing again is followed at once by a collect that arms the hint.
    fast_writes(&mut con, 7..=9);
}

#[test]
fn without_wake_the_tick_still_delivers() {
    let redis = redis();
    let mut con = redis_con(&redis);
    let mut cfg = config(&redis.url(), voltage_gateway::config::DriverKind::Auto);
    cfg.wake = false;
    cfg.tick_ms = 300;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let addr = gw.local_addr();
    wait_until("loaded", Duration::from_secs(5), || {
        gw.published().redis.load().healthy
    });
    assert_eq!(wake_subscribers(&mut con), 0);
    let mut slow = 0;
    for v in 1..=3 {
        write(&mut con, "comsrv:1:T", &format!(r#"{{"1":{v}}}"#), None);
        let took = seen_after(addr, v, Duration::from_secs(3)).expect("write served");
        slow += usize::from(took > Duration::from_millis(20));
    }
    assert!(
        slow > 0,
        "polling every 300 ms cannot be this fast three times"
    );
}

#[test]
fn a_slow_loris_is_answered_408_and_closed() {
    let redis = redis();
    let mut cfg = config(&redis.url(), voltage_gateway::config::DriverKind::Auto);
    cfg.http.request_timeout_secs = 1;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let mut s = connect(gw.local_addr());
    s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    let t0 = Instant::now();
    // One header byte every 100 ms: the idle timeout (60 s) never fires, the request
    // deadline does.
    let mut w = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for b in b"X-Slow: ".iter().cycle().take(40) {
            if w.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 408);
    assert_eq!(r.json()["error"]["code"], "REQUEST_TIMEOUT");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    trickle.join().unwrap();
}

#[test]
fn pipelined_requests_without_reading_hold_bounded_memory() {
    let redis = redis();
    // A process of its own: its memory is measured apart from the tests running beside it.
    let gw = GatewayProcess::spawn(&redis, "");
    let addr = gw.addr;
    let mut con = redis_con(&redis);
    seed_1000_channels(&mut con, addr);
    let mut s = connect(addr);
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    // A big first request grows the connection's input buffer ...
    let body = vec![b'x'; 60_000];
    let mut post = format!(
        "POST /api/channels HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    s.write_all(&post).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // ... so one read can take 60 KB of pipelined GETs: 1,500 requests, ~110 MB of answers
    // if every answer were rendered before writing.
    let get = b"GET /api/channels HTTP/1.1\r\nHost: t\r\n\r\n";
    let burst: Vec<u8> = get.iter().copied().cycle().take(get.len() * 1500).collect();
    let before = gw.rss_kib();
    let _ = s.write_all(&burst);
    std::thread::sleep(Duration::from_secs(2));
    let growth = gw.rss_kib().saturating_sub(before);
    assert!(growth < 16 * 1024, "RSS grew {growth} KiB");
    // The gateway still answers others promptly.
    assert_eq!(get_ok(addr, "/health")["data"]["status"], "healthy");
}

#[test]
fn without_redis_at_start_up_the_site_is_unavailable_not_empty() {
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(
        &format!("redis://127.0.0.1:{port}"),
        voltage_gateway::config::DriverKind::Auto,
    );
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let addr = gw.local_addr();
    get(addr, "/api/channels").error(503, "SERVICE_UNAVAILABLE");
    get(addr, "/api/channels/1001/status").error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(get_ok(addr, "/health")["data"]["status"], "degraded");
    let ready = get(addr, "/health/ready");
    ready.error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(
        get_ok(addr, "/health/detailed")["data"]["status"],
        "degraded"
    );
}

#[test]
fn one_spelling_per_route_and_per_id_and_standard_heads() {
    let redis = redis();
    let gw = gateway(&redis, voltage_gateway::config::DriverKind::Auto);
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    write(&mut con, "comsrv:1001:T", r#"{"1":25.6}"#, None);
    wait_until("loaded", Duration::from_secs(3), || {
        channel_ids(addr) == [1001]
    });
    // An encoded '/' does not route.
    get(addr, "/api/channels%2F1001%2Fstatus").error(400, "BAD_REQUEST");
    // `01001` is not another spelling of 1001, on every {id} route and in point_id.
    for path in [
        "/api/channels/01001/status",
        "/api/channels/01001/realtime",
        "/api/channels/1001/realtime?point_id=01",
    ] {
        get(addr, path).error(400, "INVALID_PARAMETER");
    }
    get_ok(addr, "/api/channels/1001/realtime?point_id=1");
    // HTTP/1.1 without Host (RFC 7230 §5.4).
    raw(addr, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n").error(400, "BAD_REQUEST");
    // WebSocket upgrades: HTTP/1.1 only, and a real base64 key (RFC 6455 §4.1).
    let upgrade = |version: &str, key: &str| {
        raw(
            addr,
            format!(
                "GET /ws HTTP/{version}\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    upgrade("1.0", "dGhlIHNhbXBsZSBub25jZQ==").error(400, "BAD_REQUEST");
    upgrade("1.1", "!!!!!!!!!!!!!!!!!!!!!!==").error(400, "BAD_REQUEST");
    assert_eq!(upgrade("1.1", "dGhlIHNhbXBsZSBub25jZQ==").status, 101);
}

#[test]
fn a_client_that_does_not_read_its_answers_is_closed_after_the_send_timeout() {
    let redis = redis();
    let mut cfg = config(&redis.url(), voltage_gateway::config::DriverKind::Auto);
    cfg.http.send_timeout_secs = 1;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    wait_until("loaded", Duration::from_secs(5), || {
        gw.published().snapshot.load().loaded
    });
    seed_1000_channels(&mut con, addr);
    // 100 pipelined requests for ~75 KB each, and no reading for 3 s.
    let mut s = connect(addr);
    let get = b"GET /api/channels HTTP/1.1\r\nHost: t\r\n\r\n";
    let burst: Vec<u8> = get.iter().copied().cycle().take(get.len() * 100).collect();
    s.write_all(&burst).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // What was in flight still arrives; then the connection ends instead of resuming.
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let ended = loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => break true,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break false, // the 5 s read timeout: still open
        }
    };
    assert!(ended, "the connection was still open after {total} bytes");
    assert!(total < 100 * 70_000, "all {total} bytes were delivered");
}

/// Writes 1,000 channels (two points each: every `GET /api/channels` answer is ~75 KB) and
/// waits until the gateway serves them all.
fn seed_1000_channels(con: &mut redis::Connection, addr: std::net::SocketAddr) {
    let mut pipe = redis::pipe();
    for ch in 1..=1000 {
        pipe.cmd("FCALL")
            .arg("comsrv_write_data")
            .arg(1)
            .arg(format!("comsrv:{ch}:T"))
            .arg(r#"{"1":1.5,"2":2.5}"#)
            .ignore();
    }
    pipe.query::<()>(con).unwrap();
    wait_until("1000 channels", Duration::from_secs(5), || {
        channel_ids(addr).len() == 1000
    });
}

#[test]
fn the_operator_page_is_served_cacheable_to_everyone() {
    let redis = redis();
    let mut cfg = config(&redis.url(), voltage_gateway::config::DriverKind::Auto);
    // Even with anonymous access off: the page is how one logs in.
    cfg.auth.anonymous_role = voltage_gateway::config::AnonymousRole::None;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let addr = gw.local_addr();
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.body).contains("<script src=\"/app.js\">"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(page.header("cache-control").as_deref(), Some("no-cache"));
    let etag = page.header("etag").unwrap();
    let again = raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/index.html", "text/html"),
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
    }
    get(addr, "/nope.js").error(404, "NOT_FOUND");
    get(addr, "/api/channels").error(401, "UNAUTHORIZED");
    send(addr, "POST", "/", "").error(405, "METHOD_NOT_ALLOWED");
}
