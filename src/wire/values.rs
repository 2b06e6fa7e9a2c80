//! Point values and the records that carry them: the same `{"channel_id","data_type",…}`
//! shapes in WebSocket pushes and REST answers.

use crate::json;
use crate::model::{ChannelId, DataType, PointId, Value};

/// Appends `{"id":value,...}` for the given points.
pub fn write_values<'a>(out: &mut Vec<u8>, points: impl IntoIterator<Item = &'a (PointId, Value)>) {
    out.push(b'{');
    for (i, (id, v)) in points.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        json::write_u64(out, u64::from(*id));
        out.extend_from_slice(b"\":");
        out.extend_from_slice(v.json().as_bytes());
    }
    out.push(b'}');
}

/// `{"id":value,...}` for the given points.
pub fn values<'a>(points: impl IntoIterator<Item = &'a (PointId, Value)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_values(&mut out, points);
    out
}

fn write_channel_and_type(out: &mut Vec<u8>, channel: ChannelId, t: DataType) {
    out.extend_from_slice(b"{\"channel_id\":");
    json::write_u64(out, u64::from(channel.0));
    out.extend_from_slice(b",\"data_type\":\"");
    out.extend_from_slice(t.as_str().as_bytes());
    out.push(b'"');
}

/// A push's update: `{"channel_id":…,"data_type":…,"values":…}` with a rendered values object.
pub fn write_update(out: &mut Vec<u8>, channel: ChannelId, t: DataType, values: &[u8]) {
    write_channel_and_type(out, channel, t);
    out.extend_from_slice(b",\"values\":");
    out.extend_from_slice(values);
    out.push(b'}');
}

/// A push's removal: `{"channel_id":…,"data_type":…,"points":[…]}`, the ids that vanished.
pub fn write_removal(out: &mut Vec<u8>, channel: ChannelId, t: DataType, points: &[PointId]) {
    write_channel_and_type(out, channel, t);
    out.extend_from_slice(b",\"points\":[");
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_u64(out, u64::from(*p));
    }
    out.extend_from_slice(b"]}");
}

/// A REST realtime record: `{"channel_id":…,"data_type":…,"timestamp":…,"values":…}`.
pub fn write_record(
    out: &mut Vec<u8>,
    channel: ChannelId,
    t: DataType,
    timestamp: i64,
    values: &[u8],
) {
    write_channel_and_type(out, channel, t);
    out.extend_from_slice(b",\"timestamp\":");
    json::write_i64(out, timestamp);
    out.extend_from_slice(b",\"values\":");
    out.extend_from_slice(values);
    out.push(b'}');
}

/// What `/api/channels` reports per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelSummary {
    pub channel: ChannelId,
    /// `active`, `stale` or `unavailable`.
    pub status: &'static str,
    pub last_update: i64,
    pub active_points: usize,
}

/// `{"channel_id":…,"status":…,"last_update":…,"active_points":…}`.
pub fn write_channel(out: &mut Vec<u8>, c: &ChannelSummary) {
    out.extend_from_slice(b"{\"channel_id\":");
    json::write_u64(out, u64::from(c.channel.0));
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(c.status.as_bytes());
    out.extend_from_slice(b"\",\"last_update\":");
    json::write_i64(out, c.last_update);
    out.extend_from_slice(b",\"active_points\":");
    json::write_u64(out, c.active_points as u64);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let pts = [(1, Value::from_redis("25.6")), (2, Value::from_redis("on"))];
        assert_eq!(values(&pts), br#"{"1":25.6,"2":"on"}"#);
        let mut u = Vec::new();
        write_update(&mut u, ChannelId(1001), DataType::Telemetry, b"{}");
        assert_eq!(u, br#"{"channel_id":1001,"data_type":"T","values":{}}"#);
        let mut r = Vec::new();
        write_record(
            &mut r,
            ChannelId(2001),
            DataType::Adjustment,
            5,
            b"{\"20\":1}",
        );
        assert_eq!(
            r,
            br#"{"channel_id":2001,"data_type":"A","timestamp":5,"values":{"20":1}}"#
        );
        let mut c = Vec::new();
        write_channel(
            &mut c,
            &ChannelSummary {
                channel: ChannelId(7),
                status: "stale",
                last_update: 9,
                active_points: 3,
            },
        );
        assert_eq!(
            c,
            br#"{"channel_id":7,"status":"stale","last_update":9,"active_points":3}"#
        );
    }
}
