//! What Redis sends the feed, decoded: a RESP reply as `netsrv_collect_data`'s answer, and as
//! an `HGETALL` applied to the site store. Never panics; what the store renders is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voltage_gateway::feed::{hash_fields, parse_collect_reply};
use voltage_gateway::site::store::Store;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = redis::parse_redis_value(data) else {
        return;
    };
    let _ = parse_collect_reply(&reply);
    let fields = hash_fields(reply);
    let mut store = Store::default();
    for member in ["1001:T", "2001:A", "0:T", "x:T"] {
        if let Some(change) = store.apply(member, &fields) {
            if let Some(state) = change.state {
                serde_json::from_slice::<serde_json::Value>(&state.values_json)
                    .expect("rendered values are JSON");
            }
        }
    }
});
