//! The feed's working copy of the site: applies the hash contents Redis returns, reports
//! what changed. Pure: the feed does the reading.

use super::change::{changed_points, Change};
use super::{ChannelState, TypeState};
use crate::model::{parse_hash_member, parse_u32_digits, ChannelId, DataType, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Parses an `HGETALL` reply (field, value, field, value…) into a type state. Fields starting
/// with `_` are metadata; fields that are not point ids are ignored (they are not points).
pub fn parse_hash(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<TypeState> {
    if fields.is_empty() {
        return None;
    }
    let mut timestamp = 0i64;
    let mut written_ms = 0i64;
    let mut points = Vec::with_capacity(fields.len());
    for (k, v) in fields {
        let Ok(k) = std::str::from_utf8(k) else {
            continue;
        };
        let v = String::from_utf8_lossy(v);
        if k == "_timestamp" {
            timestamp = v
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| v.trim().parse::<f64>().ok().map(|f| f as i64))
                .unwrap_or(0);
        } else if k == "_written_ms" {
            written_ms = v.trim().parse::<i64>().unwrap_or(0);
        } else if let Some(id) = parse_u32_digits(k) {
            points.push((id, Value::from_redis(&v)));
        }
    }
    Some(TypeState::new(timestamp, points).written_at(written_ms))
}

/// The gateway's current state while the feed builds it.
#[derive(Debug, Default, Clone)]
pub struct Store {
    pub channels: BTreeMap<ChannelId, ChannelState>,
}

impl Store {
    /// Applies the contents read for one dirty member; returns the change if any.
    pub fn apply(&mut self, member: &str, fields: &[(Vec<u8>, Vec<u8>)]) -> Option<Change> {
        let (channel, data_type) = parse_hash_member(member)?;
        let new = parse_hash(fields);
        let slot_now = self
            .channels
            .get(&channel)
            .and_then(|c| c.get(data_type).cloned());
        match (slot_now, new) {
            (None, None) => None,
            (Some(old), Some(new)) if *old == new => None,
            (old, Some(new)) => {
                let points = changed_points(old.as_deref(), Some(&new));
                let new = Arc::new(new);
                let ch = self.channels.entry(channel).or_default();
                ch.types[data_type.index()] = Some(new.clone());
                Some(Change {
                    channel,
                    data_type,
                    state: Some(new),
                    points,
                })
            }
            (Some(old), None) => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.types[data_type.index()] = None;
                    if ch.is_empty() {
                        self.channels.remove(&channel);
                    }
                }
                Some(Change {
                    channel,
                    data_type,
                    state: None,
                    points: changed_points(Some(&old), None),
                })
            }
        }
    }
}

impl Store {
    /// Every (channel, type) that differs between `self` and `new`, as changes to `new`.
    pub fn diff(&self, new: &Store) -> Vec<Change> {
        let mut out = Vec::new();
        let empty = ChannelState::default();
        let ids: std::collections::BTreeSet<_> =
            self.channels.keys().chain(new.channels.keys()).collect();
        for id in ids {
            let old = self.channels.get(id).unwrap_or(&empty);
            let cur = new.channels.get(id).unwrap_or(&empty);
            for t in DataType::ALL {
                let (a, b) = (old.get(t), cur.get(t));
                let same = match (a, b) {
                    (Some(a), Some(b)) => a == b,
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    out.push(Change {
                        channel: *id,
                        data_type: t,
                        state: b.cloned(),
                        points: changed_points(a.map(|a| &**a), b.map(|b| &**b)),
                    });
                }
            }
        }
        out
    }
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

    #[test]
    fn applies_and_detects_changes() {
        let mut s = Store::default();
        let f = fields(&[
            ("1", "25.6"),
            ("2", "101.3"),
            ("_timestamp", "1736755800"),
            ("name", "x"),
        ]);
        let c = s.apply("1001:T", &f).unwrap();
        assert_eq!(c.points, vec![1, 2]);
        let st = c.state.unwrap();
        assert_eq!(st.timestamp, 1_736_755_800);
        assert_eq!(&*st.values_json, br#"{"1":25.6,"2":101.3}"#);
        assert_eq!(s.apply("1001:T", &f), None, "same contents are no change");
        let f2 = fields(&[("1", "25.7"), ("2", "101.3"), ("_timestamp", "1736755801")]);
        let c2 = s.apply("1001:T", &f2).unwrap();
        assert_eq!(c2.points, vec![1], "only point 1 changed");
        assert_eq!(s.channels[&ChannelId(1001)].active_points(), 2);
        let gone = s.apply("1001:T", &[]).unwrap();
        assert!(gone.state.is_none());
        assert_eq!(gone.points, vec![1, 2], "the vanished points");
        assert!(s.channels.is_empty());
        assert_eq!(s.apply("bad", &f), None);
        s.apply("1001:T", &f);
        s.apply("1002:S", &f);
        let mut n = Store::default();
        n.apply("1001:T", &f2);
        let d = s.diff(&n);
        assert_eq!(d.len(), 2, "1001:T changed, 1002:S vanished");
        assert!(d[1].state.is_none());
        assert_eq!(d[1].points, vec![1, 2]);
    }
}
