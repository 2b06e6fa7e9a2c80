//! RFC 6455 conformance: the Autobahn fuzzing-client cases 1–7 and 10 against the gateway's
//! WebSocket stack (the same session, framing and writer code that serves `/ws`), through
//! its `/autobahn` echo endpoint, on both io drivers. No case may be FAILED.

mod common;

use std::process::Command;
use voltage_gateway::config::DriverKind;

fn run(driver: DriverKind) {
    let redis = common::redis();
    let mut cfg = common::config(&redis.url(), driver);
    cfg.ws.conformance_echo = true;
    let gw = voltage_gateway::Server::start(cfg).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/autobahn/run.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(gw.local_addr().to_string())
        .arg("/autobahn")
        .env("AUTOBAHN_PARALLELISM", "4")
        .output()
        .expect("bash runs tests/autobahn/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Autobahn ({driver:?}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("FAILED: 0"), "{stdout}");
    println!("{stdout}");
}

#[test]
fn autobahn_cases_pass_with_io_uring() {
    run(DriverKind::Uring);
}

#[test]
fn autobahn_cases_pass_with_epoll() {
    run(DriverKind::Legacy);
}
