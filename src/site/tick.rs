//! What the feed hands every shard after a collect that changed something: the new snapshot,
//! the changed (channel, type)s with their changed points rendered once as JSON fragments,
//! and a cache where the first shard to build a frame leaves it for the others.

use super::change::Change;
use super::{Snapshot, TypeState};
use crate::model::{ChannelId, DataType, PointId, TypeMask};
use crate::wire::values::{values, write_removal, write_update};
use crate::wire::{iso, Frame};
use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};

/// The channels and types a group of clients watches, sorted: the identity of a shared frame.
pub type SubKey = Vec<(ChannelId, TypeMask)>;

/// One changed (channel, type) in a tick.
#[derive(Debug, Clone)]
pub struct TickChange {
    pub channel: ChannelId,
    pub data_type: DataType,
    /// Changed and vanished points. Shared by every group's pending set that takes this
    /// change (no per-group copy).
    pub points: Arc<[PointId]>,
    /// `{"channel_id":…,"data_type":…,"values":{changed points}}`, rendered once; empty when
    /// the change only removed points.
    pub fragment: Arc<[u8]>,
    /// `{"channel_id":…,"data_type":…,"points":[vanished ids]}`; empty when none vanished.
    pub removal: Arc<[u8]>,
}

/// Cache key: the same subscription pushed over the same seq range has the same bytes.
type FrameKey = (Arc<SubKey>, u64, u64);

pub struct Tick {
    /// The tick's number: push ids are `update_{seq}` / `batch_{seq}`. Redis's `netsrv:seq`
    /// while it increases; never lower than a previous tick's (see [`Tick::after`]).
    pub seq: u64,
    pub time_ms: i64,
    pub iso: String,
    pub snapshot: Arc<Snapshot>,
    pub changes: Vec<TickChange>,
    frames: Mutex<HashMap<FrameKey, Frame>>,
}

/// A change rendered: its update object and its removal object, each `None` when empty.
pub type Rendered = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The update object for the `points` present in `state` and the removal object for those
/// that are not (a missing state has no points).
pub fn render_change(
    channel: ChannelId,
    t: DataType,
    state: Option<&TypeState>,
    points: &[PointId],
) -> Rendered {
    let Some(state) = state else {
        return (
            None,
            (!points.is_empty()).then(|| removal(channel, t, points)),
        );
    };
    let update = |values_json: &[u8]| {
        let mut out = Vec::with_capacity(48 + values_json.len());
        write_update(&mut out, channel, t, values_json);
        out
    };
    let all = points.len() == state.points.len()
        && points.iter().zip(&state.points).all(|(p, (id, _))| p == id);
    if all {
        return (Some(update(&state.values_json)), None);
    }
    let mut present = Vec::with_capacity(points.len());
    let mut gone = Vec::new();
    for p in points {
        match state.points.binary_search_by_key(p, |(id, _)| *id) {
            Ok(i) => present.push(&state.points[i]),
            Err(_) => gone.push(*p),
        }
    }
    (
        (!present.is_empty()).then(|| update(&values(present))),
        (!gone.is_empty()).then(|| removal(channel, t, &gone)),
    )
}

fn removal(channel: ChannelId, t: DataType, points: &[PointId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + points.len() * 6);
    write_removal(&mut out, channel, t, points);
    out
}

impl Tick {
    /// Builds the tick from the feed's changes; each fragment is rendered exactly once here.
    pub fn new(snapshot: Arc<Snapshot>, changes: &[Change], time_ms: i64) -> Tick {
        let changes = changes
            .iter()
            .filter(|c| !c.points.is_empty())
            .map(|c| {
                let (update, removal) =
                    render_change(c.channel, c.data_type, c.state.as_deref(), &c.points);
                TickChange {
                    channel: c.channel,
                    data_type: c.data_type,
                    fragment: update.unwrap_or_default().into(),
                    removal: removal.unwrap_or_default().into(),
                    points: c.points.as_slice().into(),
                }
            })
            .collect();
        Tick {
            seq: snapshot.seq,
            time_ms,
            iso: iso(time_ms),
            snapshot,
            changes,
            frames: Mutex::new(HashMap::default()),
        }
    }

    /// Push ids must increase per connection even when Redis's seq restarts (a reset or a
    /// replaced Redis): numbers this tick after `previous` when its seq is not above it.
    pub fn after(mut self, previous: u64) -> Tick {
        self.seq = self.seq.max(previous + 1);
        self
    }

    /// The frame for `key` over `(from_seq, self.seq]`: built by the first shard that asks,
    /// then shared by refcount with every other shard and connection.
    pub fn frame(&self, key: &Arc<SubKey>, from_seq: u64, build: impl FnOnce() -> Frame) -> Frame {
        let k = (key.clone(), from_seq, self.seq);
        if let Some(f) = self
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&k)
        {
            return f.clone();
        }
        let f = build();
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(k)
            .or_insert(f)
            .clone()
    }
}
