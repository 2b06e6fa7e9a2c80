//! WebSocket, sans-IO: the upgrade handshake, the per-connection protocol session
//! (tungstenite over in-memory buffers), frame headers for shared frames, and the JSON
//! messages of PROTOCOL.md §3.

pub mod frame;
pub mod handshake;
pub mod message;
pub mod session;
