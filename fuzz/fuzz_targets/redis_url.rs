//! `redis_url` (flag, environment, config file): parsing and the configuration's check never
//! panic; a `redis+sentinel://` URL the configuration accepts yields sentinel URLs naming its
//! hosts and master URLs (for an IPv4 or IPv6 master) the client library accepts, and a
//! description without credentials.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voltage_gateway::config::Config;
use voltage_gateway::redis_url::{host_port, RedisTarget};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = RedisTarget::parse(s);
    let cfg = Config {
        redis_url: s.to_string(),
        ..Config::default()
    };
    if cfg.validate().is_err() {
        return;
    }
    let Ok(RedisTarget::Sentinel(t)) = parsed else {
        return;
    };
    assert!(!t.hosts.is_empty() && !t.master_name.is_empty());
    for (i, (host, port)) in t.hosts.iter().enumerate() {
        let sentinel = t.sentinel_url(i);
        assert!(sentinel.contains(&host_port(host, *port)), "{sentinel}");
        redis::Client::open(sentinel.as_str()).unwrap_or_else(|e| panic!("{sentinel}: {e}"));
    }
    for master in ["10.0.0.9", "fe80::1"] {
        let url = t.master_url(master, 6380);
        redis::Client::open(url.as_str()).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    assert!(!t.describe().contains('@'), "no credentials shown");
});
