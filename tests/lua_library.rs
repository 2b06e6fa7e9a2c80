//! The Function library's own assertions (`lua/tests.sh`, through redis-cli) against a
//! private redis-server: value formatting, validation, atomicity, collect paging and resets.

mod common;

use std::process::Command;

#[test]
fn lua_library_assertions_pass() {
    let redis = common::redis();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/lua/tests.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("PORT", redis.port().to_string())
        .output()
        .expect("bash runs lua/tests.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lua/tests.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("pass=") && last.ends_with("fail=0"),
        "{stdout}"
    );
    let passed: usize = last[5..last.find(' ').unwrap()].parse().unwrap();
    assert!(passed > 90, "{stdout}");
}
