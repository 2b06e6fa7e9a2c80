//! Alarm records as the gateway reads them: an `alarms_since` / `since` id from a client, an
//! `alarm:active` JSON value and an `alarm:events` entry's fields from Redis. Never panics;
//! an event that is read renders as JSON, and an id that parses prints back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voltage_gateway::alarm::{parse_active, AlarmEvent, EventId};
use voltage_gateway::feed::hash_fields;

fuzz_target!(|data: &[u8]| {
    let rendered = |e: &AlarmEvent| {
        let msg = voltage_gateway::alarm::wire::message(e);
        serde_json::from_slice::<serde_json::Value>(&msg).expect("an alarm message is JSON");
    };
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(id) = EventId::parse(s) {
            assert_eq!(EventId::parse(&id.to_string()), Some(id));
        }
    }
    if let Ok(e) = parse_active(data) {
        rendered(&e);
    }
    if let Ok(reply) = redis::parse_redis_value(data) {
        if let Ok(e) = AlarmEvent::from_fields(EventId::default(), &hash_fields(reply)) {
            rendered(&e);
        }
    }
});
