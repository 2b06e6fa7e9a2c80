//! Reading a Redis stream from a cursor (the alarm log, the control results): a stream id
//! is the cursor, `XRANGE (after` resumes exactly after it.

use super::{as_string, hash_fields, FeedError};
use crate::alarm::EventId;

/// An entry: its id and its field/value pairs.
pub type Entry = crate::alarm::StreamEntry;

/// A stream range reply: `[[id, [field, value, …]], …]`.
fn entries(v: redis::Value) -> Result<Vec<Entry>, FeedError> {
    let redis::Value::Array(items) = v else {
        return Err(FeedError::UnexpectedReply("XRANGE"));
    };
    items
        .into_iter()
        .map(|item| {
            let redis::Value::Array(mut pair) = item else {
                return Err(FeedError::UnexpectedReply("XRANGE"));
            };
            if pair.len() != 2 {
                return Err(FeedError::UnexpectedReply("XRANGE"));
            }
            let fields = hash_fields(pair.pop().expect("two items"));
            let id = as_string(&pair[0])
                .and_then(|s| EventId::parse(&s))
                .ok_or(FeedError::UnexpectedReply("XRANGE"))?;
            Ok((id, fields))
        })
        .collect()
}

/// At most `count` entries of `key` after `after`, oldest first.
pub fn after(
    con: &mut redis::Connection,
    key: &str,
    after: EventId,
    count: usize,
) -> Result<Vec<Entry>, FeedError> {
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query(con)?;
    entries(reply)
}

/// The id of `key`'s last entry (0-0 when there is none).
pub fn end(con: &mut redis::Connection, key: &str) -> Result<EventId, FeedError> {
    let last: redis::Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    Ok(entries(last)?
        .first()
        .map(|(id, _)| *id)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value as V;

    #[test]
    fn decodes_a_range_reply() {
        let bulk = |s: &str| V::BulkString(s.as_bytes().to_vec());
        let reply = V::Array(vec![V::Array(vec![
            bulk("5-1"),
            V::Array(vec![bulk("status"), bulk("1")]),
        ])]);
        let e = entries(reply).unwrap();
        assert_eq!(e[0].0, EventId { ms: 5, seq: 1 });
        assert_eq!(e[0].1, vec![(b"status".to_vec(), b"1".to_vec())]);
        assert!(entries(V::Int(1)).is_err());
        assert!(entries(V::Array(vec![V::Array(vec![bulk("x"), V::Array(vec![])])])).is_err());
    }
}
