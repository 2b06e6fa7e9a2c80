//! Changes waiting for a client's (or a group's) next push, conflated per point: however many
//! times a point changes before the push, the push carries its latest value once.

use super::tick::{build_frame, render_update, Frame, TickChange};
use crate::model::{ChannelId, DataType, PointId};
use crate::state::Snapshot;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
struct Entry {
    points: SmallVec<[PointId; 16]>,
    /// The tick fragment when exactly one tick contributed: its values are still the latest,
    /// so the push reuses the bytes rendered once by the feed.
    fragment: Option<Arc<[u8]>>,
}

#[derive(Debug, Clone, Default)]
pub struct Pending {
    entries: BTreeMap<(ChannelId, DataType), Entry>,
}

fn merge_sorted(into: &mut SmallVec<[PointId; 16]>, more: &[PointId]) {
    if more.iter().all(|p| into.binary_search(p).is_ok()) {
        return;
    }
    into.extend_from_slice(more);
    into.sort_unstable();
    into.dedup();
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn add(&mut self, c: &TickChange) {
        match self.entries.get_mut(&(c.channel, c.data_type)) {
            None => {
                self.entries.insert(
                    (c.channel, c.data_type),
                    Entry {
                        points: SmallVec::from_slice(&c.points),
                        fragment: Some(c.fragment.clone()),
                    },
                );
            }
            Some(e) => {
                merge_sorted(&mut e.points, &c.points);
                e.fragment = None;
            }
        }
    }

    pub fn merge(&mut self, other: &Pending) {
        for (k, o) in &other.entries {
            match self.entries.get_mut(k) {
                None => {
                    self.entries.insert(*k, o.clone());
                }
                Some(e) => {
                    merge_sorted(&mut e.points, &o.points);
                    e.fragment = None;
                }
            }
        }
    }

    /// Drops what the client no longer watches.
    pub fn retain(&mut self, mut keep: impl FnMut(ChannelId, DataType) -> bool) {
        self.entries.retain(|(c, t), _| keep(*c, *t));
    }

    /// The push frame for these changes with values from `snap` (the latest state);
    /// `None` if nothing is left to send.
    pub fn render(&self, snap: &Snapshot, seq: u64, iso: &str) -> Option<Frame> {
        let mut owned: Vec<Vec<u8>> = Vec::new();
        let mut shared: Vec<Arc<[u8]>> = Vec::new();
        let mut order: Vec<(bool, usize)> = Vec::with_capacity(self.entries.len());
        for ((ch, t), e) in &self.entries {
            if let Some(f) = &e.fragment {
                order.push((true, shared.len()));
                shared.push(f.clone());
                continue;
            }
            let Some(state) = snap.channels.get(ch).and_then(|c| c.get(*t)) else {
                continue;
            };
            order.push((false, owned.len()));
            owned.push(render_update(*ch, *t, state, &e.points));
        }
        if order.is_empty() {
            return None;
        }
        let fragments: Vec<&[u8]> = order
            .iter()
            .map(|&(is_shared, i)| {
                if is_shared {
                    &*shared[i]
                } else {
                    owned[i].as_slice()
                }
            })
            .collect();
        Some(build_frame(seq, iso, &fragments))
    }
}
