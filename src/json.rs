//! Minimal JSON writing. Responses and frames are assembled from pre-rendered fragments,
//! so a general serializer would only add copies; these helpers cover what is left.

/// Appends `s` as a JSON string literal (quoted, escaped).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends an unsigned integer.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends a signed integer.
pub fn write_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `"key":` (the key is a trusted literal without characters that need escaping).
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// A request body as JSON, within `max_depth` nesting (checked first, with one linear scan:
/// the parser recurses per level). `shape` says what the body must be, for the error.
pub fn parse_body(
    body: &[u8],
    max_depth: usize,
    shape: &str,
) -> Result<simd_json::OwnedValue, crate::error::ApiError> {
    use crate::error::{ApiError, ErrorCode};
    if !crate::ws::cmd::nesting_within(body, max_depth) {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "Invalid JSON",
            format!("the body nests arrays/objects deeper than {max_depth} levels"),
        ));
    }
    let mut buf = body.to_vec();
    simd_json::to_owned_value(&mut buf).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidJson,
            "Invalid JSON",
            format!("the body must be {shape}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes() {
        assert_eq!(s("plain"), "\"plain\"");
        assert_eq!(s("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(s("x\ny\u{1}"), "\"x\\ny\\u0001\"");
        assert_eq!(s("温度"), "\"温度\"");
    }
}
