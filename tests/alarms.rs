//! Alarms end to end: rules saved through the library, values written by a device link, the
//! `alarm` push on every alarm-receiving connection (both shards), the active set, replay
//! after a reconnect (`alarms_since`, across a gateway restart), the REST routes.

mod common;
#[path = "common/ws.rs"]
mod wsc;

use common::*;
use serde_json::{json, Value as Json};
use std::time::Duration;
use voltage_gateway::config::DriverKind;
use wsc::*;

/// The seed's rule: channel 1001 telemetry point 1 above 90 is a level-2 alarm.
fn save_rule(con: &mut redis::Connection, id: &str, rule: &Json) -> i64 {
    redis::cmd("FCALL")
        .arg("alarmsrv_rule_save")
        .arg(1)
        .arg(format!("alarm:rule:{id}"))
        .arg(rule.to_string())
        .query(con)
        .expect("alarmsrv_rule_save")
}

fn hot_rule() -> Json {
    json!({"channel_id":1001,"data_type":"T","point_id":1,"operator":">","threshold":90,
           "level":2,"message":"Temperature exceeds threshold","deadband":2})
}

/// The next `alarm` message, skipping others.
fn next_alarm(c: &mut Client) -> Json {
    c.recv_type("alarm")
}

fn set_temp(con: &mut redis::Connection, v: f64) {
    write(con, "comsrv:1001:T", &format!(r#"{{"1":{v}}}"#), None);
}

#[test]
fn an_alarm_reaches_every_alarm_screen_on_both_shards_and_recovers() {
    let (_redis, gw, mut con) = start(DriverKind::Auto);
    let addr = gw.local_addr();
    save_rule(&mut con, "hot", &hot_rule());
    // Enough connections that both shards hold some of each kind.
    let mut general: Vec<Client> = (0..4).map(|_| Client::connect(addr, "/ws").0).collect();
    let mut alarm_only: Vec<Client> = (0..4)
        .map(|_| Client::connect(addr, "/ws?data_type=alarm").0)
        .collect();
    let (mut realtime, _) = Client::connect(addr, "/ws?data_type=realtime");
    set_temp(&mut con, 95.5);
    let mut trigger = None;
    for c in general.iter_mut().chain(&mut alarm_only) {
        let m = next_alarm(c);
        let d = &m["data"];
        assert_eq!(d["status"], 1, "{m}");
        assert_eq!(d["level"], 2);
        assert_eq!(d["value"], 95.5);
        assert_eq!(d["channel_id"], 1001);
        assert_eq!(d["point_id"], 1);
        assert_eq!(d["message"], "Temperature exceeds threshold");
        assert!(d["alarm_id"].as_str().unwrap().starts_with("ALM_"));
        let id = d["event_id"].as_str().unwrap();
        assert_eq!(m["id"], format!("alarm_{id}"));
        // One shared frame: every client got the same bytes.
        assert!(trigger.get_or_insert_with(|| m.clone()) == &m);
    }
    let trigger = trigger.unwrap();
    // Same side of the threshold (and inside the deadband): nothing.
    set_temp(&mut con, 97.0);
    set_temp(&mut con, 89.0);
    set_temp(&mut con, 80.0);
    for c in general.iter_mut().chain(&mut alarm_only) {
        let m = next_alarm(c);
        assert_eq!(
            m["data"]["status"], 0,
            "the next alarm is the recovery: {m}"
        );
        assert_eq!(m["data"]["alarm_id"], trigger["data"]["alarm_id"]);
        assert_eq!(m["data"]["value"], 80);
    }
    // A realtime connection gets no alarms (its next message is the pong).
    realtime.send(r#"{"type":"ping","id":"ping_1"}"#);
    assert_eq!(realtime.recv()["type"], "pong");
}

#[test]
fn a_new_connection_is_sent_the_active_alarms_and_rest_lists_them() {
    let (_redis, gw, mut con) = start(DriverKind::Auto);
    let addr = gw.local_addr();
    save_rule(&mut con, "hot", &hot_rule());
    let low = json!({"channel_id":1002,"data_type":"T","point_id":2,"operator":"<","threshold":0,
                     "level":1,"message":"Low"});
    save_rule(&mut con, "low", &low);
    set_temp(&mut con, 99.0);
    write(&mut con, "comsrv:1002:T", r#"{"2":-1}"#, None);
    wait_until("two active alarms", Duration::from_secs(5), || {
        get(addr, "/api/alarms/active").json()["data"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
    let (mut c, _) = Client::connect(addr, "/ws");
    let first = c.recv();
    let second = c.recv();
    assert_eq!(
        (first["type"].as_str(), second["type"].as_str()),
        (Some("alarm"), Some("alarm"))
    );
    assert_eq!(first["data"]["rule_id"], "hot", "oldest first");
    assert_eq!(second["data"]["rule_id"], "low");
    let active = get_ok(addr, "/api/alarms/active");
    assert_eq!(active["message"], "Found 2 active alarms");
    let a = &active["data"][0];
    assert_eq!(a["alarm_id"], first["data"]["alarm_id"]);
    assert_eq!(a["value"], 99);
    assert!(a["triggered_at"].as_str().unwrap().ends_with('Z'));
    // Recovery empties the set.
    set_temp(&mut con, 10.0);
    assert_eq!(next_alarm(&mut c)["data"]["status"], 0);
    wait_until("one active alarm", Duration::from_secs(5), || {
        get_ok(addr, "/api/alarms/active")["data"]
            .as_array()
            .unwrap()
            .len()
            == 1
    });
}

#[test]
fn the_event_log_pages_through_rest() {
    let (_redis, gw, mut con) = start(DriverKind::Auto);
    let addr = gw.local_addr();
    save_rule(&mut con, "hot", &hot_rule());
    for i in 0..5 {
        set_temp(&mut con, 95.0 + f64::from(i));
        set_temp(&mut con, 10.0);
    }
    let all = get_ok(addr, "/api/alarms/events?limit=1000")["data"].clone();
    assert_eq!(all["events"].as_array().unwrap().len(), 10);
    assert_eq!(all["more"], false);
    let mut since = String::new();
    let mut seen = Vec::new();
    loop {
        let page =
            get_ok(addr, &format!("/api/alarms/events?limit=3&since={since}"))["data"].clone();
        for e in page["events"].as_array().unwrap() {
            seen.push(e["event_id"].as_str().unwrap().to_string());
        }
        since = page["next_since"].as_str().unwrap().to_string();
        assert_eq!(page["gap"], false);
        if page["more"] == false {
            break;
        }
    }
    let expect: Vec<String> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, expect, "pages cover the log exactly once, in order");
    let statuses: Vec<i64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
    get(addr, "/api/alarms/events?since=nope").error(400, "INVALID_PARAMETER");
    get(addr, "/api/alarms/events?limit=0").error(400, "INVALID_PARAMETER");
}

#[test]
fn alarms_since_replays_exactly_what_was_missed_across_a_gateway_restart() {
    let redis = redis();
    let gw = gateway(&redis, DriverKind::Auto);
    let mut con = redis_con(&redis);
    save_rule(&mut con, "hot", &hot_rule());
    let (mut c, _) = Client::connect(gw.local_addr(), "/ws?client_id=board");
    set_temp(&mut con, 95.0);
    let seen = next_alarm(&mut c);
    let since = seen["data"]["event_id"].as_str().unwrap().to_string();
    drop(c);
    gw.shutdown();
    // While no gateway runs: a recovery and a new trigger.
    set_temp(&mut con, 10.0);
    set_temp(&mut con, 96.0);
    let gw = gateway(&redis, DriverKind::Auto);
    let addr = gw.local_addr();
    wait_until("alarms loaded", Duration::from_secs(5), || {
        get(addr, "/api/alarms/active").status == 200
    });
    let (mut c, _) = Client::connect(addr, &format!("/ws?client_id=board&alarms_since={since}"));
    // Live events while (and after) the replay is served follow it without a gap.
    set_temp(&mut con, 10.0);
    let got: Vec<Json> = (0..3).map(|_| c.recv()).collect();
    let kinds: Vec<(&str, i64)> = got
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap(),
                m["data"]["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("alarm", 0), ("alarm", 1), ("alarm", 0)],
        "no preamble, exactly the missed events, then live: {got:?}"
    );
    assert_eq!(got[0]["data"]["alarm_id"], seen["data"]["alarm_id"]);
    let ids: Vec<&str> = got
        .iter()
        .map(|m| m["data"]["event_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > since.as_str(),
        "{ids:?}"
    );
    // Nothing more (no duplicate of the live one).
    c.send(r#"{"type":"ping","id":"ping_x"}"#);
    assert_eq!(c.recv()["type"], "pong");
}

#[test]
fn alarms_since_older_than_the_log_is_told_and_gets_the_active_alarms() {
    let (_redis, gw, mut con) = start(DriverKind::Auto);
    let addr = gw.local_addr();
    save_rule(&mut con, "hot", &hot_rule());
    let (mut c, _) = Client::connect(addr, "/ws");
    set_temp(&mut con, 95.0);
    let old = next_alarm(&mut c)["data"]["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    set_temp(&mut con, 10.0);
    set_temp(&mut con, 97.0);
    next_alarm(&mut c);
    let current = next_alarm(&mut c);
    // The log loses the events after `old` (as MAXLEN trimming would).
    let _: i64 = redis::cmd("XTRIM")
        .arg("alarm:events")
        .arg("MAXLEN")
        .arg(1)
        .query(&mut con)
        .unwrap();
    let (mut late, _) = Client::connect(addr, &format!("/ws?alarms_since={old}"));
    let resync = late.recv();
    assert_eq!(resync["type"], "alarm_resync", "{resync}");
    assert_eq!(resync["data"]["since"], old.as_str());
    assert_eq!(resync["data"]["active"], 1);
    assert_eq!(
        resync["data"]["oldest_event_id"],
        current["data"]["event_id"]
    );
    let active = late.recv();
    assert_eq!(active["data"]["alarm_id"], current["data"]["alarm_id"]);
    // A malformed id is refused at the upgrade.
    let r = get(addr, "/ws?alarms_since=yesterday");
    assert_eq!(r.status, 400);
}

#[test]
fn a_gateway_loading_the_library_over_an_older_one_rebuilds_what_writes_feed() {
    let redis = redis();
    let mut con = redis_con(&redis);
    // A site whose rule predates lib:hooks (library < v13): the index exists, the hooks do not.
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(voltage_gateway::feed::library::SOURCE)
        .query(&mut con)
        .unwrap();
    write(&mut con, "comsrv:1001:T", r#"{"1":20}"#, None);
    save_rule(&mut con, "hot", &hot_rule());
    let _: () = redis::cmd("DEL").arg("lib:hooks").query(&mut con).unwrap();
    let _: () = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg("voltage")
        .query(&mut con)
        .unwrap();
    let gw = gateway(&redis, DriverKind::Auto);
    let addr = gw.local_addr();
    write(&mut con, "comsrv:1001:T", r#"{"1":99}"#, None);
    wait_until("the alarm fires", Duration::from_secs(5), || {
        get(addr, "/api/alarms/active").json()["data"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
}

#[test]
fn alarm_rules_over_http_are_validated_and_effective_at_once() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, trust);
    let addr = gw.local_addr();
    set_temp(&mut con, 50.0);
    let (mut c, _) = Client::connect(addr, "/ws?data_type=alarm");
    let r = send(
        addr,
        "PUT",
        "/api/alarms/rules/hot",
        &hot_rule().to_string(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let list = get_ok(addr, "/api/alarms/rules");
    assert_eq!(list["data"][0]["id"], "hot");
    assert_eq!(list["data"][0]["threshold"], 90);
    assert_eq!(list["message"], "Found 1 alarm rules");
    assert_eq!(
        get_ok(addr, "/api/alarms/rules/hot")["data"]["operator"],
        ">"
    );
    // Effective at once: the next write past the threshold alarms.
    set_temp(&mut con, 95.5);
    let a = next_alarm(&mut c);
    assert_eq!(
        (a["data"]["rule_id"].as_str(), a["data"]["status"].as_i64()),
        (Some("hot"), Some(1))
    );
    // Each refusal names the field; nothing changes.
    for (body, field) in [
        (
            json!({"channel_id":1001,"data_type":"T","point_id":1,"operator":"~","threshold":1}),
            "operator",
        ),
        (
            json!({"channel_id":1001,"data_type":"X","point_id":1,"operator":">","threshold":1}),
            "data_type",
        ),
        (
            json!({"channel_id":0,"data_type":"T","point_id":1,"operator":">","threshold":1}),
            "channel_id",
        ),
        (
            json!({"channel_id":1001,"data_type":"T","point_id":1,"operator":">","threshold":"hot"}),
            "threshold",
        ),
        (
            json!({"channel_id":1001,"data_type":"T","point_id":1,"operator":">","threshold":1,"level":7}),
            "level",
        ),
    ] {
        let e = send(addr, "PUT", "/api/alarms/rules/bad", &body.to_string())
            .error(400, "INVALID_PARAMETER");
        assert!(
            e["details"].as_str().unwrap().contains(field),
            "{field}: {e}"
        );
    }
    send(addr, "GET", "/api/alarms/rules/bad", "").error(404, "NOT_FOUND");
    // Deleting the rule ends its active alarm (a recovery) and removes it.
    let d = send(addr, "DELETE", "/api/alarms/rules/hot", "").json();
    assert_eq!(d["data"]["deleted"], true);
    let a = next_alarm(&mut c);
    assert_eq!(a["data"]["status"], 0);
    send(addr, "DELETE", "/api/alarms/rules/hot", "").error(404, "NOT_FOUND");
    assert_eq!(get_ok(addr, "/api/alarms/rules")["data"], json!([]));
}

#[test]
fn acknowledging_an_active_alarm_is_recorded_once_and_pushed() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, trust);
    let addr = gw.local_addr();
    save_rule(&mut con, "hot", &hot_rule());
    let (mut c, _) = Client::connect(addr, "/ws?data_type=alarm");
    set_temp(&mut con, 95.5);
    let a = next_alarm(&mut c);
    let alarm_id = a["data"]["alarm_id"].as_str().unwrap().to_string();
    let trigger_event = a["data"]["event_id"].as_str().unwrap().to_string();
    let active = get_ok(addr, "/api/alarms/active");
    assert_eq!(active["data"][0]["acknowledged"], false);

    let r = send(addr, "POST", &format!("/api/alarms/{alarm_id}/ack"), "");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let d = r.json()["data"].clone();
    assert_eq!(d["acknowledged_by"], "anonymous");
    assert_eq!(d["already"], false);
    let m = c.recv_type("alarm_ack");
    assert_eq!(m["data"]["alarm_id"], alarm_id.as_str());
    assert_eq!(m["data"]["acknowledged_by"], "anonymous");
    assert_eq!(m["data"]["acknowledged_at"], d["acknowledged_at"]);
    let active = get_ok(addr, "/api/alarms/active");
    assert_eq!(active["data"][0]["acknowledged"], true);
    assert_eq!(active["data"][0]["acknowledged_by"], "anonymous");
    assert_eq!(active["data"][0]["status"], 1, "still active");
    // Once: a second acknowledgement says so and pushes nothing.
    let again = send(addr, "POST", &format!("/api/alarms/{alarm_id}/ack"), "").json();
    assert_eq!(again["data"]["already"], true);
    assert_eq!(again["data"]["acknowledged_at"], d["acknowledged_at"]);
    send(addr, "POST", "/api/alarms/ALM_999999/ack", "").error(404, "NOT_FOUND");
    send(addr, "POST", "/api/alarms/nope/ack", "").error(400, "INVALID_PARAMETER");
    send(addr, "GET", &format!("/api/alarms/{alarm_id}/ack"), "").error(405, "METHOD_NOT_ALLOWED");
    // A new connection's preamble shows it acknowledged; a replay from the trigger has the
    // acknowledgement in order.
    let (mut fresh, _) = Client::connect(addr, "/ws?data_type=alarm");
    let pre = next_alarm(&mut fresh);
    assert_eq!(pre["data"]["acknowledged_by"], "anonymous");
    let (mut back, _) = Client::connect(
        addr,
        &format!("/ws?data_type=alarm&alarms_since={trigger_event}"),
    );
    let replayed = back.recv();
    assert_eq!(replayed["type"], "alarm_ack", "{replayed}");
    // The event log has it (status 2), and the recovery ends the acknowledged alarm.
    let log = get_ok(addr, "/api/alarms/events");
    let statuses: Vec<i64> = log["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [1, 2]);
    set_temp(&mut con, 50.0);
    let rec = next_alarm(&mut c);
    assert_eq!(rec["data"]["status"], 0);
    assert_eq!(get_ok(addr, "/api/alarms/active")["data"], json!([]));
}
