//! The HTTP request parser on arbitrary bytes: never panics, a complete request never claims
//! more bytes than it was given, and parsing the same bytes split anywhere (as reads deliver
//! them, with the head searched incrementally) gives the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voltage_gateway::http::{head_end, parse_request, Limits, Parsed};

const LIMITS: Limits = Limits {
    max_head_bytes: 4096,
    max_headers: 32,
    max_body_bytes: 4096,
};

fuzz_target!(|data: &[u8]| {
    let whole = parse_request(data, &LIMITS);
    if let Parsed::Complete(req, n) = &whole {
        assert!(*n <= data.len());
        assert!(req.body.len() <= LIMITS.max_body_bytes);
        // The request's own bytes parse to the same request.
        match parse_request(&data[..*n], &LIMITS) {
            Parsed::Complete(again, m) => assert!(m == *n && again == *req),
            other => panic!("prefix parsed differently: {other:?}"),
        }
    }
    // Incremental head search over any split agrees with a search of the whole.
    let mut scanned = 0;
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    // Found early, it is found again (the body arriving after the head).
    let early = head_end(&data[..split], &mut scanned);
    let late = head_end(data, &mut scanned);
    let mut fresh = 0;
    let direct = head_end(data, &mut fresh);
    assert_eq!(late, direct);
    if early.is_some() {
        assert_eq!(early, direct);
    }
});
