//! The feed's reading of `alarm:events`: every event after the last one read, in order, so
//! none is skipped across a Redis reconnect while the stream holds it; the active set is
//! loaded from `alarm:active` when the feed first meets a Redis (or a reset one) and then
//! follows the events. Replays for reconnecting clients and the REST event log read ranges
//! (`alarm/jobs.rs`).

use super::{hash_fields, stream, FeedError};
use crate::alarm::{parse_active, ActiveAlarms, Alarm, AlarmEvent, EventId};
use crate::log;
use std::sync::Arc;

pub const EVENTS_KEY: &str = "alarm:events";
pub const ACTIVE_KEY: &str = "alarm:active";
/// Events read per round trip.
const PAGE: usize = 1000;

#[derive(Default)]
pub struct AlarmReader {
    /// The last event read; `None` until loaded from this Redis.
    cursor: Option<EventId>,
    active: Arc<ActiveAlarms>,
}

impl AlarmReader {
    pub fn active(&self) -> &Arc<ActiveAlarms> {
        &self.active
    }

    /// Redis was reset or replaced: the next poll loads the active set afresh.
    pub fn reset(&mut self) {
        self.cursor = None;
    }

    /// New events since the last call (loading the active set first when needed; see
    /// [`AlarmReader::active`] for the set after them); `None` when nothing changed.
    pub fn poll(
        &mut self,
        con: &mut redis::Connection,
    ) -> Result<Option<Vec<Arc<Alarm>>>, FeedError> {
        let Some(cursor) = self.cursor else {
            self.load(con)?;
            return Ok(Some(Vec::new()));
        };
        let mut new = Vec::new();
        let mut after = cursor;
        loop {
            let page = read_after(con, after, PAGE)?;
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                after = last.event.event_id;
            }
            new.extend(page);
            if !full {
                break;
            }
        }
        if new.is_empty() {
            return Ok(None);
        }
        self.cursor = Some(after);
        let mut active = (*self.active).clone();
        for a in &new {
            active.apply(a);
        }
        self.active = Arc::new(active);
        Ok(Some(new))
    }

    /// The stream's end becomes the cursor; the active set is read from `alarm:active`.
    fn load(&mut self, con: &mut redis::Connection) -> Result<(), FeedError> {
        let through = stream::end(con, EVENTS_KEY)?;
        let active: redis::Value = redis::cmd("HGETALL").arg(ACTIVE_KEY).query(con)?;
        let mut set = ActiveAlarms {
            loaded: true,
            through,
            ..ActiveAlarms::default()
        };
        for (rule, json) in hash_fields(active) {
            match parse_active(&json) {
                Ok(e) => {
                    set.by_rule.insert(e.rule_id.clone(), Alarm::new(e));
                }
                Err(e) => log::warn(&format!(
                    "{ACTIVE_KEY} field '{}': {e}; skipped",
                    String::from_utf8_lossy(&rule)
                )),
            }
        }
        self.cursor = Some(through);
        self.active = Arc::new(set);
        Ok(())
    }
}

/// `XRANGE alarm:events (after + COUNT count`, decoded; unreadable entries are logged and
/// skipped (one bad entry must not stop every later alarm).
pub(crate) fn read_after(
    con: &mut redis::Connection,
    after: EventId,
    count: usize,
) -> Result<Vec<Arc<Alarm>>, FeedError> {
    let mut out = Vec::new();
    for (id, fields) in stream::after(con, EVENTS_KEY, after, count)? {
        match AlarmEvent::from_fields(id, &fields) {
            Ok(e) => out.push(Alarm::new(e)),
            Err(e) => log::warn(&format!("{EVENTS_KEY} entry {id}: {e}; skipped")),
        }
    }
    Ok(out)
}
