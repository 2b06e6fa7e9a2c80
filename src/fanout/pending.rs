//! Changes waiting for a client's (or a group's) next push, conflated per point: however many
//! times a point changes before the push, the push carries its latest value once.

use crate::model::{ChannelId, DataType, PointId};
use crate::site::tick::{render_change, Rendered, TickChange};
use crate::site::Snapshot;
use crate::wire::ws::build_push;
use crate::wire::Frame;
use smallvec::SmallVec;
use std::rc::Rc;

/// A tick's change as one shard holds it. The tick's `Arc`s are shared by both shards, so
/// cloning them into thousands of pending sets made both cores bounce the same refcount
/// cache lines; a shard wraps each change once in an `Rc` and its groups share that.
pub type LocalChange = Rc<TickChange>;

#[derive(Debug, Clone)]
enum Entry {
    /// One tick contributed: its fragment (rendered once by the feed) still holds the latest
    /// values, so the push reuses those bytes. Shared, not copied.
    Single(LocalChange),
    /// Several ticks contributed: the union of their points, rendered from the latest state.
    Merged(Vec<PointId>),
}

impl Entry {
    fn points(&self) -> &[PointId] {
        match self {
            Entry::Single(c) => &c.points,
            Entry::Merged(v) => v,
        }
    }

    /// Adds `more` changed points; the entry now spans several ticks.
    fn absorb(&mut self, more: &[PointId]) {
        let mut all: Vec<PointId> = match std::mem::replace(self, Entry::Merged(Vec::new())) {
            Entry::Single(c) => c.points.to_vec(),
            Entry::Merged(v) => v,
        };
        if !more.iter().all(|p| all.binary_search(p).is_ok()) {
            all.extend_from_slice(more);
            all.sort_unstable();
            all.dedup();
        }
        *self = Entry::Merged(all);
    }
}

/// A short list (a group watches a handful of channels): linear search beats a tree here.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    entries: Vec<((ChannelId, DataType), Entry)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    fn entry(&mut self, key: (ChannelId, DataType)) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .find(|(k, _)| *k == key)
            .map(|(_, e)| e)
    }

    pub fn add(&mut self, c: &LocalChange) {
        match self.entry((c.channel, c.data_type)) {
            None => self
                .entries
                .push(((c.channel, c.data_type), Entry::Single(c.clone()))),
            Some(e) => e.absorb(&c.points),
        }
    }

    pub fn merge(&mut self, other: &Pending) {
        for (k, o) in &other.entries {
            match self.entry(*k) {
                None => self.entries.push((*k, o.clone())),
                Some(e) => e.absorb(o.points()),
            }
        }
    }

    /// Drops what the client no longer watches.
    pub fn retain(&mut self, mut keep: impl FnMut(ChannelId, DataType) -> bool) {
        self.entries.retain(|((c, t), _)| keep(*c, *t));
    }

    /// The push for these changes with values from `snap` (the latest state): updates for
    /// the points that exist, a removal for those that vanished; `None` if nothing is left to
    /// send. Ordered by (channel, type), so the bytes depend only on the content.
    pub fn render(&mut self, snap: &Snapshot, seq: u64, iso: &str) -> Option<Frame> {
        self.entries.sort_unstable_by_key(|(k, _)| *k);
        // Entries merged over several ticks are rendered from the latest state.
        let owned: SmallVec<[Rendered; 16]> = self
            .entries
            .iter()
            .map(|((ch, t), e)| match e {
                Entry::Single(_) => (None, None),
                Entry::Merged(points) => {
                    let state = snap.channels.get(ch).and_then(|c| c.get(*t));
                    render_change(*ch, *t, state.map(|s| &**s), points)
                }
            })
            .collect();
        let mut updates: SmallVec<[&[u8]; 16]> = SmallVec::new();
        let mut removals: SmallVec<[&[u8]; 4]> = SmallVec::new();
        for ((_, e), (update, removal)) in self.entries.iter().zip(&owned) {
            let (update, removal) = match e {
                Entry::Single(c) => (&*c.fragment, &*c.removal),
                Entry::Merged(_) => (
                    update.as_deref().unwrap_or_default(),
                    removal.as_deref().unwrap_or_default(),
                ),
            };
            if !update.is_empty() {
                updates.push(update);
            }
            if !removal.is_empty() {
                removals.push(removal);
            }
        }
        build_push(seq, iso, &updates, &removals)
    }
}
