//! voltage-gateway: the real-time data gateway of VoltageEMS.
//!
//! # Layout
//! - [`feed`]: the one Redis thread — loads `lua/`, pulls changes with `netsrv_collect_data`
//!   every tick, publishes immutable [`state::Snapshot`]s.
//! - [`shard`]: thread-per-core monoio runtimes, each with its own SO_REUSEPORT listener and
//!   connections; the only code that touches sockets.
//! - [`http`] (sans-IO parsing and rendering) and [`api`] (REST handlers over a snapshot).
//! - [`ws`] (sans-IO WebSocket: handshake, tungstenite session, frames, messages) and
//!   [`fanout`] (sans-IO subscription groups, shared frames, conflation, client-id registry).
//! - [`config`], [`model`] (protocol nouns), [`error`] (stable codes), [`server`] (start/stop),
//!   [`demo`] (private Redis + simulated site).

pub mod api;
pub mod config;
pub mod demo;
pub mod error;
pub mod fanout;
pub mod feed;
pub mod http;
pub mod json;
pub mod log;
pub mod model;
pub mod server;
pub mod shard;
pub mod shutdown;
pub mod site;
pub mod time;
pub mod wire;
pub mod ws;

pub use config::Config;
pub use server::Server;
