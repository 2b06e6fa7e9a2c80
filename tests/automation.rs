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
    let (_redis, gw, mut con) = start(DriverKind::Auto);
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
    let (_redis, gw, mut con) = start(DriverKind::Auto);
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
