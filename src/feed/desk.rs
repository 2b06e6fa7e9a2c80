//! The feed's side of the job seam ([`crate::job::Desk`]): what jobs read or change of the
//! feed — the catalog re-read after a configuration write, the cached round trip, the
//! control rate limit and the tracker of this instance's commands.

use super::control::ResultReader;
use super::Published;
use crate::control::rate::ControlRate;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Desk {
    pub catalog_changed: bool,
    pub last_ping: Option<(Instant, Duration)>,
    /// Commands queued here are tracked for their final ack.
    pub results: ResultReader,
    pub control_rate: ControlRate,
    pub control_timeout_ms: u64,
    pub published: Arc<Published>,
    /// Client ids whose acks a connection gave back to Redis and another gateway's (or this
    /// one's) newer connection holds: taken at the next results poll. Bounded.
    pub recheck_acks: Vec<String>,
}

/// Client ids waiting for a recheck at most (more wait for their next result or claim).
pub const RECHECK_MAX: usize = 10_000;

impl crate::job::Desk for Desk {
    fn catalog_changed(&mut self) {
        self.catalog_changed = true;
    }

    fn last_ping(&mut self) -> &mut Option<(Instant, Duration)> {
        &mut self.last_ping
    }

    fn control_rate(&mut self) -> &mut ControlRate {
        &mut self.control_rate
    }

    fn instance(&self) -> &str {
        self.results.instance()
    }

    fn control_timeout_ms(&self) -> u64 {
        self.control_timeout_ms
    }

    fn queued(
        &mut self,
        command_id: &str,
        client_id: &str,
        request_id: Option<&str>,
        operator: Option<&str>,
    ) {
        crate::metrics::bump(&self.published.feed.control_queued, 1);
        self.results.track(
            command_id,
            client_id,
            request_id,
            operator,
            self.control_timeout_ms,
        );
    }
}
