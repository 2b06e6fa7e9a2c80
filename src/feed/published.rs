//! What the feed hands the shards: the published state (replaced whole, readers never lock)
//! and the sinks it calls on each change.

use crate::alarm::{ActiveAlarms, Alarm};
use crate::site::change::Change;
use crate::site::{DependencyHealth, Snapshot};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// What the feed publishes for the shards: the latest snapshot and Redis's health, each
/// replaced whole (readers never lock).
pub struct Published {
    pub snapshot: ArcSwap<Snapshot>,
    pub redis: ArcSwap<DependencyHealth>,
    /// The active alarms (empty until read from Redis).
    pub alarms: ArcSwap<ActiveAlarms>,
    /// The configured channels (`cfg:channels`).
    pub catalog: ArcSwap<crate::catalog::Catalog>,
    /// The feed's counters (`/metrics`).
    pub feed: crate::metrics::FeedCounters,
}

impl Published {
    pub fn new() -> Arc<Published> {
        Arc::new(Published {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            redis: ArcSwap::from_pointee(DependencyHealth {
                healthy: false,
                message: "Connecting to Redis".into(),
            }),
            alarms: ArcSwap::from_pointee(ActiveAlarms::default()),
            catalog: ArcSwap::from_pointee(crate::catalog::Catalog::default()),
            feed: Default::default(),
        })
    }
}

/// Called with each published snapshot and the changes it carries.
pub type ChangeSink = Box<dyn FnMut(&Arc<Snapshot>, &[Change]) + Send>;

/// Called with each batch of new alarm events and the active set after them.
pub type AlarmSink = Box<dyn FnMut(&[Arc<Alarm>], &Arc<ActiveAlarms>) + Send>;

/// Called with the final states of this instance's commands, in order.
pub type ControlSink = Box<dyn FnMut(Vec<crate::control::ControlResult>) + Send>;

/// Called with Redis's health each time it changes.
pub type HealthSink = Box<dyn FnMut(&Arc<DependencyHealth>) + Send>;
/// Called with the configured channels when they change.
pub type CatalogSink = Box<dyn FnMut(&Arc<crate::catalog::Catalog>) + Send>;
