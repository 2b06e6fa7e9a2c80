//! History, the pure part: how changes are written to InfluxDB (`line`), how
//! `GET /api/channels/{id}/history` is validated, asked and read back (`query`), and how its
//! records are rendered as JSON or CSV (here). The thread that writes and the one that asks
//! are the shell's (`src/recorder/`).

pub mod config;
pub mod line;
pub mod querier;
pub mod query;
pub mod recorder;

use crate::model::ChannelId;
use crate::wire::values::{values, write_record};
pub use query::{Format, HistoryQuery, Limits, Page, Record};

/// The recorder's state as health checks and `/metrics` report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The last write or probe reached InfluxDB.
    pub up: bool,
    /// Why not, or what it is doing (catching up).
    pub message: String,
    /// Point values InfluxDB accepted.
    pub written_points: u64,
    /// Point values lost: the queue or the buffer was full, or InfluxDB refused them as bad
    /// data.
    pub dropped_points: u64,
    /// Point values and bytes waiting in the buffer for InfluxDB.
    pub buffered_points: u64,
    pub buffered_bytes: u64,
    /// Writes that failed (each retried from the buffer unless refused as bad data).
    pub write_errors: u64,
}

/// The records as the REST `data` array (the realtime shape, timestamps in milliseconds).
pub fn write_json(out: &mut Vec<u8>, channel: ChannelId, records: &[Record]) {
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_record(out, channel, r.data_type, r.time_ms, &values(&r.values));
    }
    out.push(b']');
}

/// The CSV export's header line.
pub const CSV_HEADER: &str = "timestamp_ms,time,channel_id,data_type,point_id,value\n";

/// The records as CSV, one row per point value (RFC 4180 quoting; a text value that a
/// spreadsheet would run as a formula is prefixed with `'`).
pub fn write_csv(out: &mut Vec<u8>, channel: ChannelId, records: &[Record]) {
    out.extend_from_slice(CSV_HEADER.as_bytes());
    for r in records {
        let time = crate::wire::iso(r.time_ms);
        for (point, value) in &r.values {
            let token = value.json();
            out.extend_from_slice(
                format!(
                    "{},{time},{},{},{point},",
                    r.time_ms,
                    channel.0,
                    r.data_type.as_str()
                )
                .as_bytes(),
            );
            if token.starts_with('"') {
                let text = unquote(token);
                write_csv_text(out, &text);
            } else {
                out.extend_from_slice(token.as_bytes());
            }
            out.push(b'\n');
        }
    }
}

fn unquote(token: &str) -> String {
    let mut buf = token.as_bytes().to_vec();
    match simd_json::to_owned_value(&mut buf) {
        Ok(simd_json::OwnedValue::String(s)) => s,
        _ => token.to_string(),
    }
}

fn write_csv_text(out: &mut Vec<u8>, text: &str) {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    out.push(b'"');
    if formula {
        out.push(b'\'');
    }
    for c in text.chars() {
        if c == '"' {
            out.push(b'"');
        }
        let mut b = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataType, Value};

    fn records() -> Vec<Record> {
        vec![
            Record {
                time_ms: 1_700_000_000_100,
                data_type: DataType::Telemetry,
                values: vec![(1, Value::from_redis("25.6")), (2, Value::from_redis("-3"))],
            },
            Record {
                time_ms: 1_700_000_000_100,
                data_type: DataType::Signal,
                values: vec![(11, Value::from_redis("say \"hi\", =1"))],
            },
        ]
    }

    #[test]
    fn json_is_the_realtime_shape_in_milliseconds() {
        let mut out = Vec::new();
        write_json(&mut out, ChannelId(1001), &records());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[{"channel_id":1001,"data_type":"T","timestamp":1700000000100,"values":{"1":25.6,"2":-3}},{"channel_id":1001,"data_type":"S","timestamp":1700000000100,"values":{"11":"say \"hi\", =1"}}]"#
        );
    }

    #[test]
    fn csv_is_one_row_per_value_quoted_and_formula_safe() {
        let mut out = Vec::new();
        write_csv(&mut out, ChannelId(1001), &records());
        let mut r = records();
        r[1].values[0].1 = Value::from_redis("=cmd|' /C calc'!A0");
        write_csv(&mut out, ChannelId(1001), &r[1..]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "timestamp_ms,time,channel_id,data_type,point_id,value\n\
             1700000000100,2023-11-14T22:13:20.100Z,1001,T,1,25.6\n\
             1700000000100,2023-11-14T22:13:20.100Z,1001,T,2,-3\n\
             1700000000100,2023-11-14T22:13:20.100Z,1001,S,11,\"say \"\"hi\"\", =1\"\n\
             timestamp_ms,time,channel_id,data_type,point_id,value\n\
             1700000000100,2023-11-14T22:13:20.100Z,1001,S,11,\"'=cmd|' /C calc'!A0\"\n"
        );
    }
}
