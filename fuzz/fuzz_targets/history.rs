//! History: query parameters → HistoryQuery → InfluxQL, and InfluxDB's answers → records, on
//! arbitrary input. Errors, never panics; no parameter text reaches the statement (it never
//! holds a `;` and its quotes are only the gateway's own); pages stay ascending and bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voltage_gateway::history::query::{parse_answer, PAGE_SLACK};
use voltage_gateway::history::{HistoryQuery, Limits};
use voltage_gateway::http::Query;
use voltage_gateway::model::ChannelId;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let limits = Limits::default();
    if mode % 2 == 0 {
        let Ok(q) = Query::parse(text) else { return };
        if let Ok(h) = HistoryQuery::parse(ChannelId(1001), &q, 1_736_841_600_000, &limits) {
            let sql = h.influxql();
            assert!(!sql.contains(';'), "{sql}");
            let quotes = sql.matches('\'').count();
            assert!(quotes == 2 || quotes == 4, "{sql}");
        }
    } else {
        let q = Query::parse(if mode % 4 == 1 { "limit=3" } else { "interval=60&agg=last" })
            .unwrap();
        let h = HistoryQuery::parse(ChannelId(1001), &q, 1_736_841_600_000, &limits).unwrap();
        if let Ok(page) = parse_answer(&h, rest) {
            assert!(page
                .records
                .windows(2)
                .all(|w| w[0].time_ms <= w[1].time_ms));
            if h.bucket.is_none() {
                assert!(page.records.len() <= (h.limit + PAGE_SLACK) as usize);
            }
        }
    }
});
