//! One alarm event as the library records it (`alarm:events`, `alarm:active`): its id, status,
//! and the fields of its record, read back with each refusal naming the field.

use crate::model::{hash_field, parse_canonical_u32, ChannelId, DataType, PointId, Value};
use std::fmt;

/// A stream entry id, `{ms}-{seq}`: totally ordered, as Redis assigns them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    /// `{ms}-{seq}` in decimal (a bare `{ms}` means `{ms}-0`, as Redis reads it); anything
    /// else is `None`. Bounded: at most 20 digits each.
    pub fn parse(s: &str) -> Option<EventId> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        let num = |d: &str| {
            (!d.is_empty() && d.len() <= 20 && d.bytes().all(|b| b.is_ascii_digit()))
                .then(|| d.parse::<u64>().ok())
                .flatten()
        };
        Some(EventId {
            ms: num(ms)?,
            seq: num(seq)?,
        })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A stream entry as read: its id and its field/value pairs.
pub type StreamEntry = (EventId, Vec<(Vec<u8>, Vec<u8>)>);

/// The seed's `alarm.status`: 1 triggered, 0 recovered — and, in the event log only, 2 for
/// an acknowledgement (sent to clients as `alarm_ack`, never as `alarm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmStatus {
    Recovered = 0,
    Triggered = 1,
    Acknowledged = 2,
}

/// Who acknowledged an active alarm, and when (Unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub by: String,
    pub at_ms: i64,
}

/// One trigger or recovery, as appended to `alarm:events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmEvent {
    pub event_id: EventId,
    /// `ALM_{n}`: shared by a trigger and its recovery.
    pub alarm_id: String,
    pub rule_id: String,
    pub channel: ChannelId,
    pub data_type: DataType,
    pub point: PointId,
    pub status: AlarmStatus,
    /// 0 low, 1 medium, 2 high, 3 urgent.
    pub level: u8,
    /// The value that changed the state; `None` for a recovery because the rule was deleted,
    /// moved or disabled while its point held no number.
    pub value: Option<Value>,
    pub message: String,
    pub operator: String,
    pub threshold: Value,
    /// When Redis recorded it (Unix ms).
    pub time_ms: i64,
    /// Set on an acknowledgement event, and on an active alarm that was acknowledged.
    pub ack: Option<Ack>,
}

/// Why a stream entry or an active-alarm record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord(pub &'static str);

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable alarm record: {}", self.0)
    }
}

fn field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &'static str) -> Result<&'a str, BadRecord> {
    hash_field(fields, name).ok_or(BadRecord(name))
}

impl AlarmEvent {
    /// A stream entry's fields (as `XRANGE` returns them) → the event.
    pub fn from_fields(
        event_id: EventId,
        fields: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<AlarmEvent, BadRecord> {
        let get = |name| field(fields, name);
        let status = match get("status")? {
            "1" => AlarmStatus::Triggered,
            "0" => AlarmStatus::Recovered,
            "ack" => AlarmStatus::Acknowledged,
            _ => return Err(BadRecord("status")),
        };
        let ack = match status {
            AlarmStatus::Acknowledged => Some(Ack {
                by: get("acknowledged_by")?.to_string(),
                at_ms: get("acknowledged_at")?
                    .parse()
                    .map_err(|_| BadRecord("acknowledged_at"))?,
            }),
            _ => None,
        };
        let value = get("value")?;
        Ok(AlarmEvent {
            event_id,
            alarm_id: get("alarm_id")?.to_string(),
            rule_id: get("rule_id")?.to_string(),
            channel: ChannelId::parse(get("channel_id")?).ok_or(BadRecord("channel_id"))?,
            data_type: DataType::parse(get("data_type")?).ok_or(BadRecord("data_type"))?,
            point: parse_canonical_u32(get("point_id")?).ok_or(BadRecord("point_id"))?,
            status,
            level: get("level")?
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= 3)
                .ok_or(BadRecord("level"))?,
            value: (!value.is_empty()).then(|| Value::from_redis(value)),
            message: get("message")?.to_string(),
            operator: get("operator")?.to_string(),
            threshold: Value::from_redis(get("threshold")?),
            time_ms: get("time")?.parse().map_err(|_| BadRecord("time"))?,
            ack,
        })
    }
}
