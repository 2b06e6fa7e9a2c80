//! The wire format, written in one place: every server→client WebSocket message
//! ([`ws`]), every REST envelope ([`rest`]), the records both carry ([`values`]) and the
//! WebSocket frame header ([`frame`]). Builders take the time as an argument (`now`, Unix
//! milliseconds) and never read the clock, so tests assert whole messages byte for byte.
//!
//! Everything is written straight to bytes from pre-rendered pieces: point values are rendered
//! once at ingest and spliced into every response and frame, so a general serializer would
//! only add copies.

pub mod close;
pub mod frame;
pub mod rest;
pub mod values;
pub mod ws;

use std::sync::Arc;

/// A complete WebSocket frame (header + JSON), shared by refcount between every client
/// that receives it.
pub type Frame = Arc<[u8]>;

/// `2025-08-12T10:30:00.123Z` for a Unix time in milliseconds.
pub use crate::time::iso_from_millis as iso;
