//! What a client hands the security layer: login and refresh bodies, an access token (a
//! header, `?token=` or an `auth` message), an `Origin`, a `Host` and an `X-Forwarded-For`.
//! Never panics; a token the fuzzer makes never authenticates (it does not know the key);
//! a normalized origin normalizes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::sync::OnceLock;
use voltage_gateway::api::auth::{parse_login, parse_refresh};
use voltage_gateway::auth::Auth;
use voltage_gateway::http::origin::{client_ip, host_allowed, normalize, OriginPolicy};

fn auth() -> &'static Auth {
    static A: OnceLock<Auth> = OnceLock::new();
    A.get_or_init(|| Auth::new(&Default::default(), b"a fuzzing secret of at least 32 bytes"))
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_login(data, 32);
    let _ = parse_refresh(data, 32, true);
    let _ = parse_refresh(data, 32, false);
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    assert!(auth().authenticate(Some(s), 0).is_err(), "forged: {s:?}");
    let _ = Auth::bearer(Some(s));
    if let Some(o) = normalize(s) {
        assert_eq!(normalize(&o).as_deref(), Some(o.as_str()));
    }
    let policy = OriginPolicy::new(&["https://scada.example.com".into()]);
    let _ = policy.cors(Some(s), Some("gw:6005"));
    let _ = policy.refuses(Some(s), Some(s));
    let _ = host_allowed(&["gw.site".into(), "::1".into()], Some(s));
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    let _ = client_ip(proxy, Some(s), &[proxy]);
});
