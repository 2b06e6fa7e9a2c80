//! WebSocket end to end: real redis-server, real gateway, real WebSocket clients.

mod common;
#[path = "common/ws.rs"]
mod wsc;

use common::*;
use serde_json::{json, Value as Json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use voltage_gateway::config::DriverKind;
use wsc::*;

const SEED_SUBSCRIBE: &str = r#"{"type":"subscribe","id":"sub_001","timestamp":"2025-08-12T10:30:00Z","data":{"channels":[1001,1002],"data_types":["T","S"],"interval":1000}}"#;

both_drivers!(seed_examples_verbatim, driver, {
    let (_redis, gw, _con) = start(driver);
    let addr = gw.local_addr();

    // Connection examples: generated id, chosen id, chosen id + data_type.
    let (_c1, hello) = Client::connect(addr, "/ws");
    let id = hello["data"]["client_id"].as_str().unwrap();
    assert!(id.starts_with("client_") && id.len() == 15, "{id}");
    assert_eq!(hello["data"]["data_type"], "general");
    let (_c2, hello) = Client::connect(addr, "/ws?client_id=dashboard_001");
    assert_eq!(hello["data"]["client_id"], "dashboard_001");
    let (_c3, hello) = Client::connect(addr, "/ws?client_id=mobile_app&data_type=realtime");
    assert_eq!(hello["data"]["client_id"], "mobile_app");
    assert_eq!(hello["data"]["data_type"], "realtime");
    let (mut c, _) = Client::connect(addr, "/api/ws");

    // subscribe → ack, then one snapshot message.
    c.send(SEED_SUBSCRIBE);
    let ack = c.recv();
    assert_eq!(ack["type"], "subscribe_ack");
    assert_eq!(ack["id"], "sub_001_ack");
    assert_eq!(
        ack["data"],
        json!({"request_id":"sub_001","subscribed":[1001,1002],"failed":[],"total":2})
    );
    let snap = c.recv();
    assert_eq!(snap["type"], "data_batch", "{snap}");
    assert_eq!(
        snap["data"]["updates"],
        json!([
            {"channel_id":1001,"data_type":"T","values":{"1":25.6,"2":101.3,"3":7.2}},
            {"channel_id":1001,"data_type":"S","values":{"10":1,"11":0}},
            {"channel_id":1002,"data_type":"T","values":{"1":25.6,"2":26.3}},
            {"channel_id":1002,"data_type":"S","values":{"10":1,"11":0}}
        ])
    );
    assert!(snap["timestamp"].as_str().unwrap().ends_with('Z'));

    // The literal placeholder timestamp of the seed is accepted too (timestamps are free-form).
    c.send(r#"{"type":"subscribe","id":"sub_002","timestamp":"{时间戳}","data":{"channels":[2001],"data_types":["A"],"interval":1000}}"#);
    let ack = c.recv();
    assert_eq!(ack["data"]["total"], 3);
    let snap = c.recv();
    assert_eq!(snap["type"], "data_update");
    assert_eq!(
        snap["data"],
        json!({"channel_id":2001,"data_type":"A","values":{"20":50}})
    );

    c.send(r#"{"type":"unsubscribe","id":"unsub_001","timestamp":"2025-08-12T10:30:00Z","data":{"channels":[1001]}}"#);
    let ack = c.recv();
    assert_eq!(ack["type"], "unsubscribe_ack");
    assert_eq!(ack["id"], "unsub_001_ack");
    assert_eq!(
        ack["data"],
        json!({"request_id":"unsub_001","unsubscribed":[1001],"failed":[],"total":2})
    );

    // The seed's control needs the operator role: an anonymous viewer (the default) is told
    // to log in, and nothing is queued. (tests/security.rs sends it with a token: queued.)
    c.send(r#"{"type":"control","id":"ctrl_001","timestamp":"2025-08-12T10:30:00Z","data":{"channel_id":2001,"point_id":20,"command_type":"set_value","value":50.0,"operator":"user_001","reason":"Production adjustment"}}"#);
    let e = c.recv();
    assert_eq!(e["type"], "error");
    assert_eq!(e["data"]["code"], "UNAUTHORIZED");
    assert_eq!(e["data"]["request_id"], "ctrl_001");

    c.send(r#"{"type":"ping","id":"ping_001","timestamp":"2025-08-12T10:30:00Z"}"#);
    let pong = c.recv();
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["id"], "pong_001");
    assert!(pong["data"]["server_time"].as_str().unwrap().ends_with('Z'));
    assert!(pong["data"]["latency"].as_i64().unwrap() > 0);
    // The seed's heartbeat: ping_<ms> with the current time → small latency.
    let now = voltage_gateway::time::iso_now();
    c.send(&format!(
        r#"{{"type":"ping","id":"ping_1736755800000","timestamp":"{now}"}}"#
    ));
    let pong = c.recv();
    assert_eq!(pong["id"], "pong_1736755800000");
    assert!(pong["data"]["latency"].as_i64().unwrap() < 1000, "{pong}");
});

#[test]
fn unknown_channels_fail_with_an_error_after_the_ack() {
    let (_redis, gw, _con) = start(DriverKind::Auto);
    let (mut c, _) = Client::connect(gw.local_addr(), "/ws");
    c.send(r#"{"type":"subscribe","id":"sub_001","timestamp":"x","data":{"channels":[1001,9999],"data_types":["T"]}}"#);
    let ack = c.recv();
    assert_eq!(
        ack["data"],
        json!({"request_id":"sub_001","subscribed":[1001],"failed":[9999],"total":1})
    );
    let err = c.recv();
    assert_eq!(err["type"], "error");
    assert_eq!(err["data"]["code"], "CHANNEL_NOT_FOUND");
    assert_eq!(err["data"]["request_id"], "sub_001");
    assert!(err["data"]["details"].as_str().unwrap().contains("9999"));
    let snap = c.recv();
    assert_eq!(snap["data"]["channel_id"], 1001);
    // Only unknown channels: ack + error, no snapshot; nothing subscribed.
    c.send(r#"{"type":"subscribe","id":"sub_002","data":{"channels":[8888]}}"#);
    assert_eq!(c.recv()["data"]["failed"], json!([8888]));
    assert_eq!(c.recv()["data"]["code"], "CHANNEL_NOT_FOUND");
    c.send(r#"{"type":"ping","id":"ping_x"}"#);
    assert_eq!(c.recv()["type"], "pong", "no snapshot was sent for nothing");
}

both_drivers!(snapshot_then_only_changed_points, driver, {
    let (_redis, gw, mut con) = start(driver);
    let (mut c, _) = Client::connect(gw.local_addr(), "/ws");
    c.send(r#"{"type":"subscribe","id":"s","data":{"channels":[1001],"data_types":["T"],"interval":100}}"#);
    c.recv_type("subscribe_ack");
    let snap = c.recv();
    assert_eq!(snap["data"]["values"], json!({"1":25.6,"2":101.3,"3":7.2}));
    write(&mut con, "comsrv:1001:T", r#"{"2":99.9}"#, None);
    let upd = c.recv();
    assert_eq!(upd["type"], "data_update");
    assert_eq!(
        upd["data"],
        json!({"channel_id":1001,"data_type":"T","values":{"2":99.9}})
    );
    // A write of the same value is not a change; a signal write is not subscribed.
    write(&mut con, "comsrv:1001:T", r#"{"2":99.9}"#, None);
    write(&mut con, "comsrv:1001:S", r#"{"10":0}"#, None);
    assert!(c.collect_for(Duration::from_millis(400)).is_empty());
    // Ids increase per connection.
    write(&mut con, "comsrv:1001:T", r#"{"1":1}"#, None);
    let next = c.recv();
    assert!(push_number(&next) > push_number(&upd), "{next} after {upd}");
});

#[test]
fn interval_is_respected_and_changes_are_conflated() {
    let (_redis, gw, mut con) = start(DriverKind::Auto);
    let (mut slow, _) = Client::connect(gw.local_addr(), "/ws");
    let (mut fast, _) = Client::connect(gw.local_addr(), "/ws");
    slow.send(r#"{"type":"subscribe","id":"s","data":{"channels":[1001],"data_types":["T"],"interval":1000}}"#);
    fast.send(r#"{"type":"subscribe","id":"f","data":{"channels":[1001],"data_types":["T"],"interval":100}}"#);
    for c in [&mut slow, &mut fast] {
        c.recv_type("subscribe_ack");
        c.recv();
    }
    let writer = std::thread::spawn(move || {
        // 10 Hz for 2.5 s.
        for i in 1..=25 {
            write(&mut con, "comsrv:1001:T", &format!(r#"{{"1":{i}}}"#), None);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let slow_got = slow.collect_for(Duration::from_millis(2900));
    let fast_got = fast.collect_for(Duration::from_millis(200));
    writer.join().unwrap();
    assert!(
        (2..=3).contains(&slow_got.len()),
        "1000 ms subscriber got {} pushes",
        slow_got.len()
    );
    // The server spaces pushes >= 0.9 x interval when it sends them; arrival times here carry
    // scheduling jitter too, so allow 50 ms of it (a 10 Hz push would be 100 ms apart).
    for w in slow_got.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(gap >= Duration::from_millis(850), "pushes {gap:?} apart");
    }
    // Conflated: each push carries the newest value at its time, not the next in line (the
    // last push comes 1.5–2.5 s into the 10 Hz writes, later than value 15 on a busy machine).
    let last = &slow_got.last().unwrap().1;
    let v = last["data"]["values"]["1"].as_i64().unwrap();
    assert!(v >= 15, "{last}");
    let _ = fast_got;
}

/// Opens clients until both shards hold at least one (SO_REUSEPORT spreads them by hash).
fn clients_on_both_shards(addr: std::net::SocketAddr) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (c, _) = Client::connect(addr, "/ws");
        clients.push(c);
        let h = get_ok(addr, "/health/detailed");
        let per_shard = h["data"]["websockets_per_shard"]
            .as_array()
            .unwrap()
            .clone();
        if clients.len() >= 4 && per_shard.iter().all(|n| n.as_u64().unwrap() > 0) {
            return clients;
        }
    }
    panic!("connections never spread over both shards");
}

both_drivers!(
    same_subscription_on_different_shards_gets_identical_bytes,
    driver,
    {
        let (_redis, gw, mut con) = start(driver);
        let mut clients = clients_on_both_shards(gw.local_addr());
        for c in &mut clients {
            c.send(r#"{"type":"subscribe","id":"s","data":{"channels":[1001,1002],"data_types":["T"],"interval":100}}"#);
            c.recv_type("subscribe_ack");
            c.recv();
        }
        std::thread::sleep(Duration::from_millis(150));
        write(&mut con, "comsrv:1001:T", r#"{"1":30.5}"#, None);
        write(&mut con, "comsrv:1002:T", r#"{"2":31.5}"#, None);
        let frames: Vec<Vec<u8>> = clients.iter_mut().map(|c| c.recv_raw()).collect();
        assert!(
            frames.iter().all(|f| *f == frames[0]),
            "{:?}",
            frames
                .iter()
                .map(|f| String::from_utf8_lossy(f).to_string())
                .collect::<Vec<_>>()
        );
        let j: Json = serde_json::from_slice(&frames[0]).unwrap();
        assert!(
            j["type"] == "data_batch" || j["type"] == "data_update",
            "{j}"
        );
    }
);

both_drivers!(client_id_takeover_across_shards, driver, {
    let (_redis, gw, _con) = start(driver);
    let addr = gw.local_addr();
    // Several successive takeovers: SO_REUSEPORT puts them on both shards.
    let (mut old, _) = Client::connect(addr, "/ws?client_id=dashboard_001");
    for _ in 0..6 {
        let (mut new, hello) = Client::connect(addr, "/ws?client_id=dashboard_001");
        assert_eq!(hello["data"]["client_id"], "dashboard_001");
        assert_eq!(old.expect_close(), (4001, "replaced".to_string()));
        new.send(r#"{"type":"ping","id":"ping_1"}"#);
        assert_eq!(new.recv()["type"], "pong");
        old = new;
    }
    let h = get_ok(addr, "/health/detailed");
    let total: u64 = h["data"]["websockets_per_shard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(total <= 2, "replaced connections are gone: {h}");
});

both_drivers!(bad_messages_get_errors_and_keep_the_connection, driver, {
    let (_redis, gw, _con) = start(driver);
    let (mut c, _) = Client::connect(gw.local_addr(), "/ws");
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("{not json", "INVALID_JSON", None),
        ("[1,2,3]", "INVALID_MESSAGE", None),
        (r#"{"id":"m1"}"#, "INVALID_MESSAGE", Some("m1")),
        (r#"{"type":"dance","id":"m2"}"#, "UNKNOWN_TYPE", Some("m2")),
        (
            r#"{"type":"subscribe","id":"m3","data":{"channels":"1001"}}"#,
            "INVALID_PARAMETER",
            Some("m3"),
        ),
        (
            r#"{"type":"subscribe","id":"m4","data":{"channels":[1001],"interval":50}}"#,
            "INVALID_PARAMETER",
            Some("m4"),
        ),
        (
            r#"{"type":"subscribe","id":"m5","data":{"channels":[1001],"data_types":["X"]}}"#,
            "INVALID_PARAMETER",
            Some("m5"),
        ),
        (
            r#"{"type":"subscribe","id":"m6","data":{"channels":[]}}"#,
            "INVALID_PARAMETER",
            Some("m6"),
        ),
        (
            r#"{"type":"unsubscribe","id":"m7","data":{"channels":[-1]}}"#,
            "INVALID_PARAMETER",
            Some("m7"),
        ),
    ];
    for (msg, code, rid) in cases {
        c.send(msg);
        let e = c.recv();
        assert_eq!(e["type"], "error", "{msg}: {e}");
        assert_eq!(e["data"]["code"], *code, "{msg}: {e}");
        assert_eq!(e["data"]["request_id"].as_str(), *rid, "{msg}: {e}");
    }
    // A bad subscribe changed nothing.
    c.send(r#"{"type":"unsubscribe","id":"u"}"#);
    assert_eq!(c.recv()["data"]["total"], 0);
    // Binary frames: an error, the connection stays.
    c.ws.send(tungstenite::Message::binary(vec![1u8, 2, 3]))
        .unwrap();
    let e = c.recv();
    assert_eq!(e["data"]["code"], "INVALID_MESSAGE");
    c.send(r#"{"type":"ping","id":"ping_after"}"#);
    assert_eq!(c.recv()["id"], "pong_after");
    // A message over the 64 KiB limit closes with 1009.
    let huge = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(70_000));
    c.send(&huge);
    assert_eq!(c.expect_close().0, 1009);
});

#[test]
fn upgrade_refusals_are_json_errors() {
    let (_redis, gw, _con) = start(DriverKind::Auto);
    let addr = gw.local_addr();
    let upgrade = |target: &str| {
        raw(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
        )
    };
    let e = upgrade("/ws?data_type=video").error(400, "INVALID_PARAMETER");
    assert!(e["details"].as_str().unwrap().contains("data_type"));
    upgrade("/ws?client_id=bad%20id").error(400, "INVALID_PARAMETER");
    get(addr, "/ws").error(400, "BAD_REQUEST");
    let ok = upgrade("/ws?data_type=alarm");
    assert_eq!(ok.status, 101);
    assert_eq!(
        ok.header("sec-websocket-accept").as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[test]
fn a_client_that_never_reads_is_conflated_then_closed_and_memory_stays_flat() {
    let redis = redis();
    // A process of its own: its memory is measured apart from the tests running beside it.
    let gw = GatewayProcess::spawn(
        &redis,
        "[ws]\noutbound_budget_bytes = 65536\nslow_close_secs = 2\n",
    );
    let addr = gw.addr;
    let mut con = redis_con(&redis);
    // 200 channels × 100 points: every push is ~200 KB.
    let values: String = (1..=100)
        .map(|p| format!("\"{p}\":{p}.5"))
        .collect::<Vec<_>>()
        .join(",");
    for ch in 1..=200 {
        write(
            &mut con,
            &format!("comsrv:{ch}:T"),
            &format!("{{{values}}}"),
            None,
        );
    }
    wait_until("200 channels", Duration::from_secs(3), || {
        channel_ids(addr).len() == 200
    });
    let mut sleeper = raw_ws(addr, "/ws");
    sleeper
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 1024];
    let _ = sleeper.read(&mut head).unwrap();
    let channels: Vec<String> = (1..=200).map(|c| c.to_string()).collect();
    let sub = format!(
        r#"{{"type":"subscribe","id":"s","data":{{"channels":[{}],"interval":100}}}}"#,
        channels.join(",")
    );
    sleeper.write_all(&masked_text(sub.as_bytes())).unwrap();
    // A healthy client on the same subscription keeps receiving throughout.
    let (mut healthy, _) = Client::connect(addr, "/ws");
    healthy.send(&sub);
    healthy.recv_type("subscribe_ack");
    let rss_before = gw.rss_kib();
    let start = Instant::now();
    let mut round = 0;
    let mut healthy_frames = 0;
    while start.elapsed() < Duration::from_secs(5) {
        round += 1;
        let mut pipe = redis::pipe();
        for ch in 1..=200 {
            let v: String = (1..=100)
                .map(|p| format!("\"{p}\":{round}.{p}"))
                .collect::<Vec<_>>()
                .join(",");
            pipe.cmd("FCALL")
                .arg("comsrv_write_data")
                .arg(1)
                .arg(format!("comsrv:{ch}:T"))
                .arg(format!("{{{v}}}"))
                .ignore();
        }
        pipe.query::<()>(&mut con).unwrap();
        healthy_frames += healthy.collect_for(Duration::from_millis(100)).len();
    }
    let growth = gw.rss_kib().saturating_sub(rss_before);
    assert!(
        healthy_frames >= 20,
        "the healthy client kept receiving ({healthy_frames})"
    );
    // ≥ 5 s × 10 pushes × 200 KB were offered to the sleeper; the server kept at most its
    // budget (plus kernel buffers), and closed it after slow_close_secs.
    assert!(growth < 40 * 1024, "RSS grew {growth} KiB");
    // Closed: slow_close_secs after it became congested, plus a short grace for the close frame.
    wait_until(
        "the never-reading client is closed",
        Duration::from_secs(4),
        || {
            let h = get_ok(addr, "/health/detailed");
            h["data"]["websockets_per_shard"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .sum::<u64>()
                == 1
        },
    );
}

#[test]
fn liveness_pings_and_idle_timeout() {
    let redis = redis();
    let mut cfg = config(&redis.url(), DriverKind::Auto);
    cfg.ws.ping_interval_secs = 1;
    // Several ping periods: the sweep runs once a second and a loaded CI machine may delay it,
    // so an idle limit of two periods could close a client before its first ping.
    cfg.ws.idle_timeout_secs = 4;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let addr = gw.local_addr();
    // A well-behaved client sees pings and answers them (tungstenite does): it stays.
    let (mut good, _) = Client::connect(addr, "/ws");
    let mut pings = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        if let Ok(tungstenite::Message::Ping(_)) = good.read() {
            pings += 1;
        }
    }
    assert!(pings >= 2, "{pings} pings");
    good.send(r#"{"type":"ping","id":"ping_still"}"#);
    assert_eq!(good.recv_type("pong")["id"], "pong_still");
    // A silent client is closed after the idle timeout.
    let mut silent = raw_ws(addr, "/ws");
    silent
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match silent.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("not closed: {e}"),
        }
    }
    let close = all
        .windows(2)
        .position(|w| w[0] == 0x88)
        .expect("a close frame");
    assert_eq!(&all[close + 2..close + 4], &1001u16.to_be_bytes());
}

#[test]
fn connection_limits_are_clear_refusals() {
    let redis = redis();
    let mut cfg = config(&redis.url(), DriverKind::Auto);
    cfg.max_connections_per_ip = 3;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let addr = gw.local_addr();
    let held: Vec<_> = (0..3).map(|_| Client::connect(addr, "/ws").0).collect();
    let r = get(addr, "/health");
    let e = r.error(503, "TOO_MANY_CONNECTIONS");
    assert!(e["details"].as_str().unwrap().contains("3"));
    drop(held);
    wait_until("slots free", Duration::from_secs(3), || {
        get(addr, "/health").status == 200
    });
}

#[test]
fn alarm_only_connections_receive_no_data() {
    let (_redis, gw, mut con) = start(DriverKind::Auto);
    let (mut c, _) = Client::connect(gw.local_addr(), "/ws?data_type=alarm");
    c.send(r#"{"type":"subscribe","id":"s","data":{"channels":[1001],"interval":100}}"#);
    assert_eq!(c.recv()["type"], "subscribe_ack");
    write(&mut con, "comsrv:1001:T", r#"{"1":77}"#, None);
    assert!(c.collect_for(Duration::from_millis(400)).is_empty());
}

#[test]
fn shutdown_closes_websockets_with_going_away() {
    let (_redis, gw, _con) = start(DriverKind::Auto);
    let (mut c, _) = Client::connect(gw.local_addr(), "/ws");
    let stopper = std::thread::spawn(move || {
        let t = Instant::now();
        gw.shutdown();
        t.elapsed()
    });
    assert_eq!(c.expect_close(), (1001, "server shutting down".to_string()));
    let took = stopper.join().unwrap();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
}

#[test]
fn a_request_flood_without_reading_is_throttled_not_buffered() {
    let redis = redis();
    let gw = GatewayProcess::spawn(&redis, "");
    let addr = gw.addr;
    let mut flood = raw_ws(addr, "/ws");
    let mut head = [0u8; 1024];
    let _ = flood.read(&mut head).unwrap();
    flood
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let ping = masked_text(br#"{"type":"ping","id":"ping_flood"}"#);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1000)
        .collect();
    let rss_before = gw.rss_kib();
    let mut sent = 0usize;
    // Pings for up to 15 s (tens of MB of pong replies if they were all buffered): the server
    // stops reading once the replies back up (the writes block), or closes it for the rate
    // and then drops its input only until the close deadline (5 s): either way the writes
    // end, and nothing piles up.
    let started = Instant::now();
    let mut ended = false;
    while started.elapsed() < Duration::from_secs(15) {
        match flood.write_all(&burst) {
            Ok(()) => sent += 1000,
            Err(_) => {
                ended = true;
                break;
            }
        }
    }
    let growth = gw.rss_kib().saturating_sub(rss_before);
    assert!(
        ended,
        "the server kept reading {sent} pings for {:?} without anyone reading its replies",
        started.elapsed()
    );
    assert!(
        growth < 16 * 1024,
        "RSS grew {growth} KiB after {sent} pings"
    );
    // The gateway still serves everyone else.
    let (mut c, _) = Client::connect(addr, "/ws");
    c.send(r#"{"type":"ping","id":"ping_ok"}"#);
    assert_eq!(c.recv_type("pong")["id"], "pong_ok");
}

both_drivers!(deeply_nested_json_is_an_error_not_a_crash, driver, {
    let (_redis, gw, _con) = start(driver);
    let addr = gw.local_addr();
    let (mut c, _) = Client::connect(addr, "/ws");
    // ~24 KB: enough levels to overflow a shard's stack inside an unbounded JSON parser.
    c.send(&format!(r#"{{"id":"deep","data":{}"#, "[".repeat(12_000)));
    let e = c.recv_type("error");
    assert_eq!(e["data"]["code"], "INVALID_JSON", "{e}");
    assert!(
        e["data"]["details"]
            .as_str()
            .unwrap()
            .contains("deeper than 32"),
        "{e}"
    );
    // The same connection and the gateway carry on.
    c.send(r#"{"type":"ping","id":"ping_after"}"#);
    assert_eq!(c.recv_type("pong")["id"], "pong_after");
    let (mut other, _) = Client::connect(addr, "/ws");
    other.send(SEED_SUBSCRIBE);
    assert_eq!(other.recv_type("subscribe_ack")["data"]["total"], 2);
});

#[test]
fn before_the_first_load_data_is_unavailable_and_subscriptions_wait_for_it() {
    let redis = redis();
    let mut con = redis_con(&redis);
    // Data in Redis, but the library the gateway collects with is missing and it may not
    // load it: the site cannot be loaded until an operator loads the library.
    voltage_gateway::feed::library::load(&mut con).unwrap();
    write(&mut con, "comsrv:1001:T", r#"{"1":25.6}"#, None);
    redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg("voltage")
        .query::<()>(&mut con)
        .unwrap();
    let mut cfg = config(&redis.url(), DriverKind::Auto);
    cfg.load_functions = false;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let addr = gw.local_addr();
    wait_until("the feed failed", Duration::from_secs(5), || {
        gw.published().redis.load().message.contains("not loaded")
    });
    // An unloaded site is not an empty one.
    get(addr, "/api/channels").error(503, "SERVICE_UNAVAILABLE");
    get(addr, "/api/channels/1001/realtime").error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(get_ok(addr, "/health")["data"]["status"], "degraded");
    get(addr, "/health/ready").error(503, "SERVICE_UNAVAILABLE");

    let (mut c, _) = Client::connect(addr, "/ws");
    assert_eq!(c.status["data"]["source"], "degraded", "{}", c.status);
    assert!(
        c.status["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("not loaded"),
        "{}",
        c.status
    );
    c.send(
        r#"{"type":"subscribe","id":"early","data":{"channels":[1001,1002],"data_types":["T"]}}"#,
    );
    c.send(r#"{"type":"ping","id":"ping_1"}"#);
    // The ping is answered; the subscription waits for the data.
    assert_eq!(c.recv()["type"], "pong");

    voltage_gateway::feed::library::load(&mut con).unwrap();
    let ack = c.recv();
    assert_eq!(ack["type"], "subscribe_ack", "{ack}");
    assert_eq!(ack["data"]["request_id"], "early");
    assert_eq!(ack["data"]["subscribed"], json!([1001]));
    assert_eq!(ack["data"]["failed"], json!([1002]));
    assert_eq!(c.recv()["data"]["code"], "CHANNEL_NOT_FOUND");
    let snap = c.recv();
    assert_eq!(snap["type"], "data_update", "{snap}");
    assert_eq!(snap["data"]["values"]["1"], 25.6);
    let status = c.recv_type("status");
    assert_eq!(status["data"]["source"], "healthy", "{status}");
    assert!(status["data"]["reason"].is_null());
    assert_eq!(get_ok(addr, "/health/ready")["data"]["status"], "ready");
    assert_eq!(channel_ids(addr), [1001]);
}

#[test]
fn clients_are_told_when_redis_goes_away_and_comes_back() {
    let (mut redis, gw, _con) = start(DriverKind::Auto);
    let addr = gw.local_addr();
    let (mut c, _) = Client::connect(addr, "/ws");
    assert_eq!(c.status["data"]["source"], "healthy", "{}", c.status);
    redis.kill();
    let down = c.recv_type("status");
    assert_eq!(down["data"]["source"], "degraded", "{down}");
    assert!(
        down["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("Redis unavailable"),
        "{down}"
    );
    // A client connecting now learns it at once (its shard may hear of it a moment after
    // the first client's: then the next message says so).
    let (mut late, _) = Client::connect(addr, "/ws");
    if late.status["data"]["source"] != "degraded" {
        assert_eq!(late.recv_type("status")["data"]["source"], "degraded");
    }
    redis.restart().unwrap();
    let up = c.recv_type("status");
    assert_eq!(up["data"]["source"], "healthy", "{up}");
}

#[test]
fn a_subscribe_unsubscribe_loop_is_rate_limited_then_closed() {
    let (_redis, gw, _con) = start(DriverKind::Auto);
    let addr = gw.local_addr();
    let (mut c, _) = Client::connect(addr, "/ws");
    // The amplification loop: every subscribe would send a snapshot back.
    // (The server may close it before all are sent: sending stops there.)
    for i in 0..800 {
        let sub =
            format!(r#"{{"type":"subscribe","id":"s{i}","data":{{"channels":[1001,1002,2001]}}}}"#);
        let unsub = r#"{"type":"unsubscribe"}"#;
        if [sub.as_str(), unsub]
            .iter()
            .any(|m| c.ws.send(tungstenite::Message::text(*m)).is_err())
        {
            break;
        }
    }
    let (mut acks, mut limited) = (0, 0);
    let code = loop {
        match c.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let m: Json = serde_json::from_str(t.as_str()).unwrap();
                if m["type"] == "subscribe_ack" {
                    acks += 1;
                } else if m["data"]["code"] == "RATE_LIMITED" {
                    limited += 1;
                }
            }
            Ok(tungstenite::Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert!(acks <= 60, "{acks} subscriptions answered");
    // At most one RATE_LIMITED a second, never one per refused message.
    assert!((1..=3).contains(&limited), "{limited} RATE_LIMITED errors");
    assert_eq!(code, Some(1008));
    // Others are served as usual.
    let (mut other, _) = Client::connect(addr, "/ws");
    other.send(SEED_SUBSCRIBE);
    assert_eq!(other.recv_type("subscribe_ack")["data"]["total"], 2);
}

#[test]
fn a_flooding_client_that_reads_learns_why_it_was_cut_off() {
    for driver in [DriverKind::Uring, DriverKind::Legacy] {
        let (_redis, gw, _con) = start(driver);
        let addr = gw.local_addr();
        // A reader with a small receive buffer a moment behind (a phone on a slow link): part
        // of what the server sends waits in the server's send buffer, which a reset destroys.
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        let stream: std::net::TcpStream = sock.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (ws, _) = tungstenite::client::client(format!("ws://{addr}/ws"), stream).unwrap();
        let mut c = Client {
            ws,
            status: Json::Null,
        };
        assert_eq!(c.recv()["type"], "connected");
        // 5,000 messages in one burst from a second handle on the socket while this one reads.
        let mut burst = Vec::new();
        for i in 0..2500 {
            let sub = format!(
                r#"{{"type":"subscribe","id":"s{i}","data":{{"channels":[1001,1002,2001]}}}}"#
            );
            burst.extend_from_slice(&masked_text(sub.as_bytes()));
            burst.extend_from_slice(&masked_text(br#"{"type":"unsubscribe"}"#));
        }
        let mut w = c.ws.get_ref().try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            // The server stops reading at some point and closes: the rest may not go out.
            let _ = w.write_all(&burst);
        });
        std::thread::sleep(Duration::from_millis(500));
        let mut limited = 0;
        let code = loop {
            match c.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let m: Json = serde_json::from_str(t.as_str()).unwrap();
                    if m["data"]["code"] == "RATE_LIMITED" {
                        limited += 1;
                    }
                }
                Ok(tungstenite::Message::Close(f)) => break f.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(e) => panic!("{driver:?}: no close frame after {limited} RATE_LIMITED: {e}"),
            }
        };
        writer.join().unwrap();
        assert!(limited >= 1, "{driver:?}: {limited} RATE_LIMITED errors");
        assert_eq!(code, Some(1008), "{driver:?}");
    }
}

#[test]
fn one_subscribe_of_the_most_channels_allowed_is_answered_not_rate_limited() {
    let (_redis, gw, _con) = start(DriverKind::Auto);
    let (mut c, _) = Client::connect(gw.local_addr(), "/ws");
    let channels: Vec<u32> = (1001..2001).collect();
    assert_eq!(channels.len(), 1000);
    c.send_json(&json!({"type":"subscribe","id":"big","data":{"channels":channels}}));
    let ack = loop {
        let m = c.recv();
        assert_ne!(m["data"]["code"], "RATE_LIMITED", "{m}");
        if m["type"] == "subscribe_ack" {
            break m;
        }
    };
    assert_eq!(ack["data"]["total"], 2, "{ack}");
}
