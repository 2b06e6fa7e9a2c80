//! WebSocket messages (PROTOCOL.md §3): `{"type","id","timestamp","data"}`. Replies are built
//! here with [`envelope`]; pushes with [`build_frame`], from the same pieces, straight into
//! one shared allocation.

use super::frame;
use super::Frame;
use crate::error::ApiError;
use crate::json;
use crate::model::ChannelId;
use std::sync::Arc;

// The envelope's fixed pieces, in order: `{"type":"` kind `","id":` id `,"timestamp":"` iso
// `","data":` data `}`. `envelope` and `build_frame` both write exactly these.
const OPEN: &[u8] = b"{\"type\":\"";
const ID: &[u8] = b"\",\"id\":";
const TIMESTAMP: &[u8] = b",\"timestamp\":\"";
const DATA: &[u8] = b"\",\"data\":";
const CLOSE: &[u8] = b"}";

/// `{"type":kind,"id":id,"timestamp":<now>,"data":<data>}`.
pub fn envelope(kind: &str, id: &str, now: i64, data: &[u8]) -> Vec<u8> {
    envelope_at(kind, id, &super::iso(now), data)
}

/// [`envelope`] with the timestamp already rendered.
fn envelope_at(kind: &str, id: &str, iso: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 96);
    out.extend_from_slice(OPEN);
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(ID);
    json::write_str(&mut out, id);
    out.extend_from_slice(TIMESTAMP);
    out.extend_from_slice(iso.as_bytes());
    out.extend_from_slice(DATA);
    out.extend_from_slice(data);
    out.extend_from_slice(CLOSE);
    out
}

/// Wraps update fragments into one push frame: `data_update` (id `update_{seq}`) for one,
/// `data_batch` (`batch_{seq}`, `{"updates":[…]}`) otherwise. The exact size is known up
/// front, so the bytes are written once, straight into the shared allocation (a frame per
/// client in mixed subscriptions made an extra copy show in `perf`).
pub fn build_frame(seq: u64, iso: &str, fragments: &[&[u8]]) -> Frame {
    let mut seq_digits = itoa::Buffer::new();
    let seq_digits = seq_digits.format(seq).as_bytes();
    let (kind, prefix): (&[u8], &[u8]) = if fragments.len() == 1 {
        (b"data_update", b"\"update_")
    } else {
        (b"data_batch", b"\"batch_")
    };
    const BATCH_OPEN: &[u8] = b"{\"updates\":[";
    const BATCH_CLOSE: &[u8] = b"]}";
    let data: usize = match fragments {
        [one] => one.len(),
        _ => {
            let joined: usize = fragments.iter().map(|f| f.len()).sum();
            BATCH_OPEN.len() + joined + fragments.len().saturating_sub(1) + BATCH_CLOSE.len()
        }
    };
    let payload = OPEN.len()
        + kind.len()
        + ID.len()
        + prefix.len()
        + seq_digits.len()
        + 1
        + TIMESTAMP.len()
        + iso.len()
        + DATA.len()
        + data
        + CLOSE.len();
    let mut header = [0u8; frame::MAX_HEADER];
    let header = frame::header(&mut header, frame::OP_TEXT, payload);
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
    put(header);
    put(OPEN);
    put(kind);
    put(ID);
    put(prefix);
    put(seq_digits);
    put(b"\"");
    put(TIMESTAMP);
    put(iso.as_bytes());
    put(DATA);
    if let [one] = fragments {
        put(one);
    } else {
        put(BATCH_OPEN);
        for (i, f) in fragments.iter().enumerate() {
            if i > 0 {
                put(b",");
            }
            put(f);
        }
        put(BATCH_CLOSE);
    }
    put(CLOSE);
    assert_eq!(at, buf.len(), "frame size computed up front");
    // SAFETY: every byte was written above (the assert checks the count).
    unsafe { frame.assume_init() }
}

/// A push: [`build_frame`] for the updates, followed — in the same buffer, so one write — by
/// `data_removed` (id `removed_{seq}`, `{"removed":[…]}`) when points the client holds
/// vanished. `None` when there is nothing to send.
pub fn build_push(seq: u64, iso: &str, updates: &[&[u8]], removals: &[&[u8]]) -> Option<Frame> {
    if removals.is_empty() {
        return (!updates.is_empty()).then(|| build_frame(seq, iso, updates));
    }
    let mut data = Vec::from(&b"{\"removed\":["[..]);
    for (i, r) in removals.iter().enumerate() {
        if i > 0 {
            data.push(b',');
        }
        data.extend_from_slice(r);
    }
    data.extend_from_slice(b"]}");
    let removed = frame::text(&envelope_at(
        "data_removed",
        &format!("removed_{seq}"),
        iso,
        &data,
    ));
    if updates.is_empty() {
        return Some(removed.into());
    }
    Some(
        [&build_frame(seq, iso, updates)[..], &removed]
            .concat()
            .into(),
    )
}

fn write_ids(out: &mut Vec<u8>, ids: &[ChannelId]) {
    out.push(b'[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_u64(out, u64::from(id.0));
    }
    out.push(b']');
}

fn write_request_id(out: &mut Vec<u8>, request_id: Option<&str>) {
    out.extend_from_slice(b"\"request_id\":");
    match request_id {
        Some(r) => json::write_str(out, r),
        None => out.extend_from_slice(b"null"),
    }
}

/// `connected {client_id, data_type, server_time}`: the first message on every connection.
pub fn connected(client_id: &str, data_type: &str, now: i64) -> Vec<u8> {
    let mut d = Vec::with_capacity(96);
    d.extend_from_slice(b"{\"client_id\":");
    json::write_str(&mut d, client_id);
    d.extend_from_slice(b",\"data_type\":");
    json::write_str(&mut d, data_type);
    d.extend_from_slice(b",\"server_time\":\"");
    d.extend_from_slice(super::iso(now).as_bytes());
    d.extend_from_slice(b"\"}");
    envelope("connected", &format!("connected_{client_id}"), now, &d)
}

/// `status {source, reason}`: `healthy`, or `degraded` with the reason (Redis unreachable,
/// or the site's data not loaded yet). Sent after `connected` and on every change, so a
/// client never shows values from a dead source as live.
/// `reason` is `None` exactly when the source is healthy.
pub fn status(reason: Option<&str>, now: i64) -> Vec<u8> {
    let mut d = Vec::with_capacity(96);
    d.extend_from_slice(b"{\"source\":");
    json::write_str(
        &mut d,
        if reason.is_none() {
            "healthy"
        } else {
            "degraded"
        },
    );
    d.extend_from_slice(b",\"reason\":");
    match reason {
        Some(r) => json::write_str(&mut d, r),
        None => d.extend_from_slice(b"null"),
    }
    d.push(b'}');
    envelope("status", &format!("status_{now}"), now, &d)
}

/// The two acknowledgements of subscription changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    Subscribe,
    Unsubscribe,
}

impl Ack {
    fn kind(self) -> &'static str {
        match self {
            Ack::Subscribe => "subscribe_ack",
            Ack::Unsubscribe => "unsubscribe_ack",
        }
    }

    fn field(self) -> &'static [u8] {
        match self {
            Ack::Subscribe => b"subscribed",
            Ack::Unsubscribe => b"unsubscribed",
        }
    }
}

/// `{request_id}_ack` (or `ack_{now}` without a request id).
fn ack_id(request_id: Option<&str>, now: i64) -> String {
    match request_id {
        Some(r) => format!("{r}_ack"),
        None => format!("ack_{now}"),
    }
}

/// `subscribe_ack` / `unsubscribe_ack {request_id, subscribed|unsubscribed, failed, total}`.
pub fn ack(
    which: Ack,
    request_id: Option<&str>,
    ok: &[ChannelId],
    failed: &[ChannelId],
    total: usize,
    now: i64,
) -> Vec<u8> {
    let mut d = Vec::with_capacity(96);
    d.push(b'{');
    write_request_id(&mut d, request_id);
    d.extend_from_slice(b",\"");
    d.extend_from_slice(which.field());
    d.extend_from_slice(b"\":");
    write_ids(&mut d, ok);
    d.extend_from_slice(b",\"failed\":");
    write_ids(&mut d, failed);
    d.extend_from_slice(b",\"total\":");
    json::write_u64(&mut d, total as u64);
    d.push(b'}');
    envelope(which.kind(), &ack_id(request_id, now), now, &d)
}

/// `control_ack {request_id, command_id, status}`: the command is durably queued (or, for a
/// retried request id, already known in that status).
pub fn control_ack_queued(
    request_id: Option<&str>,
    command_id: &str,
    status: &str,
    now: i64,
) -> Vec<u8> {
    let mut d = Vec::with_capacity(96);
    d.push(b'{');
    write_request_id(&mut d, request_id);
    d.extend_from_slice(b",\"command_id\":");
    json::write_str(&mut d, command_id);
    d.extend_from_slice(b",\"status\":");
    json::write_str(&mut d, status);
    d.push(b'}');
    envelope("control_ack", &ack_id(request_id, now), now, &d)
}

/// The final `control_ack {request_id, command_id, status, result {success, actual_value,
/// message?}}` (`executed`, `failed` or `timeout`).
pub fn control_ack_final(r: &crate::control::ControlResult, now: i64) -> Vec<u8> {
    let request_id = r.request_id.as_deref();
    let mut d = Vec::with_capacity(160);
    d.push(b'{');
    write_request_id(&mut d, request_id);
    d.extend_from_slice(b",\"command_id\":");
    json::write_str(&mut d, &r.command_id);
    d.extend_from_slice(b",\"status\":\"");
    d.extend_from_slice(r.status.as_str().as_bytes());
    d.extend_from_slice(b"\",\"result\":{\"success\":");
    d.extend_from_slice(if r.success { b"true" } else { b"false" });
    d.extend_from_slice(b",\"actual_value\":");
    d.extend_from_slice(
        r.actual_value
            .as_ref()
            .map_or("null", |v| v.json())
            .as_bytes(),
    );
    if let Some(m) = &r.message {
        d.extend_from_slice(b",\"message\":");
        json::write_str(&mut d, m);
    }
    d.extend_from_slice(b"}}");
    envelope("control_ack", &ack_id(request_id, now), now, &d)
}

/// `auth_ack {request_id, username, role, anonymous, expires_at}`: the connection now acts
/// with the fresh token (`principal` is its JSON object).
pub fn auth_ack(request_id: Option<&str>, principal: &[u8], now: i64) -> Vec<u8> {
    let mut d = Vec::with_capacity(principal.len() + 48);
    d.push(b'{');
    write_request_id(&mut d, request_id);
    d.push(b',');
    d.extend_from_slice(&principal[1..]);
    envelope("auth_ack", &ack_id(request_id, now), now, &d)
}

/// `auth_expired {role, message}`: the connection's token expired; it goes on with the
/// anonymous role (`role`) until it renews with an `auth` message.
pub fn auth_expired(role: &str, revoked: bool, now: i64) -> Vec<u8> {
    let mut d = Vec::with_capacity(160);
    d.extend_from_slice(b"{\"role\":");
    json::write_str(&mut d, role);
    d.extend_from_slice(if revoked {
        b",\"message\":\"the login was ended (logged out or revoked); log in again to act as a user\"}".as_slice()
    } else {
        b",\"message\":\"the access token expired; send an auth message with a fresh token to act as the user again\"}".as_slice()
    });
    envelope("auth_expired", &format!("auth_expired_{now}"), now, &d)
}

/// The pong's id: the ping's id with a leading `ping` replaced by `pong`, else `pong_{id}`.
pub fn pong_id(request_id: Option<&str>) -> String {
    match request_id {
        Some(r) => match r.strip_prefix("ping") {
            Some(rest) => format!("pong{rest}"),
            None => format!("pong_{r}"),
        },
        None => "pong".to_owned(),
    }
}

/// `pong {server_time, latency}`.
pub fn pong(request_id: Option<&str>, latency_ms: i64, now: i64) -> Vec<u8> {
    let mut d = Vec::with_capacity(64);
    d.extend_from_slice(b"{\"server_time\":\"");
    d.extend_from_slice(super::iso(now).as_bytes());
    d.extend_from_slice(b"\",\"latency\":");
    json::write_i64(&mut d, latency_ms);
    d.push(b'}');
    envelope("pong", &pong_id(request_id), now, &d)
}

/// `error {code, message, details, request_id}` (id `{request_id}_error`, else `error_{now}`).
pub fn error(err: &ApiError, request_id: Option<&str>, now: i64) -> Vec<u8> {
    let mut d = Vec::with_capacity(160);
    err.write_json(&mut d);
    d.pop();
    d.push(b',');
    write_request_id(&mut d, request_id);
    d.push(b'}');
    let id = match request_id {
        Some(r) => format!("{r}_error"),
        None => format!("error_{now}"),
    };
    envelope("error", &id, now, &d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    /// 2025-08-12T10:30:00.123Z
    const NOW: i64 = 1_754_994_600_123;

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn replies_byte_for_byte() {
        assert_eq!(
            s(connected("dashboard_001", "general", NOW)),
            r#"{"type":"connected","id":"connected_dashboard_001","timestamp":"2025-08-12T10:30:00.123Z","data":{"client_id":"dashboard_001","data_type":"general","server_time":"2025-08-12T10:30:00.123Z"}}"#
        );
        assert_eq!(
            s(ack(
                Ack::Subscribe,
                Some("sub_001"),
                &[ChannelId(1001)],
                &[ChannelId(9)],
                1,
                NOW
            )),
            r#"{"type":"subscribe_ack","id":"sub_001_ack","timestamp":"2025-08-12T10:30:00.123Z","data":{"request_id":"sub_001","subscribed":[1001],"failed":[9],"total":1}}"#
        );
        assert_eq!(
            s(ack(Ack::Unsubscribe, None, &[], &[], 0, NOW)),
            r#"{"type":"unsubscribe_ack","id":"ack_1754994600123","timestamp":"2025-08-12T10:30:00.123Z","data":{"request_id":null,"unsubscribed":[],"failed":[],"total":0}}"#
        );
        assert_eq!(
            s(pong(Some("ping_001"), 5, NOW)),
            r#"{"type":"pong","id":"pong_001","timestamp":"2025-08-12T10:30:00.123Z","data":{"server_time":"2025-08-12T10:30:00.123Z","latency":5}}"#
        );
        assert_eq!(
            s(error(
                &ApiError::channel_not_found(9999),
                Some("sub_001"),
                NOW
            )),
            r#"{"type":"error","id":"sub_001_error","timestamp":"2025-08-12T10:30:00.123Z","data":{"code":"CHANNEL_NOT_FOUND","message":"Channel not found","details":"Channel 9999 not found","request_id":"sub_001"}}"#
        );
        let e = s(error(&ErrorCode::InvalidJson.context("x"), None, NOW));
        assert!(
            e.starts_with(r#"{"type":"error","id":"error_1754994600123","#),
            "{e}"
        );
        assert_eq!(
            s(status(Some("Redis unavailable: refused"), NOW)),
            r#"{"type":"status","id":"status_1754994600123","timestamp":"2025-08-12T10:30:00.123Z","data":{"source":"degraded","reason":"Redis unavailable: refused"}}"#
        );
        assert!(s(status(None, NOW)).ends_with(r#""data":{"source":"healthy","reason":null}}"#));
        assert_eq!(pong_id(Some("hb_1")), "pong_hb_1");
        assert_eq!(pong_id(None), "pong");
    }

    #[test]
    fn frames_match_the_envelope() {
        let iso = super::super::iso(NOW);
        let one = br#"{"channel_id":1,"data_type":"T","values":{"1":2}}"#;
        let f = build_frame(42, &iso, &[one]);
        assert_eq!(&f[..2], &[0x81, 126]);
        assert_eq!(&f[4..], &envelope("data_update", "update_42", NOW, one)[..]);
        let two = build_frame(7, &iso, &[one, one]);
        let mut data = b"{\"updates\":[".to_vec();
        data.extend_from_slice(one);
        data.push(b',');
        data.extend_from_slice(one);
        data.extend_from_slice(b"]}");
        assert_eq!(
            &two[4..],
            &envelope("data_batch", "batch_7", NOW, &data)[..]
        );
    }
}
