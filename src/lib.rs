//! voltage-gateway: the real-time data gateway of VoltageEMS.
//!
//! # Layout
//! A sans-IO core surrounded by a thin IO shell. The core never touches a socket, Redis, a
//! thread, a file or the clock (time comes in as `now`); the shell only moves bytes, runs
//! jobs and passes events. `tests/layering.rs` checks it, and that this list names every
//! module.
//!
//! Core (pure):
//! - [`model`] (channels, data types, points, values, type masks), [`error`] (stable codes,
//!   [`error::Upstream`]), [`json`] (writing, bounded parsing), [`redis_url`] (one Redis, or a
//!   master named by Sentinel).
//! - [`site`]: the site's data — [`site::Snapshot`], the store that turns hash contents into
//!   [`site::change::Change`]s, and the [`site::tick::Tick`] every shard receives.
//! - [`wire`]: the one writer of the wire format — WebSocket messages and push frames, REST
//!   envelopes and records, frame headers, named close reasons.
//! - [`http`] (request parsing, responses) and [`api`] (REST: the route table, handlers as
//!   pure functions of a call → a response or a job with its continuation).
//! - [`ws`]: the upgrade handshake, the tungstenite session, the connection's
//!   [`ws::protocol::Protocol`] (bytes, now and the fan-out in; actions out) and one module
//!   per client command in [`ws::cmd`].
//! - [`fanout`]: subscription groups, push rhythm, conflation, shared frames.
//! - Features, each with its Redis work in a `jobs.rs` the feed runs: [`alarm`], [`control`],
//!   [`catalog`] (channel and point definitions), [`definitions`] (the library's models,
//!   rules, destinations); and [`auth`] (users, tokens, logins), [`history`] (line protocol,
//!   queries), [`metrics`]. A feature's section of the configuration lives beside it
//!   (`auth::config`, `history::config`) and validates itself.
//! - Features that cross into the shell keep their IO parts in their folder, named as such
//!   (`tests/layering.rs` lists them): [`history::recorder`] (history to InfluxDB) and
//!   [`history::querier`] (its query threads), [`auth::verifier`] (the password thread).
//!
//! Seam: [`job`] — the `Job` trait, what of the feed a job may use, the type-erased job the
//! inbox carries, Redis reply readers.
//!
//! Shell:
//! - [`feed`]: the one Redis thread — loads `lua/`, collects changes when a write wakes it
//!   (or every tick), publishes snapshots and ticks, and runs shards' jobs from its inbox.
//! - [`shard`]: thread-per-core monoio runtimes with SO_REUSEPORT listeners, HTTP and
//!   WebSocket connection tasks, the shards' inboxes and the wiring they share.
//! - [`server`] (start/stop), [`config`] (loading and merging), [`demo`]
//!   (private Redis + simulated site), [`watch`] (a small client), [`log`], [`shutdown`],
//!   [`time`] (the clock the shell reads).

pub mod alarm;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod control;
pub mod definitions;
pub mod demo;
pub mod error;
pub mod fanout;
pub mod feed;
pub mod history;
pub mod http;
pub mod job;
pub mod json;
pub mod log;
pub mod metrics;
pub mod model;
pub mod redis_url;
pub mod server;
pub mod shard;
pub mod shutdown;
pub mod site;
pub mod time;
pub mod watch;
pub mod wire;
pub mod ws;

pub use config::Config;
pub use server::Server;
