//! Alarms, pure: the events `alarmsrv_check` appends to `alarm:events` (lua/README.md) as the
//! gateway reads them, and the set of active alarms they imply. No IO, no clock: the feed
//! reads the stream, shards and handlers read these; the Redis work asked for clients is in
//! `jobs.rs`.

pub mod event;
pub mod jobs;
pub mod wire;

use crate::model::{ChannelId, DataType, Value};
use crate::wire::Frame;
pub use event::{Ack, AlarmEvent, AlarmStatus, BadRecord, EventId, StreamEntry};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An event with its `alarm` message rendered once (shared by every connection).
#[derive(Debug)]
pub struct Alarm {
    pub event: AlarmEvent,
    pub frame: Frame,
}

impl Alarm {
    /// The event with its message: `alarm` for a trigger or recovery, `alarm_ack` for an
    /// acknowledgement.
    pub fn new(event: AlarmEvent) -> Arc<Alarm> {
        let json = match event.status {
            AlarmStatus::Acknowledged => wire::ack_message(&event),
            _ => wire::message(&event),
        };
        let frame = crate::wire::frame::text(&json).into();
        Arc::new(Alarm { event, frame })
    }
}

/// A page of the event log: the events after an id, in order.
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub events: Vec<Arc<Alarm>>,
    /// More events follow the page.
    pub more: bool,
    /// Events after the asked id are no longer held (trimmed): the page starts at the oldest
    /// one left, `oldest`.
    pub gap: bool,
    pub oldest: Option<EventId>,
}

/// The active alarms after every event up to `through`: rule id → its trigger.
#[derive(Debug, Clone, Default)]
pub struct ActiveAlarms {
    /// Read from Redis at least once (until then the set is unknown, not empty).
    pub loaded: bool,
    pub by_rule: BTreeMap<String, Arc<Alarm>>,
    /// The last event applied (0-0: none).
    pub through: EventId,
}

impl ActiveAlarms {
    pub fn apply(&mut self, alarm: &Arc<Alarm>) {
        let e = &alarm.event;
        match e.status {
            AlarmStatus::Triggered => {
                self.by_rule.insert(e.rule_id.clone(), alarm.clone());
            }
            AlarmStatus::Recovered => {
                // Only the recovery of the alarm that is active ends it (a stale one cannot).
                if self
                    .by_rule
                    .get(&e.rule_id)
                    .is_some_and(|a| a.event.alarm_id == e.alarm_id)
                {
                    self.by_rule.remove(&e.rule_id);
                }
            }
            AlarmStatus::Acknowledged => {
                // The active alarm stays active, now acknowledged (its trigger, with who/when).
                let current = self
                    .by_rule
                    .get(&e.rule_id)
                    .filter(|a| a.event.alarm_id == e.alarm_id);
                if let Some(a) = current {
                    let mut trigger = a.event.clone();
                    trigger.ack = e.ack.clone();
                    self.by_rule.insert(e.rule_id.clone(), Alarm::new(trigger));
                }
            }
        }
        self.through = self.through.max(e.event_id);
    }

    /// The active alarms, oldest trigger first.
    pub fn in_order(&self) -> Vec<&Arc<Alarm>> {
        let mut v: Vec<_> = self.by_rule.values().collect();
        v.sort_by_key(|a| a.event.event_id);
        v
    }
}

/// A trigger as `alarm:active` stores it (`{"alarm_id":…,"rule_id":…,"channel_id":…,
/// "data_type":…,"point_id":…,"level":…,"value":…,"message":…,"operator":…,"threshold":…,
/// "triggered_at":…,"event_id":…}`) → the trigger event.
pub fn parse_active(json: &[u8]) -> Result<AlarmEvent, BadRecord> {
    use simd_json::prelude::*;
    let mut buf = json.to_vec();
    let v = simd_json::to_borrowed_value(&mut buf).map_err(|_| BadRecord("not JSON"))?;
    let s = |k: &'static str| v.get_str(k).ok_or(BadRecord(k));
    let n = |k: &'static str| v.get_u64(k).ok_or(BadRecord(k));
    // Numbers keep their decimal spelling as written by the library.
    let num = |k: &'static str| match v.get(k) {
        Some(x) if x.is_number() => Ok(Value::from_redis(&x.encode())),
        _ => Err(BadRecord(k)),
    };
    Ok(AlarmEvent {
        event_id: EventId::parse(s("event_id")?).ok_or(BadRecord("event_id"))?,
        alarm_id: s("alarm_id")?.to_string(),
        rule_id: s("rule_id")?.to_string(),
        channel: u32::try_from(n("channel_id")?)
            .ok()
            .filter(|c| *c > 0)
            .map(ChannelId)
            .ok_or(BadRecord("channel_id"))?,
        data_type: DataType::parse(s("data_type")?).ok_or(BadRecord("data_type"))?,
        point: u32::try_from(n("point_id")?).map_err(|_| BadRecord("point_id"))?,
        status: AlarmStatus::Triggered,
        level: u8::try_from(n("level")?)
            .ok()
            .filter(|l| *l <= 3)
            .ok_or(BadRecord("level"))?,
        value: Some(num("value")?),
        message: s("message")?.to_string(),
        operator: s("operator")?.to_string(),
        threshold: num("threshold")?,
        time_ms: i64::try_from(n("triggered_at")?).map_err(|_| BadRecord("triggered_at"))?,
        ack: match (v.get_str("acknowledged_by"), v.get_i64("acknowledged_at")) {
            (Some(by), Some(at_ms)) => Some(Ack {
                by: by.to_string(),
                at_ms,
            }),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn event(id: &str, alarm: &str, rule: &str, status: &str) -> Arc<Alarm> {
        let f = fields(&[
            ("alarm_id", alarm),
            ("rule_id", rule),
            ("channel_id", "1001"),
            ("data_type", "T"),
            ("point_id", "1"),
            ("status", status),
            ("level", "2"),
            ("value", "95.5"),
            ("message", "Temperature exceeds threshold"),
            ("operator", ">"),
            ("threshold", "90"),
            ("time", "1733150000123"),
        ]);
        Alarm::new(AlarmEvent::from_fields(EventId::parse(id).unwrap(), &f).unwrap())
    }

    #[test]
    fn event_ids_order_and_round_trip() {
        let a = EventId::parse("1733150000123-0").unwrap();
        let b = EventId::parse("1733150000123-1").unwrap();
        assert!(a < b && b < EventId::parse("1733150000124").unwrap());
        assert_eq!(a.to_string(), "1733150000123-0");
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "1 -2",
            "+1-0",
            "123456789012345678901-0",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn active_set_follows_triggers_and_recoveries() {
        let mut set = ActiveAlarms::default();
        set.apply(&event("10-0", "ALM_1", "hot", "1"));
        set.apply(&event("11-0", "ALM_2", "cold", "1"));
        assert_eq!(set.by_rule.len(), 2);
        // A recovery of an older alarm of the same rule does not end the current one.
        set.apply(&event("12-0", "ALM_0", "hot", "0"));
        assert_eq!(set.by_rule.len(), 2);
        set.apply(&event("13-0", "ALM_1", "hot", "0"));
        assert_eq!(
            set.in_order()
                .iter()
                .map(|a| a.event.alarm_id.as_str())
                .collect::<Vec<_>>(),
            ["ALM_2"]
        );
        assert_eq!(set.through.to_string(), "13-0");
    }

    #[test]
    fn an_acknowledgement_keeps_the_alarm_active_and_says_who() {
        let mut set = ActiveAlarms::default();
        set.apply(&event("10-0", "ALM_1", "hot", "1"));
        let mut f = fields(&[
            ("alarm_id", "ALM_1"),
            ("rule_id", "hot"),
            ("channel_id", "1001"),
            ("data_type", "T"),
            ("point_id", "1"),
            ("status", "ack"),
            ("level", "2"),
            ("value", "95.5"),
            ("message", "m"),
            ("operator", ">"),
            ("threshold", "90"),
            ("time", "1733150000200"),
            ("acknowledged_by", "olga"),
            ("acknowledged_at", "1733150000200"),
        ]);
        let ack = Alarm::new(AlarmEvent::from_fields(EventId::parse("11-0").unwrap(), &f).unwrap());
        assert!(String::from_utf8_lossy(&ack.frame).contains(r#""type":"alarm_ack""#));
        set.apply(&ack);
        let a = &set.by_rule["hot"];
        assert_eq!(a.event.status, AlarmStatus::Triggered);
        assert_eq!(a.event.event_id.to_string(), "10-0", "still the trigger");
        assert_eq!(a.event.ack.as_ref().map(|k| k.by.as_str()), Some("olga"));
        // An acknowledgement of another (older) alarm of the rule changes nothing.
        f[0].1 = b"ALM_0".to_vec();
        let stale =
            Alarm::new(AlarmEvent::from_fields(EventId::parse("12-0").unwrap(), &f).unwrap());
        set.apply(&stale);
        assert_eq!(
            set.by_rule["hot"].event.ack.as_ref().unwrap().at_ms,
            1733150000200
        );
        f.retain(|(k, _)| k != b"acknowledged_by");
        assert_eq!(
            AlarmEvent::from_fields(EventId::default(), &f).unwrap_err(),
            BadRecord("acknowledged_by")
        );
    }

    #[test]
    fn unreadable_records_say_which_field() {
        let mut f = fields(&[("alarm_id", "ALM_1"), ("status", "7")]);
        assert_eq!(
            AlarmEvent::from_fields(EventId::default(), &f),
            Err(BadRecord("status"))
        );
        f[1].1 = b"1".to_vec();
        assert_eq!(
            AlarmEvent::from_fields(EventId::default(), &f).unwrap_err(),
            BadRecord("value")
        );
    }

    #[test]
    fn parses_the_active_record_the_library_writes() {
        let json = br#"{"alarm_id":"ALM_3","rule_id":"hot","channel_id":1001,"data_type":"T","point_id":1,"level":2,"value":95.5,"message":"Temperature exceeds threshold","operator":">","threshold":90,"triggered_at":1733150000123,"event_id":"1733150000123-0"}"#;
        let e = parse_active(json).unwrap();
        assert_eq!(e.alarm_id, "ALM_3");
        assert_eq!(e.value.as_ref().unwrap().json(), "95.5");
        assert_eq!(e.threshold.json(), "90");
        assert_eq!(e.event_id.to_string(), "1733150000123-0");
        assert_eq!(parse_active(b"{}"), Err(BadRecord("event_id")));
        assert_eq!(parse_active(b"[").unwrap_err(), BadRecord("not JSON"));
    }
}
