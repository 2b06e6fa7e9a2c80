//! The in-Redis business logic seen through the gateway: a model's output is a channel like
//! any device's (REST, WebSocket, removal when its inputs go), and an automation rule's
//! command goes through the control queue to its final state.

mod common;
#[path = "common/ws.rs"]
mod wsc;

use common::*;
use serde_json::{json, Value as Json};
use std::time::Duration;
use voltage_gateway::config::DriverKind;
use wsc::*;

fn fcall(con: &mut redis::Connection, f: &str, key: &str, arg: &Json) -> redis::Value {
    redis::cmd("FCALL")
        .arg(f)
        .arg(1)
        .arg(key)
        .arg(arg.to_string())
        .query(con)
        .unwrap_or_else(|e| panic!("{f}: {e}"))
}

#[test]
fn a_model_output_is_served_and_pushed_like_a_device_channel() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, trust);
    let addr = gw.local_addr();
    // Site total: 1001 T 1 + 1002 T 1 (the seed site: 25.6 + 25.6).
    fcall(
        &mut con,
        "modsrv_model_save",
        "model:site_total",
        &json!({"output":{"channel_id":5000,"data_type":"T","point_id":1},"op":"sum",
                "inputs":[{"channel_id":1001,"point_id":1},{"channel_id":1002,"point_id":1}]}),
    );
    wait_until("model channel listed", Duration::from_secs(3), || {
        channel_ids(addr).contains(&5000)
    });
    assert_eq!(
        get_ok(addr, "/api/channels/5000/realtime?data_type=T")["data"][0]["values"]["1"],
        51.2
    );
    let (mut c, _) = Client::connect(addr, "/ws");
    c.send(r#"{"type":"subscribe","id":"m","data":{"channels":[5000],"data_types":["T"],"interval":100}}"#);
    c.recv_type("subscribe_ack");
    assert_eq!(c.recv_type("data_update")["data"]["values"]["1"], 51.2);
    write(&mut con, "comsrv:1001:T", r#"{"1":30}"#, None);
    let m = c.recv_type("data_update");
    assert_eq!(m["data"]["channel_id"], 5000);
    assert_eq!(m["data"]["values"]["1"], 55.6);
    // An input without a value: the output is removed, and the subscriber is told.
    write(&mut con, "comsrv:1002:T", r#"{"1":"offline"}"#, None);
    let removed = c.recv_type("data_removed");
    assert_eq!(
        removed["data"]["removed"],
        json!([{"channel_id":5000,"data_type":"T","points":[1]}])
    );
}

#[test]
fn a_rule_queues_a_command_that_reaches_its_final_state() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, trust);
    let addr = gw.local_addr();
    // When 1001's temperature passes 40, lower 2001's set-point to 10.
    fcall(
        &mut con,
        "rulesrv_rule_save",
        "rule:cool_down",
        &json!({"conditions":[{"channel_id":1001,"point_id":1,"operator":">","threshold":40}],
                "action":{"type":"control","channel_id":2001,"point_id":20,"command_type":"set_value","value":10}}),
    );
    write(&mut con, "comsrv:1001:T", r#"{"1":41}"#, None);
    let todo: Vec<String> = redis::cmd("LRANGE")
        .arg("comsrv:2001:A:TODO")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(todo.len(), 1, "one command queued by the rule");
    let entry: Json = serde_json::from_str(&todo[0]).unwrap();
    let id = entry["command_id"].as_str().unwrap().to_string();
    let rec = get_ok(addr, &format!("/api/commands/{id}"))["data"].clone();
    assert_eq!(
        (rec["status"].as_str(), rec["origin"].as_str()),
        (Some("queued"), Some("rule:cool_down"))
    );
    // The device executes it; the actual value reaches the site like any write.
    let status: String = redis::cmd("FCALL")
        .arg("control_report")
        .arg(1)
        .arg(format!("cmd:{id}"))
        .arg(r#"{"success":true,"actual_value":10}"#)
        .query(&mut con)
        .unwrap();
    assert_eq!(status, "executed");
    let rec = get_ok(addr, &format!("/api/commands/{id}?wait=2000"))["data"].clone();
    assert_eq!(rec["status"], "executed");
    wait_until("set-point written", Duration::from_secs(3), || {
        get_ok(addr, "/api/channels/2001/realtime?data_type=A")["data"][0]["values"]["20"] == 10
    });
    // A rule's command that nobody executes times out (every gateway sweeps them), once.
    write(&mut con, "comsrv:1001:T", r#"{"1":20}"#, None);
    let _: () = redis::cmd("DEL")
        .arg("comsrv:2001:A:TODO")
        .query(&mut con)
        .unwrap();
    write(&mut con, "comsrv:1001:T", r#"{"1":42}"#, None);
    let again: Vec<String> = redis::cmd("LRANGE")
        .arg("comsrv:2001:A:TODO")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    let id2 = serde_json::from_str::<Json>(&again[0]).unwrap()["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    let _: () = redis::cmd("HSET")
        .arg(format!("cmd:{id2}"))
        .arg("deadline")
        .arg(1)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("cmd:pending:rules")
        .arg(1)
        .arg(&id2)
        .query(&mut con)
        .unwrap();
    wait_until("timed out by the sweep", Duration::from_secs(3), || {
        get_ok(addr, &format!("/api/commands/{id2}"))["data"]["status"] == "timeout"
    });
}

/// `{method} {path}` with a JSON body.

#[test]
fn models_rules_and_destinations_over_http() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, trust);
    let addr = gw.local_addr();
    // A model: created, effective at once (its output is served), listed, replaced, deleted.
    let model = r#"{"output":{"channel_id":5000,"point_id":1},"op":"avg","inputs":[{"channel_id":1001,"point_id":1},{"channel_id":1002,"point_id":1}]}"#;
    let r = send(addr, "PUT", "/api/models/avg_temp", model);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"], json!({"id":"avg_temp","value":25.6}));
    wait_until("model output served", Duration::from_secs(3), || {
        get(addr, "/api/channels/5000/realtime?data_type=T").status == 200
    });
    let list = get_ok(addr, "/api/models");
    assert_eq!(list["message"], "Found 1 models");
    assert_eq!(list["data"][0]["id"], "avg_temp");
    assert_eq!(list["data"][0]["op"], "avg");
    assert_eq!(
        get_ok(addr, "/api/models/avg_temp")["data"]["output"],
        "5000:T:1"
    );
    // Refusals name the field; nothing changes.
    send(addr, "PUT", "/api/models/bad", r#"{"output":{"channel_id":5000,"point_id":2},"op":"sum","inputs":[{"channel_id":4242,"point_id":1}]}"#)
        .error(400, "INVALID_PARAMETER");
    let cycle = send(addr, "PUT", "/api/models/loop", r#"{"output":{"channel_id":1001,"point_id":1},"op":"scale","inputs":[{"channel_id":5000,"point_id":1}]}"#)
        .error(400, "INVALID_PARAMETER");
    assert!(
        cycle["details"].as_str().unwrap().contains("cycle"),
        "{cycle}"
    );
    get(addr, "/api/models/nope").error(404, "NOT_FOUND");
    get(addr, "/api/models/a%20b").error(400, "INVALID_PARAMETER");
    assert_eq!(
        send(addr, "DELETE", "/api/models/avg_temp", "").json()["data"]["deleted"],
        true
    );
    send(addr, "DELETE", "/api/models/avg_temp", "").error(404, "NOT_FOUND");
    // A rule and its firing log.
    let rule = r#"{"conditions":[{"channel_id":1001,"point_id":2,"operator":">","threshold":200}],"action":{"type":"event","message":"pressure high","level":2}}"#;
    assert_eq!(send(addr, "PUT", "/api/rules/pressure", rule).status, 200);
    send(addr, "PUT", "/api/rules/bad", r#"{"conditions":[{"channel_id":1001,"point_id":2,"operator":"~","threshold":1}],"action":{"type":"event"}}"#)
        .error(400, "INVALID_PARAMETER");
    write(&mut con, "comsrv:1001:T", r#"{"2":250}"#, None);
    let firings = get_ok(addr, "/api/rules/firings?limit=10")["data"].clone();
    let f = &firings["firings"][0];
    assert_eq!(
        (f["rule_id"].as_str(), f["message"].as_str()),
        (Some("pressure"), Some("pressure high"))
    );
    assert_eq!(f["values"], "1001:T:2=250");
    assert!(f["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(get_ok(addr, "/api/rules")["data"][0]["id"], "pressure");
    // A destination and its counters.
    assert_eq!(
        send(
            addr,
            "PUT",
            "/api/forwarding/cloud",
            r#"{"channels":[1001],"data_types":["T"],"maxlen":5}"#
        )
        .status,
        200
    );
    for v in 0..20 {
        write(&mut con, "comsrv:1001:T", &format!(r#"{{"3":{v}}}"#), None);
    }
    let d = get_ok(addr, "/api/forwarding/cloud")["data"].clone();
    assert_eq!(d["stats_appended"], 20, "{d}");
    let trimmed = d["stats_trimmed"].as_i64().unwrap_or(0);
    let kept: i64 = redis::cmd("XLEN")
        .arg("forward:cloud:stream")
        .query(&mut con)
        .unwrap();
    assert_eq!(trimmed + kept, 20, "counters add up");
    // A body that is not a JSON object is refused before Redis sees it (it used to be saved
    // as an array, or answered 503 when not UTF-8).
    for body in ["[null,null]", "7", "{nope", "\"x\""] {
        send(addr, "PUT", "/api/forwarding/cloud", body).error(400, "INVALID_JSON");
    }
    let garbage = b"PUT /api/forwarding/4E HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\n\xff\xfe{";
    raw(addr, garbage).error(400, "INVALID_JSON");
    let e = send(addr, "PUT", "/api/forwarding/cloud", r#"{"channels":{}}"#)
        .error(400, "INVALID_PARAMETER");
    assert!(
        e["details"].as_str().unwrap().starts_with("channels"),
        "{e}"
    );
    assert_eq!(get_ok(addr, "/api/forwarding/cloud")["data"]["maxlen"], 5);
    get(addr, "/api/forwarding/4E").error(404, "NOT_FOUND");
    let r = get(addr, "/api/models/x");
    assert_eq!(r.status, 404);
    let r = send(addr, "POST", "/api/models/x", "{}");
    assert_eq!(r.status, 405);
    assert_eq!(
        r.header("allow").as_deref(),
        Some("GET, HEAD, PUT, DELETE, OPTIONS")
    );
}
