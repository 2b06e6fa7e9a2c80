//! Alarm messages: the seed's `alarm` push (plus `event_id`, `data_type`, `rule_id`,
//! `operator`, `threshold`) and the REST records of active alarms and of the event log.

use super::event::AlarmEvent;
use crate::json;

/// The alarm's fields as an object; `time_key` adds the event's time (ISO) under that name.
fn write_object(out: &mut Vec<u8>, e: &AlarmEvent, time_key: Option<&str>) {
    out.extend_from_slice(b"{\"alarm_id\":");
    json::write_str(out, &e.alarm_id);
    out.extend_from_slice(b",\"channel_id\":");
    json::write_u64(out, u64::from(e.channel.0));
    out.extend_from_slice(b",\"point_id\":");
    json::write_u64(out, u64::from(e.point));
    out.extend_from_slice(b",\"status\":");
    json::write_u64(out, e.status as u64);
    out.extend_from_slice(b",\"level\":");
    json::write_u64(out, u64::from(e.level));
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(e.value.as_ref().map_or("null", |v| v.json()).as_bytes());
    out.extend_from_slice(b",\"message\":");
    json::write_str(out, &e.message);
    out.extend_from_slice(b",\"event_id\":\"");
    out.extend_from_slice(e.event_id.to_string().as_bytes());
    out.extend_from_slice(b"\",\"data_type\":\"");
    out.extend_from_slice(e.data_type.as_str().as_bytes());
    out.extend_from_slice(b"\",\"rule_id\":");
    json::write_str(out, &e.rule_id);
    out.extend_from_slice(b",\"operator\":");
    json::write_str(out, &e.operator);
    out.extend_from_slice(b",\"threshold\":");
    out.extend_from_slice(e.threshold.json().as_bytes());
    if let Some(ack) = &e.ack {
        write_ack(out, ack);
    }
    if let Some(k) = time_key {
        out.extend_from_slice(b",");
        json::write_key(out, k);
        out.push(b'"');
        out.extend_from_slice(crate::wire::iso(e.time_ms).as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

/// `,"acknowledged_by":…,"acknowledged_at":ISO`.
fn write_ack(out: &mut Vec<u8>, ack: &crate::alarm::Ack) {
    out.extend_from_slice(b",\"acknowledged_by\":");
    json::write_str(out, &ack.by);
    out.extend_from_slice(b",\"acknowledged_at\":\"");
    out.extend_from_slice(crate::wire::iso(ack.at_ms).as_bytes());
    out.push(b'"');
}

/// `alarm_ack {alarm_id, acknowledged_by, acknowledged_at, rule_id, event_id}` (PROTOCOL.md
/// §3; id `alarm_ack_{event_id}`): an operator acknowledged an active alarm.
pub fn ack_message(e: &AlarmEvent) -> Vec<u8> {
    let mut data = Vec::with_capacity(160);
    data.extend_from_slice(b"{\"alarm_id\":");
    json::write_str(&mut data, &e.alarm_id);
    if let Some(ack) = &e.ack {
        write_ack(&mut data, ack);
    }
    data.extend_from_slice(b",\"rule_id\":");
    json::write_str(&mut data, &e.rule_id);
    data.extend_from_slice(b",\"event_id\":\"");
    data.extend_from_slice(e.event_id.to_string().as_bytes());
    data.extend_from_slice(b"\"}");
    crate::wire::ws::envelope(
        "alarm_ack",
        &format!("alarm_ack_{}", e.event_id),
        e.time_ms,
        &data,
    )
}

/// `alarm` (id `alarm_{event_id}`, timestamp = when Redis recorded the event).
pub fn message(e: &AlarmEvent) -> Vec<u8> {
    let mut data = Vec::with_capacity(256);
    write_object(&mut data, e, None);
    crate::wire::ws::envelope("alarm", &format!("alarm_{}", e.event_id), e.time_ms, &data)
}

/// An active alarm for `GET /api/alarms/active`: its trigger, with `triggered_at` and its
/// state (`acknowledged`, and who/when once it is).
pub fn write_active(out: &mut Vec<u8>, e: &AlarmEvent) {
    write_object(out, e, Some("triggered_at"));
    out.pop();
    out.extend_from_slice(if e.ack.is_some() {
        b",\"acknowledged\":true}"
    } else {
        b",\"acknowledged\":false}"
    });
}

/// An event for `GET /api/alarms/events`, with `time`.
pub fn write_event(out: &mut Vec<u8>, e: &AlarmEvent) {
    write_object(out, e, Some("time"));
}

#[cfg(test)]
mod tests {
    use crate::alarm::{AlarmEvent, AlarmStatus, EventId};
    use crate::model::{ChannelId, DataType, Value};

    #[test]
    fn the_seed_alarm_with_its_event_id() {
        let e = AlarmEvent {
            event_id: EventId {
                ms: 1754994600000,
                seq: 0,
            },
            alarm_id: "ALM_12345".into(),
            rule_id: "hot".into(),
            channel: ChannelId(1001),
            data_type: DataType::Telemetry,
            point: 1,
            status: AlarmStatus::Triggered,
            level: 2,
            value: Some(Value::from_redis("95.5")),
            message: "Temperature exceeds threshold".into(),
            operator: ">".into(),
            threshold: Value::from_redis("90"),
            time_ms: 1754994600000,
            ack: None,
        };
        assert_eq!(
            String::from_utf8(super::message(&e)).unwrap(),
            r#"{"type":"alarm","id":"alarm_1754994600000-0","timestamp":"2025-08-12T10:30:00.000Z","data":{"alarm_id":"ALM_12345","channel_id":1001,"point_id":1,"status":1,"level":2,"value":95.5,"message":"Temperature exceeds threshold","event_id":"1754994600000-0","data_type":"T","rule_id":"hot","operator":">","threshold":90}}"#
        );
    }
}
