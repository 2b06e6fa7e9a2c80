//! The runtime wiring every shard shares: configuration, what the feed publishes, the way to
//! ask the feed, connection counters and limits, the client-id registry and every shard's
//! inbox. Data lives in `site`; this is only how the threads reach each other.

use super::inbox::Inbox;
use crate::auth::verifier::Verifier;
use crate::auth::Auth;
use crate::config::Config;
use crate::feed::{FeedHandle, Published};
use crate::http::origin::OriginPolicy;
use crate::site::{DependencyHealth, SourceStatus};
use crate::ws::registry::Registry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Random per start: with a connection id, names a connection across restarts and
    /// gateways (the client-id claims in Redis).
    pub boot: String,
    /// One inbox per shard: ticks and replies from the feed, commands from other shards.
    pub inboxes: Vec<Arc<Inbox>>,
    /// Final control acks whose sender is not connected right now.
    pub parked: Parked,
    /// Users, tokens and login limits.
    pub auth: Arc<Auth>,
    /// Which browser origins may use the gateway.
    pub origins: OriginPolicy,
    /// Checks passwords off the shard threads.
    pub verifier: Verifier,
    /// The history querier and the recorder's state (`None`: no `history.url`).
    pub history: Option<crate::history::querier::History>,
    /// Per shard: WebSocket counters (written by that shard only) and HTTP statistics (locked
    /// by that shard per request, and by a `/metrics` scrape).
    pub shard_counters: Vec<crate::metrics::ShardCounters>,
    pub http_stats: Vec<Mutex<crate::metrics::HttpStats>>,
}

/// How long a final control ack waits for its sender to reconnect, and how many may wait.
const PARKED_FOR: Duration = Duration::from_secs(120);
const PARKED_MAX: usize = 10_000;

/// Final control acks whose sender was not connected when they came (it reconnects, or the
/// gateway restarted and resumed its commands): kept a while, bounded, and sent to the next
/// connection with that client id.
#[derive(Default)]
pub struct Parked {
    by_client: Mutex<HashMap<String, Vec<ParkedAck>>>,
}

/// When it was parked, who sent the command, and the message.
type ParkedAck = (Instant, Option<String>, Vec<u8>);

/// Whether a connection acting as `principal_name` may receive the final ack of a command
/// `operator` sent (no operator recorded: an older library, anyone holding the id).
pub fn ack_for(operator: Option<&str>, principal_name: &str) -> bool {
    operator.is_none_or(|o| o == principal_name)
}

impl Parked {
    /// Keeps `json` (the ack of `operator`'s command) for `client_id`; false when full (it is
    /// dropped: the record in Redis still says how the command ended).
    pub fn park(
        &self,
        client_id: &str,
        operator: Option<&str>,
        json: Vec<u8>,
        now: Instant,
    ) -> bool {
        let mut m = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, v| {
            v.retain(|(at, _, _)| now.duration_since(*at) < PARKED_FOR);
            !v.is_empty()
        });
        if m.values().map(Vec::len).sum::<usize>() >= PARKED_MAX {
            return false;
        }
        m.entry(client_id.to_string())
            .or_default()
            .push((now, operator.map(str::to_string), json));
        true
    }

    /// What waits for `client_id` from commands `principal_name` sent, oldest first; acks of
    /// another user's commands stay parked for them.
    pub fn take(&self, client_id: &str, principal_name: &str, now: Instant) -> Vec<Vec<u8>> {
        let mut m = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        let Some(v) = m.get_mut(client_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        v.retain_mut(|(at, operator, json)| {
            if now.duration_since(*at) >= PARKED_FOR {
                return false;
            }
            if ack_for(operator.as_deref(), principal_name) {
                out.push(std::mem::take(json));
                return false;
            }
            true
        });
        if v.is_empty() {
            m.remove(client_id);
        }
        out
    }
}

/// The machine's names a browser may use for the gateway's own origin without
/// `http.allowed_hosts`: its hostname, and that name under `.local` (mDNS).
fn own_hostnames() -> Vec<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    if name.is_empty() {
        return Vec::new();
    }
    vec![name.to_string(), format!("{name}.local")]
}

impl Shared {
    pub fn new(
        config: Arc<Config>,
        published: Arc<Published>,
        feed: FeedHandle,
        inboxes: Vec<Arc<Inbox>>,
        auth: Arc<Auth>,
        verifier: Verifier,
        history: Option<crate::history::querier::History>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            shard_counters: inboxes.iter().map(|_| Default::default()).collect(),
            http_stats: inboxes.iter().map(|_| Default::default()).collect(),
            origins: OriginPolicy::new(&config.http.allowed_origins)
                .with_hosts(!config.http.allowed_hosts.is_empty(), own_hostnames()),
            auth,
            verifier,
            history,
            per_ip: Mutex::new(HashMap::new()),
            websockets: inboxes.iter().map(|_| AtomicUsize::new(0)).collect(),
            next_conn: AtomicU64::new(1),
            registry: Registry::default(),
            boot: {
                let mut b = [0u8; 6];
                // A clock-derived fallback still differs between restarts.
                if getrandom::fill(&mut b).is_err() {
                    b[..6].copy_from_slice(&crate::time::now_millis().to_le_bytes()[..6]);
                }
                crate::auth::hex(&b)
            },
            inboxes,
            published,
            feed,
            started: Instant::now(),
            connections: AtomicUsize::new(0),
            parked: Parked::default(),
            config,
        })
    }

    /// The name of connection `conn` in the client-id claims (`{boot}-{conn}`).
    pub fn conn_token(&self, conn: crate::fanout::ConnId) -> String {
        format!("{}-{conn}", self.boot)
    }

    /// Another gateway took over `client_id` from the connection `token` (a message on this
    /// gateway's channel, or a renewal that found the claim gone): that connection closes
    /// with 4001 `replaced`, if it still holds the id.
    pub fn replaced_elsewhere(&self, client_id: &str, token: &str) {
        let Some((owner, _)) = self.registry.holder(client_id) else {
            return;
        };
        if self.conn_token(owner.conn) != token {
            return;
        }
        if let Some(inbox) = self.inboxes.get(owner.shard) {
            inbox.push(super::inbox::ShardEvent::Kick {
                conn: owner.conn,
                why: crate::wire::close::Disconnect::Replaced,
            });
        }
    }

    /// What WebSocket clients are told of the data source: Redis's `health`, whether the
    /// site is `loaded`, and the feed's lag now.
    pub fn source_status(&self, health: &DependencyHealth, loaded: bool) -> SourceStatus {
        SourceStatus::of(
            health,
            loaded,
            self.feed_lag_ms(crate::time::now_millis()),
            self.config.feed_max_lag_ms,
        )
    }

    /// How long ago (ms) the feed last completed a collect; `None` before the first.
    pub fn feed_lag_ms(&self, now_ms: i64) -> Option<u64> {
        let last = self.published.feed.last_collect_ms.load(Ordering::Relaxed);
        (last > 0).then(|| (now_ms.max(0) as u64).saturating_sub(last))
    }

    /// Sends a command's final ack to the connection holding `client_id` now, on whatever
    /// shard; when none does, gives it back to Redis (taken from there) or parks it for the
    /// next one (checking again after parking, so a sender connecting meanwhile is not missed).
    /// Only a connection acting for `operator` (who sent the command) gets it: a client
    /// that claims a free client id never receives another user's acks.
    pub fn route_control_ack(
        &self,
        client_id: &str,
        operator: Option<&str>,
        json: Vec<u8>,
        entry: Option<crate::alarm::EventId>,
    ) {
        let send = |owner: crate::ws::registry::Owner,
                    operator: Option<&str>,
                    json: Vec<u8>,
                    entry: Option<crate::alarm::EventId>| {
            if let Some(inbox) = self.inboxes.get(owner.shard) {
                inbox.push(super::inbox::ShardEvent::ControlAck {
                    conn: owner.conn,
                    client_id: client_id.to_string(),
                    operator: operator.map(str::to_string),
                    json,
                    entry,
                });
            }
        };
        // HTTP callers ask GET /api/commands/{id}: no connection to route to, no parked slot.
        if crate::api::control::is_http_client_id(client_id) {
            return;
        }
        match self.registry.holder(client_id) {
            Some((owner, name)) if ack_for(operator, &name) => {
                return send(owner, operator, json, entry)
            }
            _ => {}
        }
        if entry.is_some() {
            // Taken from Redis for a connection that is gone: a shard gives it back there
            // (conn 0 is never a connection), for the sender's next claim, on any gateway.
            return send(
                crate::ws::registry::Owner { shard: 0, conn: 0 },
                operator,
                json,
                entry,
            );
        }
        let now = Instant::now();
        if !self.parked.park(client_id, operator, json, now) {
            crate::log::warn_limited(
                "parked-acks-full",
                "too many final control acks wait for their senders; one dropped",
            );
        }
        if let Some((owner, name)) = self.registry.holder(client_id) {
            for json in self.parked.take(client_id, &name, now) {
                send(owner, operator, json, None);
            }
        }
    }

    /// Everything `/metrics` reports, now.
    pub fn metrics_sample(&self, now_ms: i64) -> crate::metrics::Sample {
        let mut s = crate::metrics::Sample {
            instance: self.config.control.instance_id.clone(),
            connections: self.connections.load(Ordering::Relaxed) as u64,
            websockets_per_shard: self
                .websockets
                .iter()
                .map(|n| n.load(Ordering::Relaxed) as u64)
                .collect(),
            redis_up: self.published.redis.load().healthy,
            uptime_secs: self.started.elapsed().as_secs(),
            auth_login_failures: self.auth.login_failures(),
            auth_token_refusals: self.auth.token_refusals(),
            history: self.history.as_ref().map(|h| h.status()),
            ..Default::default()
        };
        for c in &self.shard_counters {
            s.shard(c);
        }
        for h in &self.http_stats {
            s.http.merge(&h.lock().unwrap_or_else(|e| e.into_inner()));
        }
        s.feed(&self.published.feed, now_ms);
        for a in self.published.alarms.load().by_rule.values() {
            if let Some(n) = s.active_alarms.get_mut(usize::from(a.event.level)) {
                *n += 1;
            }
            s.active_acknowledged += u64::from(a.event.ack.is_some());
        }
        s
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

/// What REST handlers read of the running gateway.
impl crate::api::Gateway for Shared {
    fn stats(&self) -> crate::api::Stats {
        Shared::stats(self)
    }

    fn metrics(&self, now: i64) -> crate::metrics::Sample {
        self.metrics_sample(now)
    }

    fn history_status(&self) -> Option<crate::history::Status> {
        self.history.as_ref().map(|h| h.status())
    }

    fn feed_lag_ms(&self, now: i64) -> Option<u64> {
        Shared::feed_lag_ms(self, now)
    }

    fn random(&self) -> Result<[u8; 32], crate::error::ApiError> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|_| {
            crate::error::ErrorCode::InternalError.context("no randomness for a token")
        })?;
        Ok(random)
    }
}
