//! What the feed hands every shard after a collect that changed something: the new snapshot,
//! the changed (channel, type)s with their changed points rendered once as JSON fragments,
//! and a cache where the first shard to build a frame leaves it for the others.

use crate::feed::store::Change;
use crate::json;
use crate::model::{ChannelId, DataType, PointId};
use crate::state::{render_values, Snapshot, TypeState};
use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};

/// A complete WebSocket frame (header + JSON), shared by refcount.
pub type Frame = Arc<[u8]>;

/// The channels and types a group of clients watches, sorted: the identity of a shared frame.
pub type SubKey = Vec<(ChannelId, u8)>;

/// One changed (channel, type) in a tick.
#[derive(Debug, Clone)]
pub struct TickChange {
    pub channel: ChannelId,
    pub data_type: DataType,
    /// Shared by every group's pending set that takes this change (no per-group copy).
    pub points: Arc<[PointId]>,
    /// `{"channel_id":…,"data_type":…,"values":{changed points}}`, rendered once.
    pub fragment: Arc<[u8]>,
}

/// Cache key: the same subscription pushed over the same seq range has the same bytes.
type FrameKey = (Arc<SubKey>, u64, u64);

pub struct Tick {
    pub seq: u64,
    pub time_ms: i64,
    pub iso: String,
    pub snapshot: Arc<Snapshot>,
    pub changes: Vec<TickChange>,
    frames: Mutex<HashMap<FrameKey, Frame>>,
}

/// Appends `{"channel_id":…,"data_type":…,"values":…}` with the given values object.
pub fn write_update(out: &mut Vec<u8>, channel: ChannelId, t: DataType, values: &[u8]) {
    out.extend_from_slice(b"{\"channel_id\":");
    json::write_u64(out, u64::from(channel.0));
    out.extend_from_slice(b",\"data_type\":\"");
    out.extend_from_slice(t.as_str().as_bytes());
    out.extend_from_slice(b"\",\"values\":");
    out.extend_from_slice(values);
    out.push(b'}');
}

/// The update object for `points` of `state` (points that no longer exist are skipped).
pub fn render_update(
    channel: ChannelId,
    t: DataType,
    state: &TypeState,
    points: &[PointId],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + points.len() * 16);
    if points.len() == state.points.len() {
        write_update(&mut out, channel, t, &state.values_json);
        return out;
    }
    let selected: Vec<_> = points
        .iter()
        .filter_map(|p| {
            let i = state.points.binary_search_by_key(p, |(id, _)| *id).ok()?;
            Some(state.points[i].clone())
        })
        .collect();
    write_update(&mut out, channel, t, &render_values(&selected));
    out
}

/// Wraps update fragments into one frame: `data_update` for one, `data_batch` otherwise.
/// The exact size is known up front, so the bytes are written once, straight into the shared
/// allocation (a frame per client in mixed subscriptions made the extra copy show in `perf`).
pub fn build_frame(seq: u64, iso: &str, fragments: &[&[u8]]) -> Frame {
    let mut seq_digits = Vec::with_capacity(20);
    json::write_u64(&mut seq_digits, seq);
    let (kind, prefix): (&[u8], &[u8]) = if fragments.len() == 1 {
        (b"data_update", b"update_")
    } else {
        (b"data_batch", b"batch_")
    };
    let data: usize = match fragments {
        [one] => one.len(),
        _ => {
            let joined: usize = fragments.iter().map(|f| f.len()).sum();
            b"{\"updates\":[".len() + joined + fragments.len().saturating_sub(1) + b"]}".len()
        }
    };
    let payload = b"{\"type\":\"".len()
        + kind.len()
        + b"\",\"id\":\"".len()
        + prefix.len()
        + seq_digits.len()
        + b"\",\"timestamp\":\"".len()
        + iso.len()
        + b"\",\"data\":".len()
        + data
        + 1;
    let mut header = Vec::with_capacity(crate::ws::frame::MAX_HEADER);
    crate::ws::frame::write_header(&mut header, crate::ws::frame::OP_TEXT, payload);
    let mut frame = Arc::<[u8]>::new_uninit_slice(header.len() + payload);
    let buf = Arc::get_mut(&mut frame).expect("fresh allocation");
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        let dst = &mut buf[at..at + bytes.len()];
        // SAFETY: `dst` is exactly `bytes.len()` long (the slice index checks bounds), and
        // the source cannot overlap a fresh allocation. (`write_copy_of_slice` is past MSRV.)
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.as_mut_ptr().cast::<u8>(), dst.len())
        };
        at += bytes.len();
    };
    put(&header);
    put(b"{\"type\":\"");
    put(kind);
    put(b"\",\"id\":\"");
    put(prefix);
    put(&seq_digits);
    put(b"\",\"timestamp\":\"");
    put(iso.as_bytes());
    put(b"\",\"data\":");
    if let [one] = fragments {
        put(one);
    } else {
        put(b"{\"updates\":[");
        for (i, f) in fragments.iter().enumerate() {
            if i > 0 {
                put(b",");
            }
            put(f);
        }
        put(b"]}");
    }
    put(b"}");
    assert_eq!(at, buf.len(), "frame size computed up front");
    // SAFETY: every byte was written above (the assert checks the count).
    unsafe { frame.assume_init() }
}

impl Tick {
    /// Builds the tick from the feed's changes; each fragment is rendered exactly once here.
    pub fn new(snapshot: Arc<Snapshot>, changes: &[Change], time_ms: i64) -> Tick {
        let changes = changes
            .iter()
            .filter_map(|c| {
                let state = c.state.as_ref()?;
                if c.points.is_empty() {
                    return None;
                }
                Some(TickChange {
                    channel: c.channel,
                    data_type: c.data_type,
                    fragment: render_update(c.channel, c.data_type, state, &c.points).into(),
                    points: c.points.as_slice().into(),
                })
            })
            .collect();
        Tick {
            seq: snapshot.seq,
            time_ms,
            iso: crate::time::iso_from_millis(time_ms),
            snapshot,
            changes,
            frames: Mutex::new(HashMap::default()),
        }
    }

    /// The frame for `key` over `(from_seq, self.seq]`: built by the first shard that asks,
    /// then shared by refcount with every other shard and connection.
    pub fn frame(&self, key: &Arc<SubKey>, from_seq: u64, build: impl FnOnce() -> Frame) -> Frame {
        let k = (key.clone(), from_seq, self.seq);
        if let Some(f) = self
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&k)
        {
            return f.clone();
        }
        let f = build();
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(k)
            .or_insert(f)
            .clone()
    }
}
