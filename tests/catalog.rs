//! Channel and point definitions over HTTP, end to end: a configured channel is known to REST
//! and subscriptions before its first write; a point table round-trips as JSON and CSV and its
//! limits refuse control values outside them; every refusal names the field.

mod common;
#[path = "common/ws.rs"]
mod wsc;

use common::*;
use serde_json::json;
use voltage_gateway::config::DriverKind;
use wsc::*;

#[test]
fn a_configured_channel_is_known_before_its_first_write() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, trust);
    let addr = gw.local_addr();
    get(addr, "/api/channels/4242/status").error(404, "CHANNEL_NOT_FOUND");
    let r = send(
        addr,
        "PUT",
        "/api/config/channels/4242",
        r#"{"name":"Meter 7","device_kind":"meter","description":"feeder 2"}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["name"], "Meter 7");
    let list = get_ok(addr, "/api/config/channels");
    assert_eq!(
        list["data"],
        json!([{"channel_id":4242,"name":"Meter 7","description":"feeder 2","device_kind":"meter","enabled":true}])
    );
    assert_eq!(
        get_ok(addr, "/api/config/channels/4242")["data"]["device_kind"],
        "meter"
    );
    // Known at once: listed, its status served, subscribable.
    let st = get_ok(addr, "/api/channels/4242/status");
    assert_eq!(st["data"]["active_points"], 0);
    assert!(channel_ids(addr).contains(&4242));
    assert_eq!(
        get_ok(addr, "/api/channels/4242/realtime")["data"],
        json!([])
    );
    let (mut c, _) = Client::connect(addr, "/ws");
    c.send(r#"{"type":"subscribe","id":"s1","data":{"channels":[4242],"interval":100}}"#);
    let ack = c.recv_type("subscribe_ack");
    assert_eq!(ack["data"]["subscribed"], json!([4242]), "{ack}");
    assert_eq!(ack["data"]["failed"], json!([]));
    // Its first write reaches the subscriber.
    write(&mut con, "comsrv:4242:T", r#"{"1":230.5}"#, None);
    let m = c.recv_type("data_update");
    assert_eq!(m["data"]["values"], json!({"1":230.5}));
    // Refusals name the field; deleting unconfigures it.
    let e = send(addr, "PUT", "/api/config/channels/4243", r#"{"name":""}"#)
        .error(400, "INVALID_PARAMETER");
    assert!(e["details"].as_str().unwrap().starts_with("name"), "{e}");
    send(addr, "PUT", "/api/config/channels/0", r#"{"name":"x"}"#).error(400, "INVALID_PARAMETER");
    send(addr, "PUT", "/api/config/channels/4243", "{nope").error(400, "INVALID_JSON");
    // Unknown properties are ignored whatever their value, even an integer beyond 64 bits.
    let big = r#"{"x":-51861110584153047040,"y":[1e300,18446744073709551616],"name":"Spare"}"#;
    let r = send(addr, "PUT", "/api/config/channels/4243", big);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        get_ok(addr, "/api/config/channels/4243")["data"]["name"],
        "Spare"
    );
    send(addr, "DELETE", "/api/config/channels/4243", "");
    send(addr, "PUT", "/api/config/channels", r#"{"name":"x"}"#).error(405, "METHOD_NOT_ALLOWED");
    send(addr, "GET", "/api/config/channels/4243", "").error(404, "NOT_FOUND");
    assert_eq!(
        send(addr, "DELETE", "/api/config/channels/4242", "").json()["data"]["deleted"],
        true
    );
    send(addr, "DELETE", "/api/config/channels/4242", "").error(404, "NOT_FOUND");
    assert_eq!(get_ok(addr, "/api/config/channels")["data"], json!([]));
}

#[test]
fn point_tables_round_trip_as_json_and_csv_and_limit_control_values() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, trust);
    let addr = gw.local_addr();
    let table = json!([
        {"data_type":"A","point_id":20,"name":"Power set-point","unit":"kW","min":0,"max":100},
        {"data_type":"T","point_id":1,"name":"Temperature, cell max","unit":"°C","scale":0.1}
    ]);
    let r = send(
        addr,
        "PUT",
        "/api/config/channels/2001/points",
        &table.to_string(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"], json!({"channel_id":2001,"points":2}));
    let got = get_ok(addr, "/api/config/channels/2001/points");
    assert_eq!(
        got["data"][0],
        json!({"data_type":"T","point_id":1,"name":"Temperature, cell max","unit":"°C","scale":0.1,"min":null,"max":null})
    );
    assert_eq!(got["data"][1]["max"], 100);
    // Control values outside the limits are refused by the library: nothing queued.
    let control = |v: f64| {
        send(
            addr,
            "POST",
            "/api/control",
            &json!({"channel_id":2001,"point_id":20,"command_type":"set_value","value":v})
                .to_string(),
        )
    };
    let e = control(150.0).error(400, "INVALID_PARAMETER");
    assert!(
        e["details"].as_str().unwrap().contains("outside [0, 100]"),
        "{e}"
    );
    let (mut c, _) = Client::connect(addr, "/ws");
    c.send(r#"{"type":"control","id":"c1","data":{"channel_id":2001,"point_id":20,"command_type":"set_value","value":-5}}"#);
    let err = c.recv_type("error");
    assert_eq!(err["data"]["code"], "INVALID_PARAMETER");
    let queued: i64 = redis::cmd("LLEN")
        .arg("comsrv:2001:A:TODO")
        .query(&mut con)
        .unwrap();
    assert_eq!(queued, 0);
    assert_eq!(control(42.0).status, 202);

    // CSV: exported sorted with a header; imported back it replaces the table.
    let csv = get(addr, "/api/config/channels/2001/points.csv");
    assert_eq!(csv.status, 200);
    assert_eq!(
        csv.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    let text = String::from_utf8(csv.body.clone()).unwrap();
    assert_eq!(
        text,
        "data_type,point_id,name,unit,scale,min,max\r\nT,1,\"Temperature, cell max\",°C,0.1,,\r\nA,20,Power set-point,kW,1,0,100\r\n"
    );
    let edited = text.replace(
        "A,20,Power set-point,kW,1,0,100",
        "A,20,Power set-point,kW,1,0,40\r\nS,5,Breaker,,1,,",
    );
    let r = send(addr, "PUT", "/api/config/channels/2001/points.csv", &edited);
    assert_eq!(r.json()["data"]["points"], 3);
    assert_eq!(
        get_ok(addr, "/api/config/channels/2001/points")["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    control(42.0).error(400, "INVALID_PARAMETER");
    for (bad, field) in [
        ("nope\n", "csv"),
        (
            "data_type,point_id,name,unit,scale,min,max\nT,1,a,,,9,1\n",
            "line 2 min",
        ),
        (
            "data_type,point_id,name,unit,scale,min,max\nT,1,a,,,,\nX,2,b,,,,\n",
            "line 3 data_type",
        ),
    ] {
        let e = send(addr, "PUT", "/api/config/channels/2001/points.csv", bad)
            .error(400, "INVALID_PARAMETER");
        assert!(
            e["details"].as_str().unwrap().starts_with(field),
            "{field}: {e}"
        );
    }
    let e = send(
        addr,
        "PUT",
        "/api/config/channels/2001/points",
        r#"[{"data_type":"A","point_id":20}]"#,
    )
    .error(400, "INVALID_PARAMETER");
    assert!(
        e["details"].as_str().unwrap().starts_with("[0].name"),
        "{e}"
    );
    assert_eq!(
        get_ok(addr, "/api/config/channels/2001/points")["data"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "refusals change nothing"
    );
    // Text a spreadsheet would run as a formula — a tab-led one too — is exported neutralised
    // and imported back as it was.
    let table = json!([{"data_type":"S","point_id":5,"name":"\t=1+1","unit":"@x"}]);
    let r = send(
        addr,
        "PUT",
        "/api/config/channels/2001/points",
        &table.to_string(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let csv = String::from_utf8(get(addr, "/api/config/channels/2001/points.csv").body).unwrap();
    assert!(csv.contains("S,5,\"'\t=1+1\",\"'@x\","), "{csv:?}");
    send(addr, "PUT", "/api/config/channels/2001/points.csv", &csv);
    let back = get_ok(addr, "/api/config/channels/2001/points")["data"][0].clone();
    assert_eq!(
        (back["name"].as_str(), back["unit"].as_str()),
        (Some("\t=1+1"), Some("@x"))
    );
    // An empty table removes the limits.
    send(addr, "PUT", "/api/config/channels/2001/points", "[]");
    assert_eq!(control(1000.0).status, 202);
}

#[test]
fn a_channels_points_carry_their_configured_names_units_and_current_values() {
    let (_redis, gw, mut con) = start_with(DriverKind::Auto, trust);
    let addr = gw.local_addr();
    get(addr, "/api/channels/4400/points").error(404, "CHANNEL_NOT_FOUND");
    get(addr, "/api/channels/abc/points").error(400, "INVALID_PARAMETER");
    write(&mut con, "comsrv:4400:T", r#"{"1":230.5,"2":49.98}"#, None);
    wait_until("4400 known", std::time::Duration::from_secs(3), || {
        channel_ids(addr).contains(&4400)
    });
    // Written but not configured: values, no names.
    assert_eq!(
        get_ok(addr, "/api/channels/4400/points")["data"],
        json!([
            {"data_type":"T","point_id":1,"name":null,"unit":null,"value":230.5},
            {"data_type":"T","point_id":2,"name":null,"unit":null,"value":49.98}
        ])
    );
    let r = send(
        addr,
        "PUT",
        "/api/config/channels/4400/points",
        r#"[{"data_type":"T","point_id":1,"name":"电压 A","unit":"V"},
            {"data_type":"A","point_id":5,"name":"Set-point","unit":"kW","min":0,"max":100}]"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Configured and written, written only, configured only (no value yet).
    let p = get_ok(addr, "/api/channels/4400/points");
    assert_eq!(p["message"], "Found 3 points");
    assert_eq!(
        p["data"],
        json!([
            {"data_type":"T","point_id":1,"name":"电压 A","unit":"V","value":230.5},
            {"data_type":"T","point_id":2,"name":null,"unit":null,"value":49.98},
            {"data_type":"A","point_id":5,"name":"Set-point","unit":"kW","value":null}
        ])
    );
    assert_eq!(
        request(addr, "POST", "/api/channels/4400/points").status,
        405
    );
}
