//! Percent-decoding and strict query-string parsing.

use crate::error::ApiError;
use crate::model::{parse_canonical_u32, DataType};

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`); `None` on a bad escape or
/// on bytes that are not UTF-8 once decoded.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Decodes a request path. An encoded `/` (`%2F`) or NUL is refused: decoding it before
/// routing would let `/api/channels%2F1001%2Fstatus` name a route the client did not write.
pub fn decode_path(raw: &str) -> Option<String> {
    // No lower-cased copy per request: most paths have no '%' at all.
    let encodes_slash_or_nul =
        |w: &[u8]| w[0] == b'%' && matches!((w[1], w[2] | 0x20), (b'2', b'f') | (b'0', b'0'));
    if raw.contains('%') && raw.as_bytes().windows(3).any(encodes_slash_or_nul) {
        return None;
    }
    percent_decode(raw, false)
}

/// A decoded query string. Unknown parameters are ignored (cache busters, tracing ids);
/// known ones are parsed strictly: a bad or repeated value is a 400 naming the parameter.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// Latest Unix time (s) a query may name: InfluxDB keeps time as i64 nanoseconds (up to
/// 2262), and a later bound overflowed its query parser (a 503 instead of a 400).
pub const MAX_UNIX_SECS: i64 = 9_000_000_000;

impl Query {
    pub fn parse(raw: &str) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let bad = || ApiError::invalid_parameter("query", "is not valid percent-encoded UTF-8");
            let k = percent_decode(k, true).ok_or_else(bad)?;
            let v = percent_decode(v, true).ok_or_else(bad)?;
            pairs.push((k, v));
        }
        Ok(Query { pairs })
    }

    /// The value of `name`, if given once; given twice is ambiguous and refused.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut found = None;
        for (k, v) in &self.pairs {
            if k == name {
                if found.is_some() {
                    return Err(ApiError::invalid_parameter(name, "must be given only once"));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    /// An unsigned integer within `min..=max`.
    pub fn u32_in(&self, name: &str, min: u32, max: u32) -> Result<Option<u32>, ApiError> {
        let Some(v) = self.get(name)? else {
            return Ok(None);
        };
        match parse_canonical_u32(v) {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid_parameter(
                name,
                &format!("must be an integer in {min}..={max}, got '{v}'"),
            )),
        }
    }

    /// A Unix time in seconds (non-negative integer).
    pub fn unix_secs(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name)? else {
            return Ok(None);
        };
        let ok = !v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit());
        match ok.then(|| v.parse::<i64>().ok()).flatten() {
            Some(n) if n > MAX_UNIX_SECS => Err(ApiError::invalid_parameter(
                name,
                &format!("must be at most {MAX_UNIX_SECS} (the year 2255), got {n}"),
            )),
            Some(n) => Ok(Some(n)),
            None => Err(ApiError::invalid_parameter(
                name,
                &format!("must be a Unix time in seconds, got '{v}'"),
            )),
        }
    }

    /// A data type letter `T`, `S`, `C` or `A`.
    pub fn data_type(&self, name: &str) -> Result<Option<DataType>, ApiError> {
        let Some(v) = self.get(name)? else {
            return Ok(None);
        };
        DataType::parse(v).map(Some).ok_or_else(|| {
            ApiError::invalid_parameter(name, &format!("must be one of T, S, C, A, got '{v}'"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c", true).unwrap(), "a b c");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("%E6%B8%A9", false).unwrap(), "温");
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%FF", false), None);
    }

    #[test]
    fn strict_values() {
        let q = Query::parse("limit=abc&data_type=T&point_id=%31&x=").unwrap();
        let e = q.u32_in("limit", 1, 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParameter);
        assert!(e.details.contains("limit"));
        assert_eq!(q.data_type("data_type").unwrap(), Some(DataType::Telemetry));
        assert_eq!(q.u32_in("point_id", 0, u32::MAX).unwrap(), Some(1));
        assert_eq!(q.u32_in("missing", 0, 1).unwrap(), None);
        for raw in [
            "limit=0",
            "limit=1001",
            "limit=",
            "limit=-1",
            "limit=1&limit=2",
        ] {
            let q = Query::parse(raw).unwrap();
            assert!(q.u32_in("limit", 1, 1000).is_err(), "{raw}");
        }
        let q = Query::parse("data_type=X").unwrap();
        assert!(q.data_type("data_type").is_err());
        assert!(Query::parse("a=%zz").is_err());
    }
}
