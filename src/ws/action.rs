//! What the protocol core asks of the IO shell: bytes to send, in order, and whether to read on.

use crate::control::ControlRequest;
use crate::wire::Frame;

/// What the connection must send, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A JSON message, sent as one text frame. Replies are never dropped while the
    /// connection lives.
    Reply(Vec<u8>),
    /// A ready, shared frame (the snapshot after a subscribe).
    Frame(Frame),
    /// Raw frames the WebSocket layer produced (pongs, pings, close frames, echoes).
    Raw(Vec<u8>),
    /// A validated control command to queue (the shell answers `control_ack queued` or the
    /// error once Redis has).
    Control(Box<ControlRequest>),
}

/// Whether the connection reads on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Open,
    /// The close handshake completed or the peer broke the protocol: flush and close.
    Closed,
}
