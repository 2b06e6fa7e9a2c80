//! The site's data, pure: what the gateway knows of every channel at one instant
//! ([`Snapshot`]), what changed in one collect ([`change::Change`]) and what the feed hands
//! every shard after it ([`tick::Tick`]). No IO, no clock, no threads: the feed builds these,
//! shards and handlers read them.
//!
//! A `Snapshot` is immutable and replaced whole on each collect that changed something.
//! Unchanged (channel, type) entries are shared between snapshots by refcount, so publishing
//! costs O(channels) pointer copies, not a deep copy.

pub mod change;
pub mod store;
pub mod tick;

use crate::model::{ChannelId, DataType, PointId, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The current points of one (channel, type) hash.
#[derive(Debug, PartialEq, Eq)]
pub struct TypeState {
    /// `_timestamp` of the hash: Unix seconds of its last write.
    pub timestamp: i64,
    /// `_written_ms` of the hash: Redis's clock at its last write, ms (0: not recorded, an
    /// older library). History stamps the change with it (the same on every gateway).
    pub written_ms: i64,
    /// Points sorted by id.
    pub points: Vec<(PointId, Value)>,
    /// `{"1":25.6,"2":101.3}` rendered once, spliced into every response and frame.
    pub values_json: Box<[u8]>,
}

impl TypeState {
    pub fn new(timestamp: i64, mut points: Vec<(PointId, Value)>) -> TypeState {
        points.sort_unstable_by_key(|(id, _)| *id);
        let values_json = crate::wire::values::values(&points).into_boxed_slice();
        TypeState {
            timestamp,
            written_ms: 0,
            points,
            values_json,
        }
    }

    pub fn written_at(mut self, ms: i64) -> TypeState {
        self.written_ms = ms;
        self
    }
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

/// The data source's state as WebSocket clients are told it (the `status` message): live
/// only when Redis is reachable AND the site's data has been loaded from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceStatus {
    pub healthy: bool,
    /// Why the source is degraded.
    pub reason: Option<String>,
}

impl SourceStatus {
    /// From Redis's health, whether the site is loaded, and how long ago (ms) the feed last
    /// completed a collect (`lag_ms`; degraded past `max_lag_ms`: live data that stopped
    /// moving is not live).
    pub fn of(
        redis: &DependencyHealth,
        loaded: bool,
        lag_ms: Option<u64>,
        max_lag_ms: u64,
    ) -> SourceStatus {
        let reason = if !redis.healthy {
            Some(redis.message.clone())
        } else if !loaded {
            Some("loading the site's data from Redis".to_string())
        } else if lags(lag_ms, max_lag_ms) {
            Some(lagging(max_lag_ms))
        } else {
            None
        };
        SourceStatus {
            healthy: reason.is_none(),
            reason,
        }
    }
}

/// Whether a feed last completed a collect `lag_ms` ago is past `max_lag_ms` (`None`: no
/// collect yet — not loaded, which is said on its own).
pub fn lags(lag_ms: Option<u64>, max_lag_ms: u64) -> bool {
    lag_ms.is_some_and(|l| l > max_lag_ms)
}

/// The reason given while the feed lags (worded with the bound, not the live figure, so it
/// does not change — and is not broadcast again — every second).
pub fn lagging(max_lag_ms: u64) -> String {
    format!(
        "live data is more than {} s behind: the feed has not completed a collect from Redis since (Redis slow or overloaded)",
        max_lag_ms as f64 / 1000.0
    )
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
