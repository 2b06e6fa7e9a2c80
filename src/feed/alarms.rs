//! The feed's reading of `alarm:events`: every event after the last one read, in order, so
//! none is skipped across a Redis reconnect while the stream holds it; the active set is
//! loaded from `alarm:active` when the feed first meets a Redis (or a reset one) and then
//! follows the events. Replays for reconnecting clients and the REST event log read ranges.

use super::{as_string, hash_fields, is_connection_error, stream, FeedError};
use crate::alarm::{parse_active, ActiveAlarms, Alarm, AlarmEvent, EventId, Range};
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

/// At most `limit` events after `after`. With `check_gap`, a
/// page whose events the stream no longer holds in full says so.
pub fn range(
    con: &mut redis::Connection,
    after: EventId,
    limit: usize,
    check_gap: bool,
) -> Result<Range, FeedError> {
    let mut page = Range::default();
    if check_gap {
        let info: redis::Value = match redis::cmd("XINFO").arg("STREAM").arg(EVENTS_KEY).query(con)
        {
            Ok(v) => v,
            Err(e) if is_connection_error(&e) => return Err(e.into()),
            // No stream: no events at all.
            Err(_) => return Ok(page),
        };
        (page.gap, page.oldest) = gap_after(&info, after);
    }
    page.events = read_after(con, after, limit + 1)?;
    if page.events.len() > limit {
        page.events.truncate(limit);
        page.more = true;
    }
    Ok(page)
}

/// Whether events after `after` may be gone, and the oldest id still held, from an `XINFO
/// STREAM` reply (RESP2: a flat array of names and values; RESP3: a map). `XDEL` records the
/// highest id it removed (`max-deleted-entry-id`); trimming (`MAXLEN`) does not in Redis 7.0,
/// but it removes the oldest entries: when some were removed (`entries-added` > `length`)
/// and `after` is older than the first entry left, what followed `after` may have gone too.
fn gap_after(info: &redis::Value, after: EventId) -> (bool, Option<EventId>) {
    let pairs: Vec<(&redis::Value, &redis::Value)> = match info {
        redis::Value::Array(items) => items.chunks_exact(2).map(|p| (&p[0], &p[1])).collect(),
        redis::Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    };
    let id = |v: &redis::Value| as_string(v).and_then(|s| EventId::parse(&s));
    let (mut deleted, mut first, mut last) = (None, None, None);
    let (mut added, mut length) = (0u64, 0u64);
    for (k, v) in pairs {
        match as_string(k).as_deref() {
            Some("max-deleted-entry-id") => deleted = id(v),
            Some("last-generated-id") => last = id(v),
            Some("entries-added") => added = super::as_u64(v).unwrap_or(0),
            Some("length") => length = super::as_u64(v).unwrap_or(0),
            Some("first-entry") => {
                if let redis::Value::Array(entry) = v {
                    first = entry.first().and_then(id);
                }
            }
            _ => {}
        }
    }
    let trimmed = added > length
        && match first {
            Some(first) => after < first,
            None => last.is_some_and(|last| after < last),
        };
    (trimmed || deleted.is_some_and(|d| d > after), first)
}

/// `XRANGE alarm:events (after + COUNT count`, decoded; unreadable entries are logged and
/// skipped (one bad entry must not stop every later alarm).
fn read_after(
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

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value as V;

    #[test]
    fn a_trimmed_or_deleted_past_is_a_gap() {
        let bulk = |s: &str| V::BulkString(s.as_bytes().to_vec());
        let info = |added: i64, length: i64, deleted: &str, first: Option<&str>| {
            V::Array(vec![
                bulk("length"),
                V::Int(length),
                bulk("last-generated-id"),
                bulk("30-0"),
                bulk("max-deleted-entry-id"),
                bulk(deleted),
                bulk("entries-added"),
                V::Int(added),
                bulk("first-entry"),
                first.map_or(V::Nil, |f| V::Array(vec![bulk(f), V::Array(vec![])])),
            ])
        };
        let at = |ms| EventId { ms, seq: 0 };
        // Never trimmed: no gap, whatever the id.
        assert_eq!(
            gap_after(&info(3, 3, "0-0", Some("10-0")), at(5)),
            (false, Some(at(10)))
        );
        // Trimmed: a client older than the first entry left may have lost events.
        assert_eq!(
            gap_after(&info(3, 1, "0-0", Some("30-0")), at(10)),
            (true, Some(at(30)))
        );
        assert!(!gap_after(&info(3, 1, "0-0", Some("30-0")), at(30)).0);
        // Trimmed to nothing.
        assert!(gap_after(&info(3, 0, "0-0", None), at(10)).0);
        assert!(!gap_after(&info(3, 0, "0-0", None), at(30)).0);
        // XDEL after the client's id.
        assert!(gap_after(&info(3, 2, "20-0", Some("10-0")), at(15)).0);
    }
}
