//! History on a real InfluxDB (a private `influxd`, Debian's `influxdb` 1.x): values written
//! through `comsrv_write_data` come back from `GET /api/channels/{id}/history` with their
//! millisecond timestamps, in order, paged, downsampled and as CSV; InfluxDB stopped mid-run
//! loses nothing the buffer holds and catches up in order; beyond the buffer, drops are counted
//! exactly; bad parameters each get their 400.

mod common;

use common::*;
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::time::Duration;
use voltage_gateway::config::{Config, DriverKind};
use voltage_gateway::demo::{InfluxProcess, RedisProcess};
use voltage_gateway::Server;

fn influx() -> InfluxProcess {
    InfluxProcess::start()
        .expect("influxd (apt-get install influxdb) must be installed for the history tests")
}

fn start(redis: &RedisProcess, influx: &InfluxProcess, tune: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = config(&redis.url(), DriverKind::Auto);
    cfg.history.url = influx.url();
    cfg.history.batch_max_ms = 50;
    tune(&mut cfg);
    let gw = Server::start(cfg).expect("gateway starts");
    wait_until("redis healthy", Duration::from_secs(5), || {
        gw.published().redis.load().healthy
    });
    gw
}

fn history_status(addr: SocketAddr) -> Json {
    get_ok(addr, "/health/detailed")["data"]["dependencies"]["history"].clone()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits until InfluxDB answers again and the buffer is written.
fn wait_caught_up(addr: SocketAddr) {
    wait_until("caught up", Duration::from_secs(20), || {
        let h = history_status(addr);
        h["status"] == "healthy" && h["buffered_points"] == 0
    });
}

/// 1001 T point 1's recorded values from `t0` to now, in order (and the answer).
fn point_1_of_1001_since(addr: SocketAddr, t0: i64) -> (Vec<i64>, Json) {
    let t1 = now_secs() + 1;
    let r = get_ok(
        addr,
        &format!("/api/channels/1001/history?start_time={t0}&end_time={t1}&point_id=1&limit=1000"),
    );
    let got = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["values"]["1"].as_i64().unwrap())
        .collect();
    (got, r)
}

/// Every record of a range, following the pages.
fn all_pages(addr: SocketAddr, base: &str) -> (Vec<Json>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut path = base.to_string();
    loop {
        let r = get(addr, &path);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        pages += 1;
        out.extend(r.json()["data"].as_array().unwrap().iter().cloned());
        match r.header("x-history-next-after") {
            Some(after) => {
                assert_eq!(r.header("x-history-more").as_deref(), Some("true"));
                path = format!("{base}&after={after}");
            }
            None => return (out, pages),
        }
        assert!(pages < 1000, "paging ends");
    }
}

#[test]
fn recorded_values_come_back_in_order_with_millisecond_timestamps() {
    let redis = redis();
    let influx = influx();
    let gw = start(&redis, &influx, |_| {});
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    let t0 = now_secs();
    // 10 Hz: every write stays its own point (the seconds-only _timestamp would merge them).
    for i in 0..12 {
        write(
            &mut con,
            "comsrv:1001:T",
            &format!(r#"{{"1":{},"2":{}}}"#, 20 + i, f64::from(i) * 0.5),
            None,
        );
        if i % 3 == 0 {
            let s = if i % 2 == 0 {
                "open"
            } else {
                "closed, \"really\""
            };
            write(
                &mut con,
                "comsrv:1001:S",
                &json!({"11": s}).to_string(),
                None,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("history written", Duration::from_secs(10), || {
        history_status(addr)["written_points"].as_u64().unwrap_or(0) >= 12 * 2 + 4
    });
    let t1 = now_secs() + 1;
    let base = format!("/api/channels/1001/history?start_time={t0}&end_time={t1}");

    // Raw T records: the twelve writes, ascending, distinct millisecond timestamps.
    let t = get_ok(addr, &format!("{base}&data_type=T&limit=1000"));
    let recs = t["data"].as_array().unwrap();
    let ones: Vec<i64> = recs
        .iter()
        .filter_map(|r| r["values"]["1"].as_i64())
        .collect();
    assert_eq!(ones, (20..32).collect::<Vec<_>>(), "{t}");
    let stamps: Vec<i64> = recs
        .iter()
        .map(|r| r["timestamp"].as_i64().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    assert!(stamps[0] >= t0 * 1000 && stamps[0] < t1 * 1000);
    assert!(
        stamps.iter().any(|s| s % 1000 != 0),
        "millisecond timestamps"
    );
    assert!(recs
        .iter()
        .all(|r| r["channel_id"] == 1001 && r["data_type"] == "T"));
    assert_eq!(recs[11]["values"], json!({"1": 31, "2": 5.5}));

    // One point; text values; both types at once.
    let p2 = get_ok(addr, &format!("{base}&data_type=T&point_id=2&limit=1000"));
    assert!(p2["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["values"].as_object().unwrap().len() == 1));
    let s = get_ok(addr, &format!("{base}&data_type=S"));
    let texts: Vec<&str> = s["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["values"]["11"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["open", "closed, \"really\"", "open", "closed, \"really\""]
    );
    let both = get_ok(addr, &format!("{base}&limit=1000"));
    assert_eq!(both["data"].as_array().unwrap().len(), recs.len() + 4);

    // Pages of 5 cover the same records, none twice.
    let (paged, pages) = all_pages(addr, &format!("{base}&limit=5"));
    assert!(pages >= 3, "{pages} pages");
    assert_eq!(paged, *both["data"].as_array().unwrap());

    // Downsampled over the whole range: one bucket at start_time.
    let width = t1 - t0;
    let agg = |a: &str| {
        let r = get_ok(
            addr,
            &format!("{base}&data_type=T&point_id=1&interval={width}&agg={a}"),
        );
        let d = r["data"].as_array().unwrap().clone();
        assert_eq!(d.len(), 1, "{r}");
        assert_eq!(d[0]["timestamp"], t0 * 1000);
        d[0]["values"]["1"].as_f64().unwrap()
    };
    assert_eq!(agg("count"), 12.0);
    assert_eq!(agg("min"), 20.0);
    assert_eq!(agg("max"), 31.0);
    assert_eq!(agg("mean"), 25.5);
    assert_eq!(agg("last"), 31.0);
    // 1 s buckets: one record per non-empty second, counts adding up.
    let per_sec = get_ok(
        addr,
        &format!("{base}&data_type=T&point_id=1&interval=1&agg=count"),
    );
    let counts: f64 = per_sec["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["values"]["1"].as_f64().unwrap())
        .sum();
    assert_eq!(counts, 12.0);

    // CSV: one row per value, the same as JSON.
    let csv = get(addr, &format!("{base}&format=csv"));
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let text = String::from_utf8(csv.body.clone()).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp_ms,time,channel_id,data_type,point_id,value")
    );
    let rows: Vec<&str> = lines.collect();
    let json_values: usize = both["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["values"].as_object().unwrap().len())
        .sum();
    assert_eq!(rows.len(), json_values);
    let first = &both["data"][0];
    let row0: Vec<&str> = rows[0].splitn(6, ',').collect();
    assert_eq!(row0[0], first["timestamp"].to_string());
    assert_eq!(
        (row0[2], row0[3]),
        ("1001", first["data_type"].as_str().unwrap())
    );
    assert!(text.contains("\"closed, \"\"really\"\"\""), "{text}");
}

#[test]
fn bad_parameters_each_get_their_400() {
    let redis = redis();
    let influx = influx();
    let gw = start(&redis, &influx, |_| {});
    let addr = gw.local_addr();
    for (q, name) in [
        ("start_time=100&end_time=100", "start_time"),
        ("start_time=abc", "start_time"),
        ("end_time=1e9", "end_time"),
        ("start_time=0&end_time=99999999", "end_time"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("format=csv&limit=100001", "limit"),
        ("interval=60", "agg"),
        ("agg=mean", "interval"),
        ("interval=60&agg=median", "agg"),
        ("interval=0&agg=mean", "interval"),
        (
            "start_time=0&end_time=86400&interval=1&agg=mean",
            "interval",
        ),
        ("data_type=X", "data_type"),
        ("point_id=x", "point_id"),
        ("format=xml", "format"),
        ("after=yesterday", "after"),
        ("data_type=T&data_type=S", "data_type"),
    ] {
        let e =
            get(addr, &format!("/api/channels/1001/history?{q}")).error(400, "INVALID_PARAMETER");
        assert!(e["details"].as_str().unwrap().starts_with(name), "{q}: {e}");
    }
    // Injection attempts never reach InfluxQL: they are not numbers or known names.
    get(addr, "/api/channels/1001/history?data_type=T'%20OR%201=1").error(400, "INVALID_PARAMETER");
    get(addr, "/api/channels/1001%27/history").error(400, "INVALID_PARAMETER");
}

#[test]
fn influxdb_down_loses_nothing_the_buffer_holds_and_catches_up_in_order() {
    let redis = redis();
    let mut influx = influx();
    let dir = std::env::temp_dir().join(format!("voltage-history-buffer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gw = start(&redis, &influx, |c| {
        c.history.buffer_dir = dir.display().to_string()
    });
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    let t0 = now_secs();
    write(&mut con, "comsrv:1001:T", r#"{"1":0}"#, None);
    wait_until("first value written", Duration::from_secs(10), || {
        history_status(addr)["written_points"].as_u64().unwrap_or(0) >= 1
    });

    influx.stop();
    for i in 1..=20 {
        write(&mut con, "comsrv:1001:T", &format!(r#"{{"1":{i}}}"#), None);
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_until("buffered while down", Duration::from_secs(10), || {
        let h = history_status(addr);
        h["status"] == "unhealthy" && h["buffered_points"].as_u64().unwrap_or(0) >= 20
    });
    let d = get_ok(addr, "/health/detailed");
    assert_eq!(d["data"]["status"], "degraded", "{d}");
    assert_eq!(
        d["data"]["dependencies"]["history"]["dropped_points"], 0,
        "{d}"
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().count() > 0,
        "the buffer is on disk"
    );
    let e = get(addr, &format!("/api/channels/1001/history?start_time={t0}"))
        .error(503, "HISTORY_UNAVAILABLE");
    assert!(!e["details"].as_str().unwrap().is_empty());

    influx.restart().unwrap();
    wait_caught_up(addr);
    let (got, r) = point_1_of_1001_since(addr, t0);
    assert_eq!(got, (0..=20).collect::<Vec<_>>(), "{r}");
    assert_eq!(history_status(addr)["dropped_points"], 0);
    assert_eq!(
        get_ok(addr, "/health/detailed")["data"]["status"],
        "healthy"
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn beyond_the_buffer_drops_are_counted_exactly() {
    let redis = redis();
    let mut influx = influx();
    let gw = start(&redis, &influx, |c| c.history.buffer_max_bytes = 64 * 1024);
    let addr = gw.local_addr();
    wait_until("history up", Duration::from_secs(10), || {
        history_status(addr)["status"] == "healthy"
    });
    influx.stop();
    // 20,000 distinct points, each written once: exactly 20,000 values reach the recorder
    // however the feed groups them (about 230 KB of lines for a 64 KiB buffer).
    let mut con = redis_con(&redis);
    let t0 = now_secs();
    for ch in 7001..=7200 {
        let values: serde_json::Map<String, Json> = (1..=100)
            .map(|p| (p.to_string(), json!(ch * 1000 + p)))
            .collect();
        write(
            &mut con,
            &format!("comsrv:{ch}:T"),
            &Json::Object(values).to_string(),
            None,
        );
    }
    wait_until("dropped beyond the buffer", Duration::from_secs(10), || {
        let h = history_status(addr);
        h["dropped_points"].as_u64().unwrap_or(0) > 0
            && h["buffered_points"].as_u64().unwrap_or(0)
                + h["dropped_points"].as_u64().unwrap_or(0)
                == 20_000
    });
    let dropped = history_status(addr)["dropped_points"].as_u64().unwrap();
    influx.restart().unwrap();
    wait_caught_up(addr);
    let t1 = now_secs() + 1;
    let mut stored = 0u64;
    for ch in 7001..=7200 {
        let r = get_ok(
            addr,
            &format!(
                "/api/channels/{ch}/history?start_time={t0}&end_time={t1}&interval={}&agg=count",
                t1 - t0
            ),
        );
        for rec in r["data"].as_array().unwrap() {
            stored += rec["values"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>();
        }
    }
    assert_eq!(
        stored + dropped,
        20_000,
        "stored {stored}, dropped {dropped}"
    );
    let m = get(addr, "/metrics");
    let text = String::from_utf8(m.body).unwrap();
    assert!(
        text.contains(&format!("voltage_history_dropped_points_total {dropped}")),
        "{text}"
    );
}

#[test]
fn a_hung_influxdb_stalls_neither_the_feed_nor_the_clients() {
    let redis = redis();
    let influx = influx();
    let gw = start(&redis, &influx, |c| c.history.timeout_ms = 300);
    let addr = gw.local_addr();
    let mut con = redis_con(&redis);
    wait_until("history up", Duration::from_secs(10), || {
        history_status(addr)["status"] == "healthy"
    });
    let t0 = now_secs();
    influx.pause();
    // 10 Hz writes while InfluxDB accepts connections and answers nothing: REST still shows
    // each new value within a few collects.
    for i in 0..30 {
        write(&mut con, "comsrv:1001:T", &format!(r#"{{"1":{i}}}"#), None);
        wait_until("the value served live", Duration::from_secs(1), || {
            let r = get(addr, "/api/channels/1001/realtime?data_type=T");
            r.status == 200 && r.json()["data"][0]["values"]["1"] == i
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("marked down and buffering", Duration::from_secs(10), || {
        let h = history_status(addr);
        h["status"] == "unhealthy" && h["buffered_points"].as_u64().unwrap_or(0) > 0
    });
    influx.resume();
    wait_caught_up(addr);
    let (got, r) = point_1_of_1001_since(addr, t0);
    assert_eq!(got, (0..30).collect::<Vec<_>>(), "{r}");
    assert_eq!(history_status(addr)["dropped_points"], 0);
}

#[test]
fn two_gateways_recording_one_site_write_each_change_once() {
    let redis = redis();
    let influx = influx();
    let a = start(&redis, &influx, |c| c.control.instance_id = "gw_a".into());
    let b = start(&redis, &influx, |c| c.control.instance_id = "gw_b".into());
    let mut con = redis_con(&redis);
    let t0 = now_secs();
    let before = now_secs() * 1000;
    for i in 0..20 {
        write(&mut con, "comsrv:1001:T", &format!(r#"{{"1":{i}}}"#), None);
        std::thread::sleep(Duration::from_millis(20));
    }
    for gw in [&a, &b] {
        let addr = gw.local_addr();
        wait_until("both recorded all", Duration::from_secs(10), || {
            history_status(addr)["written_points"].as_u64().unwrap_or(0) >= 20
        });
    }
    // Each gateway wrote all 20; InfluxDB holds each change once, stamped with its write time.
    let (got, r) = point_1_of_1001_since(a.local_addr(), t0);
    assert_eq!(got, (0..20).collect::<Vec<i64>>(), "{r}");
    let times: Vec<i64> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["timestamp"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(times[0] >= before - 1000, "the write's own time: {times:?}");
    let (from_b, _) = point_1_of_1001_since(b.local_addr(), t0);
    assert_eq!(from_b, got);
}
