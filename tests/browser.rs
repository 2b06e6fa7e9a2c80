//! The operator page as users meet it: Debian's chromium, headless, against a real gateway on
//! the demo's simulated site at 1,000 channels (Redis, InfluxDB for the trend, the simulated
//! devices): it loads, lists and virtualizes the channels with values changing, follows the
//! scroll with its subscriptions, opens a trend, shows an alarm arriving and acknowledges it,
//! sends a control command and sees it executed, says so and greys its values when the
//! WebSocket is cut (then reconnects) or the data source is down, keeps main-thread long
//! tasks in budget, and logs in and out on a gateway with anonymous access off. Screenshots of
//! every step go to `$BROWSER_ARTIFACTS` (default `target/browser-artifacts`).

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;
use voltage_gateway::config::{AnonymousRole, Config, DriverKind, UserConfig};
use voltage_gateway::demo::{InfluxProcess, Simulator};
use voltage_gateway::Server;

fn users(cfg: &mut Config) {
    use voltage_gateway::auth::{password, Role};
    for (name, role) in [("operator", Role::Operator), ("admin", Role::Admin)] {
        cfg.auth.users.push(UserConfig {
            username: name.into(),
            password_hash: password::hash(name, &[9; 16]).unwrap(),
            role,
        });
    }
    cfg.auth.secret = "browser-test-secret-0123456789abcdef".into();
}

#[test]
fn the_operator_page_works_in_chromium() {
    let redis = redis();
    let influx = InfluxProcess::available().then(|| InfluxProcess::start().unwrap());
    let mut open = config(&redis.url(), DriverKind::Auto);
    open.auth.anonymous_role = AnonymousRole::Operator;
    users(&mut open);
    if let Some(i) = &influx {
        open.history.url = i.url();
    }
    let mut locked = open.clone();
    locked.auth.anonymous_role = AnonymousRole::None;
    // Short access tokens: the page must renew them, also after a reload.
    locked.auth.access_ttl_secs = 6;
    locked.history.url = String::new();
    let gw = Server::start(open).expect("gateway starts");
    wait_until("redis healthy", Duration::from_secs(5), || {
        gw.published().redis.load().healthy
    });
    let gw_locked = Server::start(locked).expect("second gateway starts");
    // A gateway whose Redis is down (nothing listens on the discard port).
    let mut dead = config("redis://127.0.0.1:9", DriverKind::Auto);
    dead.auth.anonymous_role = AnonymousRole::Viewer;
    let gw_dead = Server::start(dead).expect("third gateway starts");
    let _sim = Simulator::start_sized(&redis.url(), 1000).unwrap();
    wait_until("1,000 channels", Duration::from_secs(30), || {
        gw.published().snapshot.load().channels.len() >= 1000
    });
    // Some history for the trend.
    std::thread::sleep(Duration::from_secs(2));

    let out = std::env::var("BROWSER_ARTIFACTS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-artifacts").to_string()
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/run.sh");
    let run = Command::new("bash")
        .arg(script)
        .arg(format!("http://{}/", gw.local_addr()))
        .arg(format!("http://{}/", gw_locked.local_addr()))
        .arg(&out)
        .arg(format!("http://{}/", gw_dead.local_addr()))
        .output()
        .expect("bash runs tests/browser/run.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "browser steps (screenshots in {out}):\n{stdout}\n{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(
        summary["steps"].as_array().unwrap().len() >= 12,
        "{summary}"
    );
    println!("{summary}\nscreenshots: {out}");
}
