//! What the feed hands every shard after a collect that changed something: the new snapshot,
//! the changed (channel, type)s with their changed points rendered once as JSON fragments,
//! and a cache where the first shard to build a frame leaves it for the others.

use super::change::Change;
use super::{Snapshot, TypeState};
use crate::model::{ChannelId, DataType, PointId, TypeMask};
use crate::wire::values::{values, write_update};
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
    /// Shared by every group's pending set that takes this change (no per-group copy).
    pub points: Arc<[PointId]>,
    /// `{"channel_id":…,"data_type":…,"values":{changed points}}`, rendered once.
    pub fragment: Arc<[u8]>,
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

/// The update object for `points` of `state` (points that no longer exist are skipped).
pub fn render_update(
    channel: ChannelId,
    t: DataType,
    state: &TypeState,
    points: &[PointId],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + points.len() * 16);
    if points.len() == state.points.len() {
        write_update(&mut out, channel, t, &state.values_json);
        return out;
    }
    let selected: Vec<_> = points
        .iter()
        .filter_map(|p| {
            let i = state.points.binary_search_by_key(p, |(id, _)| *id).ok()?;
            Some(state.points[i].clone())
        })
        .collect();
    write_update(&mut out, channel, t, &values(&selected));
    out
}

impl Tick {
    /// Builds the tick from the feed's changes; each fragment is rendered exactly once here.
    pub fn new(snapshot: Arc<Snapshot>, changes: &[Change], time_ms: i64) -> Tick {
        let changes = changes
            .iter()
            .filter_map(|c| {
                let state = c.state.as_ref()?;
                if c.points.is_empty() {
                    return None;
                }
                Some(TickChange {
                    channel: c.channel,
                    data_type: c.data_type,
                    fragment: render_update(c.channel, c.data_type, state, &c.points).into(),
                    points: c.points.as_slice().into(),
                })
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
