//! WebSocket, sans-IO: the upgrade handshake, the RFC 6455 session (tungstenite over
//! in-memory buffers), the connection's protocol core and one module per client command.

pub mod action;
pub mod alarms;
pub mod cmd;
pub mod handshake;
pub mod jobs;
pub mod protocol;
pub mod rate;
pub mod registry;
pub mod session;
