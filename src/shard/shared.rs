//! The runtime wiring every shard shares: configuration, what the feed publishes, the way to
//! ask the feed, connection counters and limits, the client-id registry and every shard's
//! inbox. Data lives in `site`; this is only how the threads reach each other.

use super::inbox::Inbox;
use super::registry::Registry;
use crate::config::Config;
use crate::feed::{FeedHandle, Published};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct Shared {
    pub config: Arc<Config>,
    /// The feed's latest snapshot and Redis health.
    pub published: Arc<Published>,
    /// Requests to the feed thread (answers come back through the shard's inbox).
    pub feed: FeedHandle,
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
    pub registry: Registry,
    /// One inbox per shard: ticks and replies from the feed, commands from other shards.
    pub inboxes: Vec<Arc<Inbox>>,
}

impl Shared {
    pub fn new(
        config: Arc<Config>,
        published: Arc<Published>,
        feed: FeedHandle,
        inboxes: Vec<Arc<Inbox>>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            per_ip: Mutex::new(HashMap::new()),
            websockets: inboxes.iter().map(|_| AtomicUsize::new(0)).collect(),
            next_conn: AtomicU64::new(1),
            registry: Registry::default(),
            inboxes,
            config,
            published,
            feed,
            started: Instant::now(),
            connections: AtomicUsize::new(0),
        })
    }

    /// The counters `/health/detailed` reports.
    pub fn stats(&self) -> crate::api::Stats {
        crate::api::Stats {
            uptime_secs: self.started.elapsed().as_secs(),
            connections: self.connections.load(Ordering::Relaxed),
            websockets_per_shard: self
                .websockets
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect(),
        }
    }
}
