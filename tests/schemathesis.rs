//! The OpenAPI document against the server: schemathesis (PyPI, pinned in
//! tests/schemathesis/run.sh) generates requests for every operation in
//! `GET /api/openapi.json` — valid, invalid and stateful sequences — against a real gateway on
//! the seed site (history on a private InfluxDB), as an admin so every route is reached. It must find no server error, no
//! undeclared response, no valid request refused and no invalid one accepted (the rules the
//! document cannot express are listed, with reasons, in tests/schemathesis/schemathesis.toml).

mod common;
#[path = "common/ws.rs"]
mod wsc;

use std::process::Command;
use voltage_gateway::config::DriverKind;
use wsc::*;

#[test]
fn the_openapi_document_holds_against_the_server() {
    // History on a real InfluxDB, so /history answers from a store rather than 503.
    let influx = voltage_gateway::demo::InfluxProcess::start()
        .expect("influxd (apt-get install influxdb) must be installed");
    let (_redis, gw, _con) = start_with(DriverKind::Auto, |cfg| {
        common::trust(cfg);
        cfg.history.url = influx.url();
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis/run.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(format!("http://{}", gw.local_addr()))
        .output()
        .expect("bash runs tests/schemathesis/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis:\n{stdout}\n{stderr}");
    // Every operation in the document was tested (not an empty success).
    let count = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no '{label}' in the summary:\n{stdout}"))
    };
    let selected = count("Selected:");
    assert!(selected >= 40, "{stdout}");
    assert_eq!(count("Tested:"), selected, "{stdout}");
    println!("{stdout}");
}
