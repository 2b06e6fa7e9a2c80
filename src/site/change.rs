//! What one collect changed: a (channel, type) and the points whose value is new.

use super::TypeState;
use crate::model::{ChannelId, DataType, PointId};
use std::sync::Arc;

/// One (channel, type) whose contents changed in a collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub channel: ChannelId,
    pub data_type: DataType,
    /// The new state; `None` when the hash disappeared.
    pub state: Option<Arc<TypeState>>,
    /// Points whose value is new or different, and points that vanished (sorted): what a
    /// push carries — values for those in `state`, a removal for the others.
    pub points: Vec<PointId>,
}

/// Points of `new` that are absent from `old` or hold another value, and points of `old`
/// absent from `new` (both sorted by id; a missing state has no points).
pub fn changed_points(old: Option<&TypeState>, new: Option<&TypeState>) -> Vec<PointId> {
    let (old, new) = (
        old.map_or(&[][..], |s| &s.points[..]),
        new.map_or(&[][..], |s| &s.points[..]),
    );
    let mut out = Vec::new();
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some((oid, _)), None) => {
                out.push(*oid);
                o.next();
            }
            (None, Some((nid, _))) => {
                out.push(*nid);
                n.next();
            }
            (Some((oid, ov)), Some((nid, nv))) => {
                if oid < nid {
                    out.push(*oid);
                    o.next();
                } else if nid < oid {
                    out.push(*nid);
                    n.next();
                } else {
                    if ov != nv {
                        out.push(*nid);
                    }
                    o.next();
                    n.next();
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn state(points: &[(PointId, &str)]) -> TypeState {
        TypeState::new(
            1,
            points
                .iter()
                .map(|(p, v)| (*p, Value::from_redis(v)))
                .collect(),
        )
    }

    #[test]
    fn lists_new_changed_and_vanished_points() {
        let a = state(&[(1, "1"), (2, "2"), (4, "4")]);
        let b = state(&[(2, "2"), (3, "3"), (4, "5")]);
        assert_eq!(changed_points(Some(&a), Some(&b)), vec![1, 3, 4]);
        assert_eq!(changed_points(None, Some(&b)), vec![2, 3, 4]);
        assert_eq!(changed_points(Some(&a), None), vec![1, 2, 4]);
        assert!(changed_points(Some(&a), Some(&a)).is_empty());
    }
}
