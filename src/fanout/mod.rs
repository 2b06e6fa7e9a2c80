//! Fan-out, sans-IO: which connection gets which frame when. One `Fanout` per shard.
//!
//! Connections with the same subscription (channels × types) and interval form a *group*;
//! a group accumulates the changes it watches and, when its interval has passed, pushes ONE
//! frame that every member receives by refcount (and that other shards reuse through the
//! tick's frame cache). Per-client work on the hot path is a refcount bump and a queue push.
//!
//! A client that just subscribed (it got a snapshot) or could not keep up (over its outbound
//! budget) is *lagging*: it skips group pushes while they would come too soon or while it is
//! congested, collecting what it missed (conflated per point), and gets one personal catch-up
//! frame with the latest values before rejoining its group's rhythm.

pub mod pending;
pub mod rhythm;

use crate::model::{ChannelId, TypeMask};
use crate::site::tick::{SubKey, Tick};
use crate::site::Snapshot;
use crate::wire::close::Disconnect;
use crate::wire::values::write_update;
use crate::wire::ws::build_frame;
use crate::wire::Frame;
use pending::Pending;
pub use rhythm::{Interval, Rhythm};
use rustc_hash::FxHashMap as HashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

/// The types `sub` watches on `channel`, if it is subscribed.
fn mask_of(sub: &SubKey, channel: ChannelId) -> Option<TypeMask> {
    sub.binary_search_by_key(&channel, |(c, _)| *c)
        .ok()
        .map(|i| sub[i].1)
}

/// Connection ids are global (unique across shards) so a stale id never names a new client.
pub type ConnId = u64;
type GroupId = u64;

/// Where frames go. The shard implements it over its connections' outbound queues.
pub trait Sink {
    /// Queues `frame` for `conn`; false when the connection is over its outbound budget.
    fn offer(&mut self, conn: ConnId, frame: &Frame) -> bool;
    /// Closes `conn`.
    fn kick(&mut self, conn: ConnId, why: Disconnect);
}

struct Member {
    wants_data: bool,
    /// Sorted (channel, types); shared with the member's group (and so with every other
    /// member of it) rather than held per connection.
    sub: Arc<SubKey>,
    group: Option<GroupId>,
    /// This member's own pushes: the next is due `interval` after the previous one (or the
    /// snapshot).
    rhythm: Rhythm,
    /// What this member skipped while lagging.
    missed: Pending,
    congested_since: Option<i64>,
}

struct Group {
    key: Arc<SubKey>,
    members: Vec<ConnId>,
    pending: Pending,
    /// The group's pushes (its interval is part of its identity).
    rhythm: Rhythm,
    /// Seq of the last push (or creation): the frame covers `(from_seq, seq]`.
    from_seq: u64,
}

/// What `subscribe` answers.
#[derive(Debug)]
pub struct Subscribed {
    pub subscribed: Vec<ChannelId>,
    pub failed: Vec<ChannelId>,
    pub total: usize,
    /// One message with the current values of what was just subscribed.
    pub snapshot: Option<Frame>,
}

pub struct Fanout {
    members: HashMap<ConnId, Member>,
    groups: HashMap<GroupId, Group>,
    group_ids: HashMap<(Arc<SubKey>, Interval), GroupId>,
    /// Which groups watch a channel, and which of its types.
    by_channel: HashMap<ChannelId, Vec<(GroupId, TypeMask)>>,
    /// Groups with changes waiting, by due time (min-heap). Entries of groups deleted since
    /// are skipped when popped; group ids are never reused.
    pending_groups: BinaryHeap<Reverse<(i64, GroupId)>>,
    lagging: BTreeSet<ConnId>,
    next_group: GroupId,
    current: Arc<Tick>,
    slow_close_ms: i64,
    max_channels: usize,
    /// Channels configured (`cfg:channels`): subscribable before their first write.
    configured: Arc<BTreeSet<ChannelId>>,
}

impl Fanout {
    pub fn new(initial: Arc<Tick>, slow_close_ms: i64, max_channels: usize) -> Fanout {
        Fanout {
            members: HashMap::default(),
            groups: HashMap::default(),
            group_ids: HashMap::default(),
            by_channel: HashMap::default(),
            pending_groups: BinaryHeap::new(),
            lagging: BTreeSet::new(),
            next_group: 1,
            current: initial,
            slow_close_ms,
            max_channels,
            configured: Arc::default(),
        }
    }

    /// The configured channels changed.
    pub fn set_configured(&mut self, ids: Arc<BTreeSet<ChannelId>>) {
        self.configured = ids;
    }

    /// Whether `ch` is configured (known even without data).
    pub fn is_configured(&self, ch: ChannelId) -> bool {
        self.configured.contains(&ch)
    }

    /// The state this shard's clients are consistent with (newer ticks are still queued).
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.current.snapshot
    }

    /// Whether the site's data has been loaded from Redis (subscriptions wait until then).
    pub fn is_loaded(&self) -> bool {
        self.current.snapshot.loaded
    }

    pub fn add_member(&mut self, conn: ConnId, wants_data: bool) {
        self.members.insert(
            conn,
            Member {
                wants_data,
                sub: Arc::default(),
                group: None,
                rhythm: Rhythm::starting(Interval::DEFAULT, 0),
                missed: Pending::default(),
                congested_since: None,
            },
        );
    }

    pub fn remove_member(&mut self, conn: ConnId) {
        self.leave_group(conn);
        self.members.remove(&conn);
        self.lagging.remove(&conn);
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn leave_group(&mut self, conn: ConnId) {
        let Some(gid) = self.members.get_mut(&conn).and_then(|m| m.group.take()) else {
            return;
        };
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        if let Some(i) = g.members.iter().position(|c| *c == conn) {
            g.members.swap_remove(i);
        }
        if g.members.is_empty() {
            let g = self.groups.remove(&gid).expect("group exists");
            self.group_ids.remove(&(g.key.clone(), g.rhythm.interval));
            for (ch, _) in g.key.iter() {
                if let Some(v) = self.by_channel.get_mut(ch) {
                    v.retain(|(x, _)| *x != gid);
                    if v.is_empty() {
                        self.by_channel.remove(ch);
                    }
                }
            }
        }
    }

    /// Puts `conn` in the group of its current subscription (creating it aligned to `now`).
    fn regroup(&mut self, conn: ConnId, now: i64) {
        self.leave_group(conn);
        let Some(m) = self.members.get(&conn) else {
            return;
        };
        if m.sub.is_empty() || !m.wants_data {
            return;
        }
        let key = m.sub.clone();
        let interval = m.rhythm.interval;
        let gid = match self.group_ids.get(&(key.clone(), interval)) {
            Some(g) => *g,
            None => {
                let gid = self.next_group;
                self.next_group += 1;
                for (ch, mask) in key.iter() {
                    self.by_channel.entry(*ch).or_default().push((gid, *mask));
                }
                self.group_ids.insert((key.clone(), interval), gid);
                self.groups.insert(
                    gid,
                    Group {
                        key,
                        members: Vec::new(),
                        pending: Pending::default(),
                        rhythm: Rhythm::starting(interval, now),
                        from_seq: self.current.seq,
                    },
                );
                gid
            }
        };
        let g = self.groups.get_mut(&gid).expect("group");
        g.members.push(conn);
        let shared_key = g.key.clone();
        let m = self.members.get_mut(&conn).expect("member");
        m.group = Some(gid);
        m.sub = shared_key;
    }

    /// Adds `channels` with `types` (or updates the types of those already subscribed) and
    /// sets the connection's interval; unknown channels fail.
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        channels: &[ChannelId],
        types: TypeMask,
        interval: Interval,
        now: i64,
    ) -> Result<Subscribed, crate::error::ApiError> {
        let snap = self.current.snapshot.clone();
        // A configured channel is known before its first write.
        let (subscribed, failed): (Vec<ChannelId>, Vec<ChannelId>) = channels
            .iter()
            .partition(|c| snap.channels.contains_key(c) || self.configured.contains(c));
        let m = self
            .members
            .get_mut(&conn)
            .expect("subscribe on a registered member");
        let new = subscribed
            .iter()
            .filter(|c| mask_of(&m.sub, **c).is_none())
            .count();
        if m.sub.len() + new > self.max_channels {
            return Err(crate::error::ApiError::invalid_parameter(
                "channels",
                &format!(
                    "would exceed {} subscribed channels per connection",
                    self.max_channels
                ),
            ));
        }
        let mut sub: BTreeMap<ChannelId, TypeMask> = m.sub.iter().copied().collect();
        for ch in &subscribed {
            sub.insert(*ch, types);
        }
        m.sub = Arc::new(sub.into_iter().collect());
        m.rhythm.restart(interval, now);
        let total = m.sub.len();
        let wants_data = m.wants_data;
        // What it missed on the re-snapshotted channels is covered by the snapshot.
        let sub = m.sub.clone();
        m.missed
            .retain(|c, t| mask_of(&sub, c).is_some_and(|mask| mask.contains(t)));
        if m.missed.is_empty() && m.congested_since.is_none() {
            self.lagging.remove(&conn);
        }
        self.regroup(conn, now);
        let snapshot = wants_data.then(|| {
            let mut fragments = Vec::new();
            for ch in &subscribed {
                let Some(state) = snap.channels.get(ch) else {
                    continue;
                };
                for t in types.types() {
                    if let Some(ts) = state.get(t) {
                        let mut f = Vec::with_capacity(ts.values_json.len() + 48);
                        write_update(&mut f, *ch, t, &ts.values_json);
                        fragments.push(f);
                    }
                }
            }
            let refs: Vec<&[u8]> = fragments.iter().map(Vec::as_slice).collect();
            build_frame(self.current.seq, &crate::wire::iso(now), &refs)
        });
        Ok(Subscribed {
            subscribed,
            failed,
            total,
            snapshot,
        })
    }

    /// Removes channels (`None` = all); returns (removed, not subscribed, total left).
    pub fn unsubscribe(
        &mut self,
        conn: ConnId,
        channels: Option<&[ChannelId]>,
        now: i64,
    ) -> (Vec<ChannelId>, Vec<ChannelId>, usize) {
        let m = self
            .members
            .get_mut(&conn)
            .expect("unsubscribe on a registered member");
        let (removed, failed) = match channels {
            None => (m.sub.iter().map(|(c, _)| *c).collect(), Vec::new()),
            Some(list) => list.iter().partition(|c| mask_of(&m.sub, **c).is_some()),
        };
        m.sub = Arc::new(
            m.sub
                .iter()
                .copied()
                .filter(|(c, _)| !removed.contains(c))
                .collect(),
        );
        let sub = m.sub.clone();
        m.missed
            .retain(|c, t| mask_of(&sub, c).is_some_and(|mask| mask.contains(t)));
        let total = m.sub.len();
        self.regroup(conn, now);
        (removed, failed, total)
    }

    /// A new tick from the feed: collect what each group watches, push what is due.
    pub fn on_tick(&mut self, tick: Arc<Tick>, sink: &mut dyn Sink) {
        for c in &tick.changes {
            let Some(gids) = self.by_channel.get(&c.channel) else {
                continue;
            };
            let local: pending::LocalChange = std::rc::Rc::new(c.clone());
            for (gid, mask) in gids {
                if !mask.contains(c.data_type) {
                    continue;
                }
                let g = self.groups.get_mut(gid).expect("indexed group");
                let was_empty = g.pending.is_empty();
                g.pending.add(&local);
                if was_empty {
                    self.pending_groups
                        .push(Reverse((g.rhythm.opens_at(), *gid)));
                }
            }
        }
        let now = tick.time_ms;
        self.current = tick;
        self.run_due(now, sink);
    }

    /// Time passed without a tick: push what became due.
    pub fn on_timer(&mut self, now: i64, sink: &mut dyn Sink) {
        self.run_due(now, sink);
    }

    /// `conn`'s outbound queue drained below its budget.
    pub fn drained(&mut self, conn: ConnId, now: i64, sink: &mut dyn Sink) {
        if let Some(m) = self.members.get_mut(&conn) {
            if m.congested_since.take().is_some() {
                self.run_due(now, sink);
            }
        }
    }

    /// When `on_timer` should next run (ms), if anything is waiting.
    pub fn next_due(&self) -> Option<i64> {
        let groups = self.pending_groups.peek().map(|Reverse((due, _))| *due);
        let members = self
            .lagging
            .iter()
            .filter_map(|c| self.members.get(c))
            .map(|m| match m.congested_since {
                Some(since) => since + self.slow_close_ms,
                None => m.rhythm.opens_at(),
            });
        groups.into_iter().chain(members).min()
    }

    fn run_due(&mut self, now: i64, sink: &mut dyn Sink) {
        while let Some(&Reverse((due, gid))) = self.pending_groups.peek() {
            if due > now {
                break;
            }
            self.pending_groups.pop();
            if self.groups.get(&gid).is_some_and(|g| !g.pending.is_empty()) {
                self.push_group(gid, now, sink);
            }
        }
        self.serve_lagging(now, sink);
    }

    fn push_group(&mut self, gid: GroupId, now: i64, sink: &mut dyn Sink) {
        let tick = self.current.clone();
        let g = self.groups.get_mut(&gid).expect("due group");
        let mut pending = std::mem::take(&mut g.pending);
        let (key, from_seq) = (g.key.clone(), g.from_seq);
        g.rhythm.advance(now);
        g.from_seq = tick.seq;
        let members = std::mem::take(&mut g.members);
        let mut shared: Option<Option<Frame>> = None;
        for &conn in &members {
            let Some(m) = self.members.get_mut(&conn) else {
                continue;
            };
            if !m.rhythm.is_open(now) || m.congested_since.is_some() {
                m.missed.merge(&pending);
                self.lagging.insert(conn);
                continue;
            }
            if m.missed.is_empty() {
                let f = shared.get_or_insert_with(|| {
                    let mut build = || {
                        pending
                            .render(&tick.snapshot, tick.seq, &tick.iso)
                            .unwrap_or_else(|| Arc::from(&[][..]))
                    };
                    // Shared across shards only when it serves several clients: a one-member
                    // group's frame saves at most one build elsewhere, while the cache costs a
                    // lock, a hash and an insert per push (every group is unique in mixed
                    // subscriptions; the cache's rehashing showed in `perf`).
                    let frame = if members.len() > 1 {
                        tick.frame(&key, from_seq, build)
                    } else {
                        build()
                    };
                    Some(frame).filter(|f| !f.is_empty())
                });
                if let Some(f) = f {
                    Self::deliver(m, conn, f, now, sink, &mut self.lagging, &pending);
                }
            } else {
                // Catch-up: what it missed plus this push, latest values, one frame.
                let mut all = std::mem::take(&mut m.missed);
                all.merge(&pending);
                if let Some(f) = all.render(&tick.snapshot, tick.seq, &tick.iso) {
                    Self::deliver(m, conn, &f, now, sink, &mut self.lagging, &all);
                }
            }
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.members = members;
        }
    }

    /// Offers `frame`; on refusal the member becomes congested and keeps `content` as missed.
    fn deliver(
        m: &mut Member,
        conn: ConnId,
        frame: &Frame,
        now: i64,
        sink: &mut dyn Sink,
        lagging: &mut BTreeSet<ConnId>,
        content: &Pending,
    ) {
        if sink.offer(conn, frame) {
            m.rhythm.advance(now);
            lagging.remove(&conn);
        } else {
            m.missed.merge(content);
            m.congested_since.get_or_insert(now);
            lagging.insert(conn);
        }
    }

    fn serve_lagging(&mut self, now: i64, sink: &mut dyn Sink) {
        let lagging: Vec<ConnId> = self.lagging.iter().copied().collect();
        let tick = self.current.clone();
        for conn in lagging {
            let Some(m) = self.members.get_mut(&conn) else {
                self.lagging.remove(&conn);
                continue;
            };
            if let Some(since) = m.congested_since {
                if now - since >= self.slow_close_ms {
                    sink.kick(conn, Disconnect::TooSlow);
                    self.lagging.remove(&conn);
                }
                continue;
            }
            if m.missed.is_empty() {
                self.lagging.remove(&conn);
                continue;
            }
            if !m.rhythm.is_open(now) {
                continue;
            }
            // If the group will push soon, the member catches up in that push.
            let group = m.group.and_then(|g| self.groups.get_mut(&g));
            if group.as_ref().is_some_and(|g| !g.pending.is_empty()) {
                continue;
            }
            let mut missed = std::mem::take(&mut m.missed);
            match missed.render(&tick.snapshot, tick.seq, &tick.iso) {
                Some(frame) => {
                    Self::deliver(m, conn, &frame, now, sink, &mut self.lagging, &missed)
                }
                None => {
                    self.lagging.remove(&conn);
                }
            }
            // A quiet group adopts the member's rhythm so later pushes are shared again.
            if let Some(g) = group {
                if g.rhythm.is_open(now) {
                    g.rhythm.advance(now);
                    g.from_seq = tick.seq;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
