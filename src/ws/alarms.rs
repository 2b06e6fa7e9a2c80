//! How one connection receives alarms, sans-IO. A `general`/`alarm` connection is sent the
//! active alarms when it opens, then every event as the shard receives it — never conflated,
//! never dropped while the connection lives. One that reconnects with `alarms_since=<id>` is
//! sent exactly the events after that id instead (asked of the feed, up to the stream's end),
//! then the live ones: the live events that arrive while the replay is on its way are held and
//! follow it, minus those the replay already carried (event ids are ordered), so there is
//! neither a gap nor a duplicate at the seam. When the stream no longer holds what it missed,
//! it is told so (`alarm_resync`) and sent the active alarms.

use super::action::Action;
use crate::alarm::{ActiveAlarms, Alarm, EventId, Range};
use crate::json;
use std::sync::Arc;

/// Live events held while a replay is on its way; more than this and the replay is abandoned
/// for a resync (the client then gets the active set, which covers them).
const MAX_HELD: usize = 10_000;

/// Events one replay may carry; more is answered with a resync.
pub const MAX_REPLAY: usize = 10_000;

#[derive(Debug)]
pub enum AlarmFlow {
    /// `data_type=realtime`: no alarms.
    Off,
    /// Every event as it comes, above `sent` (the last one a replay sent: the replay reads
    /// Redis itself and may be ahead of the feed's live events).
    Live { sent: EventId },
    /// Waiting for the events after `since`; live ones are held meanwhile.
    Replaying {
        since: EventId,
        held: Vec<Arc<Alarm>>,
        overflow: bool,
    },
}

/// What the connection must ask the feed: the events after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRequest {
    pub after: EventId,
}

impl ReplayRequest {
    /// The feed's job: the events after `after`, at most what one replay carries, and whether
    /// some were trimmed meanwhile. Its answer goes to [`AlarmFlow::on_replay`].
    pub fn job(self) -> crate::alarm::jobs::Events {
        crate::alarm::jobs::Events {
            after: self.after,
            limit: MAX_REPLAY,
            check_gap: true,
        }
    }
}

impl AlarmFlow {
    /// Starts a connection's alarms: the active set now, or a replay to ask for.
    pub fn start(
        wants_alarms: bool,
        since: Option<EventId>,
        active: &ActiveAlarms,
        out: &mut Vec<Action>,
    ) -> (AlarmFlow, Option<ReplayRequest>) {
        if !wants_alarms {
            return (AlarmFlow::Off, None);
        }
        match since {
            None => {
                send_active(active, out);
                (
                    AlarmFlow::Live {
                        sent: EventId::default(),
                    },
                    None,
                )
            }
            Some(since) => (
                AlarmFlow::Replaying {
                    since,
                    held: Vec::new(),
                    overflow: false,
                },
                Some(ReplayRequest { after: since }),
            ),
        }
    }

    /// Live events, in order.
    pub fn on_alarms(&mut self, alarms: &[Arc<Alarm>], out: &mut Vec<Action>) {
        match self {
            AlarmFlow::Off => {}
            AlarmFlow::Live { sent } => {
                for a in alarms {
                    if a.event.event_id > *sent {
                        *sent = a.event.event_id;
                        out.push(Action::Frame(a.frame.clone()));
                    }
                }
            }
            AlarmFlow::Replaying { held, overflow, .. } => {
                if held.len() + alarms.len() > MAX_HELD {
                    *overflow = true;
                    held.clear();
                } else if !*overflow {
                    held.extend(alarms.iter().cloned());
                }
            }
        }
    }

    /// The feed's answer to the replay (`None`: it could not be asked). `active` is the
    /// shard's active set now, after the held events.
    pub fn on_replay(
        &mut self,
        range: Option<Range>,
        active: &ActiveAlarms,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let AlarmFlow::Replaying {
            since,
            held,
            overflow,
        } = std::mem::replace(
            self,
            AlarmFlow::Live {
                sent: EventId::default(),
            },
        )
        else {
            return;
        };
        let why = match &range {
            None => Some("the alarm log could not be read (Redis unavailable)"),
            Some(r) if r.gap => Some("the events after alarms_since are no longer kept"),
            Some(r) if r.more || overflow => Some("too many alarms were missed to replay"),
            Some(_) => None,
        };
        match (why, range) {
            (None, Some(r)) => {
                let mut last = since;
                for a in r.events.iter().chain(&held) {
                    // Ids increase: anything not above the last one sent was sent already.
                    if a.event.event_id > last {
                        last = a.event.event_id;
                        out.push(Action::Frame(a.frame.clone()));
                    }
                }
                // Live events the feed has not delivered yet may be among those replayed.
                *self = AlarmFlow::Live { sent: last };
            }
            (why, range) => {
                let oldest = range.and_then(|r| r.oldest);
                let why = why.unwrap_or("the alarm log could not be read");
                out.push(Action::Reply(resync(since, oldest, why, active, now)));
                send_active(active, out);
            }
        }
    }
}

fn send_active(active: &ActiveAlarms, out: &mut Vec<Action>) {
    out.extend(
        active
            .in_order()
            .into_iter()
            .map(|a| Action::Frame(a.frame.clone())),
    );
}

/// `alarm_resync {since, oldest_event_id, reason, active}`: what was missed cannot be
/// replayed; the `active` alarms follow as `alarm` messages.
fn resync(
    since: EventId,
    oldest: Option<EventId>,
    reason: &str,
    active: &ActiveAlarms,
    now: i64,
) -> Vec<u8> {
    let mut d = Vec::with_capacity(160);
    d.extend_from_slice(b"{\"since\":\"");
    d.extend_from_slice(since.to_string().as_bytes());
    d.extend_from_slice(b"\",\"oldest_event_id\":");
    match oldest {
        Some(id) => json::write_str(&mut d, &id.to_string()),
        None => d.extend_from_slice(b"null"),
    }
    d.extend_from_slice(b",\"reason\":");
    json::write_str(&mut d, reason);
    d.extend_from_slice(b",\"active\":");
    json::write_u64(&mut d, active.by_rule.len() as u64);
    d.push(b'}');
    crate::wire::ws::envelope("alarm_resync", &format!("alarm_resync_{now}"), now, &d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::{AlarmEvent, AlarmStatus};
    use crate::model::{ChannelId, DataType, Value};

    fn alarm(ms: u64, alarm_id: &str, rule: &str, status: AlarmStatus) -> Arc<Alarm> {
        Alarm::new(AlarmEvent {
            event_id: EventId { ms, seq: 0 },
            alarm_id: alarm_id.into(),
            rule_id: rule.into(),
            channel: ChannelId(1001),
            data_type: DataType::Telemetry,
            point: 1,
            status,
            level: 2,
            value: Some(Value::from_redis("95")),
            message: "m".into(),
            operator: ">".into(),
            threshold: Value::from_redis("90"),
            time_ms: ms as i64,
            ack: None,
        })
    }

    fn ids(out: &[Action]) -> Vec<String> {
        out.iter()
            .map(|a| {
                let bytes = match a {
                    Action::Frame(f) => f[2..].to_vec(),
                    Action::Reply(r) => r.clone(),
                    other => panic!("{other:?}"),
                };
                let s = String::from_utf8(bytes).unwrap();
                let at = s.find("\"id\":\"").unwrap() + 6;
                s[at..at + s[at..].find('"').unwrap()].to_string()
            })
            .collect()
    }

    fn active(alarms: &[Arc<Alarm>]) -> ActiveAlarms {
        let mut set = ActiveAlarms::default();
        for a in alarms {
            set.apply(a);
        }
        set
    }

    #[test]
    fn a_new_connection_gets_the_active_alarms_then_live_ones() {
        let a1 = alarm(10, "ALM_1", "r1", AlarmStatus::Triggered);
        let a2 = alarm(11, "ALM_2", "r2", AlarmStatus::Triggered);
        let set = active(&[a1.clone(), a2.clone()]);
        let mut out = Vec::new();
        let (mut flow, ask) = AlarmFlow::start(true, None, &set, &mut out);
        assert_eq!(ask, None);
        assert_eq!(ids(&out), ["alarm_10-0", "alarm_11-0"]);
        out.clear();
        flow.on_alarms(
            &[alarm(12, "ALM_1", "r1", AlarmStatus::Recovered)],
            &mut out,
        );
        assert_eq!(ids(&out), ["alarm_12-0"]);
        let (mut off, _) = AlarmFlow::start(false, None, &set, &mut out);
        out.clear();
        off.on_alarms(&[a1], &mut out);
        assert!(out.is_empty(), "realtime connections get no alarms");
    }

    #[test]
    fn a_replay_is_followed_by_the_events_held_meanwhile_without_gap_or_duplicate() {
        let e: Vec<_> = (10..16)
            .map(|ms| {
                alarm(
                    ms,
                    &format!("ALM_{ms}"),
                    &format!("r{ms}"),
                    AlarmStatus::Triggered,
                )
            })
            .collect();
        let mut out = Vec::new();
        // The client saw up to 11; live events 13..15 arrive while the replay (which read
        // the stream up to 14) is on its way.
        let (mut flow, ask) =
            AlarmFlow::start(true, Some(e[1].event.event_id), &active(&e[..4]), &mut out);
        assert!(out.is_empty(), "no active-alarms preamble on a replay");
        assert_eq!(ask.unwrap().after.ms, 11);
        flow.on_alarms(&e[3..5], &mut out);
        flow.on_alarms(&e[5..6], &mut out);
        assert!(out.is_empty(), "live events wait for the replay");
        flow.on_replay(
            Some(Range {
                events: e[2..5].to_vec(),
                ..Range::default()
            }),
            &active(&e),
            0,
            &mut out,
        );
        assert_eq!(
            ids(&out),
            ["alarm_12-0", "alarm_13-0", "alarm_14-0", "alarm_15-0"]
        );
        out.clear();
        flow.on_alarms(
            &[alarm(16, "ALM_16", "r16", AlarmStatus::Triggered)],
            &mut out,
        );
        assert_eq!(ids(&out), ["alarm_16-0"]);
    }

    #[test]
    fn a_replay_ahead_of_the_feed_is_not_followed_by_the_same_events_live() {
        // The replay read the stream (up to 13) before the feed delivered 13 live: found in
        // the shard's drill behind HAProxy, where a reconnect lands while the feed is a round
        // behind Redis.
        let e: Vec<_> = (10..15)
            .map(|ms| alarm(ms, &format!("ALM_{ms}"), "r", AlarmStatus::Triggered))
            .collect();
        let mut out = Vec::new();
        let (mut flow, _) =
            AlarmFlow::start(true, Some(e[1].event.event_id), &active(&[]), &mut out);
        flow.on_replay(
            Some(Range {
                events: e[2..4].to_vec(),
                ..Range::default()
            }),
            &active(&[]),
            0,
            &mut out,
        );
        assert_eq!(ids(&out), ["alarm_12-0", "alarm_13-0"]);
        out.clear();
        flow.on_alarms(&e[3..5], &mut out);
        assert_eq!(ids(&out), ["alarm_14-0"], "13 was replayed already");
    }

    #[test]
    fn a_gap_is_told_and_answered_with_the_active_set() {
        let a = alarm(20, "ALM_20", "r", AlarmStatus::Triggered);
        let mut out = Vec::new();
        let (mut flow, _) = AlarmFlow::start(
            true,
            Some(EventId { ms: 1, seq: 0 }),
            &active(&[]),
            &mut out,
        );
        flow.on_alarms(std::slice::from_ref(&a), &mut out);
        flow.on_replay(
            Some(Range {
                gap: true,
                oldest: Some(EventId { ms: 5, seq: 0 }),
                ..Range::default()
            }),
            &active(std::slice::from_ref(&a)),
            7,
            &mut out,
        );
        assert_eq!(ids(&out), ["alarm_resync_7", "alarm_20-0"]);
        let Action::Reply(r) = &out[0] else { panic!() };
        let r = String::from_utf8(r.clone()).unwrap();
        assert!(
            r.ends_with(r#""data":{"since":"1-0","oldest_event_id":"5-0","reason":"the events after alarms_since are no longer kept","active":1}}"#),
            "{r}"
        );
    }
}
