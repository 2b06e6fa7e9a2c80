//! voltage-gateway: the real-time data gateway of VoltageEMS.
//!
//! # Layout
//! A sans-IO core surrounded by a thin IO shell. The core never touches a socket, a thread or
//! the clock (time comes in as `now`); the shell only moves bytes and events.
//!
//! Core (pure; imports nothing from the shell — `tests/layering.rs` checks it):
//! - [`model`] (channels, data types, points, values, type masks), [`error`] (stable codes).
//! - [`site`]: the site's data — [`site::Snapshot`], the store that turns hash contents into
//!   [`site::change::Change`]s, and the [`site::tick::Tick`] every shard receives.
//! - [`wire`]: the one writer of the wire format — WebSocket messages and push frames, REST
//!   envelopes and records, frame headers, named close reasons.
//! - [`http`] (request parsing, responses) and [`api`] (REST handlers: request, view, now →
//!   response).
//! - [`ws`]: the upgrade handshake, the tungstenite session, the connection's
//!   [`ws::protocol::Protocol`] (bytes, now and the fan-out in; actions out) and one module
//!   per client command in [`ws::cmd`].
//! - [`fanout`]: subscription groups, push rhythm, conflation, shared frames.
//!
//! Shell:
//! - [`feed`]: the one Redis thread — loads `lua/`, collects changes when a write wakes it
//!   (or every tick), publishes snapshots and ticks, and answers shards' requests from its
//!   inbox.
//! - [`shard`]: thread-per-core monoio runtimes with SO_REUSEPORT listeners, HTTP and
//!   WebSocket connection tasks, the shards' inboxes and the wiring they share.
//! - [`server`] (start/stop), [`config`], [`demo`] (private Redis + simulated site), [`log`],
//!   [`shutdown`], [`time`] (the clock the shell reads).

pub mod alarm;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod control;
pub mod demo;
pub mod error;
pub mod fanout;
pub mod feed;
pub mod history;
pub mod http;
pub mod json;
pub mod log;
pub mod metrics;
pub mod model;
pub mod recorder;
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
