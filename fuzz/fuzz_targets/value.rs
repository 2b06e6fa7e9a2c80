//! A stored value as clients get it: `Value::from_redis` on any string yields one JSON token
//! that strict parsers accept (a number only when a double holds it, else a string), and a
//! stored decimal that is a JSON number is sent exactly as written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voltage_gateway::model::{is_json_number, Value};

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let v = Value::from_redis(&raw);
    let parsed: serde_json::Value =
        serde_json::from_str(v.json()).expect("a value is one valid JSON token");
    match parsed {
        serde_json::Value::Number(n) => {
            let f = n.as_f64().expect("finite");
            assert!(f.is_finite());
            if is_json_number(&raw) {
                // Sent exactly as stored: clients parse the full-precision decimal.
                assert_eq!(v.json(), &*raw, "kept as written");
            }
        }
        serde_json::Value::String(s) => {
            if !is_json_number(&raw) && raw.trim().parse::<f64>().is_err() {
                assert_eq!(s, raw, "a word is sent as written");
            }
        }
        other => panic!("{other}"),
    }
});
