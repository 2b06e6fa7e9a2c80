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
    /// Points whose value is new or different (sorted); what a push carries.
    pub points: Vec<PointId>,
}

/// Points of `new` that are absent from `old` or hold another value (both sorted by id).
pub fn changed_points(old: Option<&TypeState>, new: &TypeState) -> Vec<PointId> {
    let Some(old) = old else {
        return new.points.iter().map(|(id, _)| *id).collect();
    };
    let mut out = Vec::new();
    let mut o = old.points.iter().peekable();
    for (id, v) in &new.points {
        while o.next_if(|(oid, _)| oid < id).is_some() {}
        match o.peek() {
            Some((oid, ov)) if oid == id && ov == v => {}
            _ => out.push(*id),
        }
    }
    out
}
