//! The REST envelope (PROTOCOL.md §4): `{"success":true,"data":…,"message"?,"timestamp"}` or
//! `{"success":false,"error":{"code","message","details"},"timestamp"}`.

use crate::error::ApiError;
use crate::json;

/// The success envelope around pre-rendered `data`.
pub fn success(data: &[u8], message: Option<&str>, now: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 96);
    out.extend_from_slice(b"{\"success\":true,\"data\":");
    out.extend_from_slice(data);
    if let Some(m) = message {
        out.extend_from_slice(b",\"message\":");
        json::write_str(&mut out, m);
    }
    write_timestamp(&mut out, now);
    out
}

/// The error envelope.
pub fn error(err: &ApiError, now: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"{\"success\":false,\"error\":");
    err.write_json(&mut out);
    write_timestamp(&mut out, now);
    out
}

fn write_timestamp(out: &mut Vec<u8>, now: i64) {
    out.extend_from_slice(b",\"timestamp\":\"");
    out.extend_from_slice(super::iso(now).as_bytes());
    out.extend_from_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        let now = 1_754_994_600_123;
        assert_eq!(
            success(b"[]", Some("Found 0 channels"), now),
            br#"{"success":true,"data":[],"message":"Found 0 channels","timestamp":"2025-08-12T10:30:00.123Z"}"#
        );
        assert_eq!(
            error(&ApiError::channel_not_found(9), now),
            br#"{"success":false,"error":{"code":"CHANNEL_NOT_FOUND","message":"Channel not found","details":"Channel 9 not found"},"timestamp":"2025-08-12T10:30:00.123Z"}"#
        );
    }
}
