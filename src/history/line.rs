//! The recorded changes as InfluxDB line protocol (1.x `/write?precision=ms`).
//!
//! One line per changed (channel, data type), fields keyed by point id:
//! `voltage_points,channel_id=1001,data_type=T 1=25.6,2=101.3 1733150000123`. A numeric value
//! is a float field `"{point}"`; any other value a string field `"{point}_text"` (so one field
//! never holds two types). The timestamp is Redis's clock at the write (`_written_ms`, in
//! milliseconds), so every gateway recording the site writes the same point; with an older
//! library, the time the feed saw the change.

use crate::model::{ChannelId, DataType, PointId, Value};

/// The measurement every change is written to.
pub const MEASUREMENT: &str = "voltage_points";

/// The suffix of a point's string field.
pub const TEXT_SUFFIX: &str = "_text";

/// Appends the line for one change (nothing when `points` is empty); true when a line was
/// written.
pub fn write_change<'a>(
    out: &mut Vec<u8>,
    channel: ChannelId,
    t: DataType,
    points: impl IntoIterator<Item = (PointId, &'a Value)>,
    time_ms: i64,
) -> bool {
    let start = out.len();
    out.extend_from_slice(MEASUREMENT.as_bytes());
    out.extend_from_slice(b",channel_id=");
    out.extend_from_slice(channel.0.to_string().as_bytes());
    out.extend_from_slice(b",data_type=");
    out.extend_from_slice(t.as_str().as_bytes());
    let mut sep = b' ';
    for (point, value) in points {
        out.push(sep);
        sep = b',';
        out.extend_from_slice(point.to_string().as_bytes());
        let token = value.json();
        match text_of(token) {
            None => {
                out.push(b'=');
                out.extend_from_slice(token.as_bytes());
            }
            Some(text) => {
                out.extend_from_slice(TEXT_SUFFIX.as_bytes());
                out.extend_from_slice(b"=\"");
                for c in text.chars() {
                    if matches!(c, '"' | '\\') {
                        out.push(b'\\');
                    }
                    let mut b = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
                out.push(b'"');
            }
        }
    }
    if sep == b' ' {
        out.truncate(start);
        return false;
    }
    out.push(b' ');
    out.extend_from_slice(time_ms.to_string().as_bytes());
    out.push(b'\n');
    true
}

/// The text of a value that is a JSON string token (`None`: a number, written as a float).
fn text_of(token: &str) -> Option<String> {
    if !token.starts_with('"') {
        return None;
    }
    let mut buf = token.as_bytes().to_vec();
    match simd_json::to_owned_value(&mut buf) {
        Ok(simd_json::OwnedValue::String(s)) => Some(s),
        // Value renders valid JSON strings; keep the token rather than lose the value.
        _ => Some(token.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(points: &[(PointId, &str)]) -> String {
        let values: Vec<(PointId, Value)> = points
            .iter()
            .map(|(p, v)| (*p, Value::from_redis(v)))
            .collect();
        let mut out = Vec::new();
        write_change(
            &mut out,
            ChannelId(1001),
            DataType::Telemetry,
            values.iter().map(|(p, v)| (*p, v)),
            1_733_150_000_123,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_are_float_fields_and_text_is_a_string_field() {
        assert_eq!(
            line(&[(1, "25.6"), (2, "-1e5"), (10, "open")]),
            "voltage_points,channel_id=1001,data_type=T 1=25.6,2=-1e5,10_text=\"open\" 1733150000123\n"
        );
    }

    #[test]
    fn quotes_and_backslashes_are_escaped_newlines_kept() {
        assert_eq!(
            line(&[(3, "a \"q\" \\ b\nc")]),
            "voltage_points,channel_id=1001,data_type=T 3_text=\"a \\\"q\\\" \\\\ b\nc\" 1733150000123\n"
        );
    }

    #[test]
    fn no_points_no_line() {
        assert_eq!(line(&[]), "");
    }
}
