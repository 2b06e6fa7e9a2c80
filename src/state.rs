//! The gateway's current view of the site, published by the feed thread and read by every
//! shard without locks: an immutable `Snapshot` behind an `ArcSwap`, replaced whole on each
//! tick that changed something. Unchanged (channel, type) entries are shared between
//! snapshots by refcount, so publishing costs O(channels) pointer copies, not a deep copy.

use crate::config::Config;
use crate::json;
use crate::model::{ChannelId, DataType, PointId, Value};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The current points of one (channel, type) hash.
#[derive(Debug, PartialEq, Eq)]
pub struct TypeState {
    /// `_timestamp` of the hash: Unix seconds of its last write.
    pub timestamp: i64,
    /// Points sorted by id.
    pub points: Vec<(PointId, Value)>,
    /// `{"1":25.6,"2":101.3}` rendered once, spliced into every response and frame.
    pub values_json: Box<[u8]>,
}

impl TypeState {
    pub fn new(timestamp: i64, mut points: Vec<(PointId, Value)>) -> TypeState {
        points.sort_unstable_by_key(|(id, _)| *id);
        let values_json = render_values(&points).into_boxed_slice();
        TypeState {
            timestamp,
            points,
            values_json,
        }
    }
}

/// Renders `{"id":value,...}` for the given points.
pub fn render_values<'a>(points: impl IntoIterator<Item = &'a (PointId, Value)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (i, (id, v)) in points.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        json::write_u64(&mut out, u64::from(*id));
        out.extend_from_slice(b"\":");
        out.extend_from_slice(v.json().as_bytes());
    }
    out.push(b'}');
    out
}

/// One channel: its four hashes, each absent until written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelState {
    pub types: [Option<Arc<TypeState>>; 4],
}

impl ChannelState {
    pub fn get(&self, t: DataType) -> Option<&Arc<TypeState>> {
        self.types[t.index()].as_ref()
    }

    /// Newest `_timestamp` of the four hashes.
    pub fn last_update(&self) -> i64 {
        self.types
            .iter()
            .flatten()
            .map(|t| t.timestamp)
            .max()
            .unwrap_or(0)
    }

    /// Points with a value across all four types.
    pub fn active_points(&self) -> usize {
        self.types.iter().flatten().map(|t| t.points.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.types.iter().all(Option::is_none)
    }
}

/// Everything the gateway knows at one instant.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `netsrv:seq` this snapshot is complete up to.
    pub seq: u64,
    /// `netsrv:epoch` of the Redis it came from ("" before the first load).
    pub epoch: String,
    /// True once the initial load from Redis has completed.
    pub loaded: bool,
    pub channels: BTreeMap<ChannelId, ChannelState>,
}

/// A dependency's health as `/health/detailed` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyHealth {
    pub healthy: bool,
    pub message: String,
}

/// State shared by the feed thread and every shard.
pub struct Shared {
    pub config: Arc<Config>,
    pub snapshot: ArcSwap<Snapshot>,
    pub redis: ArcSwap<DependencyHealth>,
    pub started: Instant,
    /// Open client connections across all shards.
    pub connections: AtomicUsize,
    /// Open connections per source address (for `max_connections_per_ip`).
    pub per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Open WebSocket sessions, per shard.
    pub websockets: Vec<AtomicUsize>,
    /// Source of connection ids, unique across shards.
    pub next_conn: AtomicU64,
    /// Live client ids (takeover, unique generated ids).
    pub registry: crate::fanout::registry::Registry,
    /// One inbox per shard: ticks from the feed, commands from other shards.
    pub inboxes: Vec<Arc<crate::shard::inbox::Inbox>>,
}

impl Shared {
    pub fn new(config: Arc<Config>) -> Arc<Shared> {
        let shards = config.shard_count();
        Arc::new(Shared {
            per_ip: Mutex::new(HashMap::new()),
            websockets: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
            next_conn: AtomicU64::new(1),
            registry: Default::default(),
            inboxes: (0..shards).map(|_| Default::default()).collect(),
            config,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            redis: ArcSwap::from_pointee(DependencyHealth {
                healthy: false,
                message: "Connecting to Redis".into(),
            }),
            started: Instant::now(),
            connections: AtomicUsize::new(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sorted_values() {
        let t = TypeState::new(
            5,
            vec![
                (10, Value::from_redis("1")),
                (2, Value::from_redis("101.3")),
                (1, Value::from_redis("25.6")),
            ],
        );
        assert_eq!(&*t.values_json, br#"{"1":25.6,"2":101.3,"10":1}"#);
        let mut ch = ChannelState::default();
        ch.types[0] = Some(Arc::new(t));
        assert_eq!(ch.active_points(), 3);
        assert_eq!(ch.last_update(), 5);
    }
}
