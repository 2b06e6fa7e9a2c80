//! The alarms' Redis jobs: a page of the event log (`GET /api/alarms/events`, a reconnecting
//! client's replay) and an acknowledgement (`alarmsrv_ack`).

use super::{EventId, Range};
use crate::feed::alarms::{read_after, ACTIVE_KEY, EVENTS_KEY};
use crate::job::{as_string, as_u64, is_connection_error, Job, JobError, Redis};

/// At most `limit` events of `alarm:events` after `after`; with `check_gap`, whether some
/// after `after` were trimmed.
pub struct Events {
    pub after: EventId,
    pub limit: usize,
    pub check_gap: bool,
}

impl Job for Events {
    type Output = Range;

    fn run(self, redis: &mut Redis<'_>) -> Result<Range, JobError> {
        range(redis.con, self.after, self.limit, self.check_gap)
    }
}

/// `alarmsrv_ack`: an active alarm acknowledged by `by`.
pub struct Ack {
    pub alarm_id: String,
    pub by: String,
}

/// Who acknowledged an alarm and when (the first one's, when it had been before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub by: String,
    pub at: Option<i64>,
    pub already: bool,
}

impl Job for Ack {
    type Output = Acked;

    fn run(self, redis: &mut Redis<'_>) -> Result<Acked, JobError> {
        let reply: redis::Value = redis::cmd("FCALL")
            .arg("alarmsrv_ack")
            .arg(1)
            .arg(ACTIVE_KEY)
            .arg(&self.alarm_id)
            .arg(&self.by)
            .query(redis.con)?;
        let text = |v: &redis::Value| match v {
            redis::Value::Int(n) => Some(n.to_string()),
            v => as_string(v),
        };
        match reply {
            redis::Value::Array(parts) if parts.len() == 3 => Ok(Acked {
                by: text(&parts[0]).unwrap_or_default(),
                at: text(&parts[1]).and_then(|t| t.parse().ok()),
                already: text(&parts[2]).as_deref() == Some("0"),
            }),
            _ => Err(JobError::Unexpected("alarmsrv_ack")),
        }
    }
}

/// At most `limit` events after `after`. With `check_gap`, a
/// page whose events the stream no longer holds in full says so.
pub fn range(
    con: &mut redis::Connection,
    after: EventId,
    limit: usize,
    check_gap: bool,
) -> Result<Range, JobError> {
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
            Some("entries-added") => added = as_u64(v).unwrap_or(0),
            Some("length") => length = as_u64(v).unwrap_or(0),
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
