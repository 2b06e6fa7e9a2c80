//! The query-string parser and its typed getters on arbitrary text: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voltage_gateway::http::Query;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = Query::parse(raw) {
        for name in [
            "limit",
            "point_id",
            "data_type",
            "start_time",
            "end_time",
            "client_id",
        ] {
            let _ = q.get(name);
            let _ = q.u32_in(name, 1, 1000);
            let _ = q.unix_secs(name);
            let _ = q.data_type(name);
        }
    }
    let _ = voltage_gateway::http::query::decode_path(raw);
});
