//! Client messages (parsed with simd-json, validated strictly) and server messages (rendered
//! straight to bytes). Every failure maps to a stable error code and keeps the request id
//! when one could be read, so a client can match the error to what it sent.

use crate::error::{ApiError, ErrorCode};
use crate::json;
use crate::model::{ChannelId, DataType};
use simd_json::prelude::*;
use simd_json::BorrowedValue;

/// A set of data types as a bit mask (bit = `DataType::index`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeMask(pub u8);

impl TypeMask {
    pub const ALL: TypeMask = TypeMask(0b1111);

    pub fn contains(self, t: DataType) -> bool {
        self.0 & (1 << t.index()) != 0
    }

    pub fn with(self, t: DataType) -> TypeMask {
        TypeMask(self.0 | (1 << t.index()))
    }

    pub fn types(self) -> impl Iterator<Item = DataType> {
        DataType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub channels: Vec<ChannelId>,
    pub types: TypeMask,
    pub interval_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Subscribe(SubscribeRequest),
    /// `None` = every channel.
    Unsubscribe(Option<Vec<ChannelId>>),
    Control,
    Ping,
}

/// A parsed client message: its id and timestamp (when readable) and the request or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub request: Result<Request, ApiError>,
}

pub const DEFAULT_INTERVAL_MS: u32 = 1000;
pub const MIN_INTERVAL_MS: u32 = 100;
pub const MAX_INTERVAL_MS: u32 = 60_000;

fn invalid(field: &str, expected: &str) -> ApiError {
    ApiError::invalid_parameter(field, expected)
}

fn channel_list(
    v: Option<&BorrowedValue>,
    max: usize,
    required: bool,
) -> Result<Option<Vec<ChannelId>>, ApiError> {
    let field = "channels";
    let Some(v) = v else {
        return if required {
            Err(invalid(field, "is required: an array of channel ids"))
        } else {
            Ok(None)
        };
    };
    if !required && v.is_null() {
        return Ok(None);
    }
    let arr = v
        .as_array()
        .ok_or_else(|| invalid(field, "must be an array of channel ids"))?;
    if arr.is_empty() {
        return if required {
            Err(invalid(field, "must not be empty"))
        } else {
            Ok(None)
        };
    }
    if arr.len() > max {
        return Err(invalid(field, &format!("must list at most {max} channels")));
    }
    let mut out = Vec::with_capacity(arr.len());
    for item in arr {
        let id = item
            .as_u64()
            .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
            .ok_or_else(|| invalid(field, "must hold integers in 1..=4294967295"))?;
        let id = ChannelId(id as u32);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(Some(out))
}

fn subscribe(data: Option<&BorrowedValue>, max_channels: usize) -> Result<Request, ApiError> {
    let data = data
        .filter(|d| d.is_object())
        .ok_or_else(|| invalid("data", "must be an object with channels"))?;
    let channels = channel_list(data.get("channels"), max_channels, true)?.unwrap_or_default();
    let types = match data.get("data_types") {
        None => TypeMask::ALL,
        Some(v) if v.is_null() => TypeMask::ALL,
        Some(v) => {
            let arr = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                invalid(
                    "data_types",
                    "must be a non-empty array of \"T\", \"S\", \"C\", \"A\"",
                )
            })?;
            let mut mask = TypeMask::default();
            for t in arr {
                let t = t.as_str().and_then(DataType::parse).ok_or_else(|| {
                    invalid("data_types", "must hold only \"T\", \"S\", \"C\", \"A\"")
                })?;
                mask = mask.with(t);
            }
            mask
        }
    };
    let interval_ms = match data.get("interval") {
        None => DEFAULT_INTERVAL_MS,
        Some(v) if v.is_null() => DEFAULT_INTERVAL_MS,
        Some(v) => {
            let n = v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            });
            match n {
                Some(n)
                    if (u64::from(MIN_INTERVAL_MS)..=u64::from(MAX_INTERVAL_MS)).contains(&n) =>
                {
                    n as u32
                }
                _ => {
                    return Err(invalid(
                        "interval",
                        &format!(
                        "must be an integer number of ms in {MIN_INTERVAL_MS}..={MAX_INTERVAL_MS}"
                    ),
                    ))
                }
            }
        }
    };
    Ok(Request::Subscribe(SubscribeRequest {
        channels,
        types,
        interval_ms,
    }))
}

/// Parses one text message.
pub fn parse(text: &str, max_channels: usize) -> Incoming {
    let mut bytes = text.as_bytes().to_vec();
    let value = match simd_json::to_borrowed_value(&mut bytes) {
        Ok(v) => v,
        Err(e) => {
            return Incoming {
                id: None,
                timestamp: None,
                request: Err(ApiError::new(
                    ErrorCode::InvalidJson,
                    "Invalid JSON",
                    format!("message is not valid JSON: {e}"),
                )),
            }
        }
    };
    let id = value.get("id").and_then(|v| match v.as_str() {
        Some(s) => Some(s.to_owned()),
        None if v.is_number() => Some(v.to_string()),
        None => None,
    });
    let timestamp = value
        .get("timestamp")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let request = if !value.is_object() {
        Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "Invalid message",
            "a message must be a JSON object {type, id, timestamp, data}",
        ))
    } else {
        match value.get("type").map(|t| t.as_str()) {
            None | Some(None) => Err(ApiError::new(
                ErrorCode::InvalidMessage,
                "Invalid message",
                "field 'type' is required and must be a string",
            )),
            Some(Some("subscribe")) => subscribe(value.get("data"), max_channels),
            Some(Some("unsubscribe")) => {
                let data = value.get("data").filter(|d| !d.is_null());
                match data {
                    Some(d) if !d.is_object() => Err(invalid("data", "must be an object")),
                    _ => channel_list(data.and_then(|d| d.get("channels")), max_channels, false)
                        .map(Request::Unsubscribe),
                }
            }
            Some(Some("control")) => Ok(Request::Control),
            Some(Some("ping")) => Ok(Request::Ping),
            Some(Some(other)) => Err(ApiError::new(
                ErrorCode::UnknownType,
                "Unknown message type",
                format!("unknown type '{other}'; expected subscribe, unsubscribe, control or ping"),
            )),
        }
    };
    Incoming {
        id,
        timestamp,
        request,
    }
}

/// `{"type":…,"id":…,"timestamp":…,"data":<data>}`.
pub fn envelope(kind: &str, id: &str, timestamp: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 96);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"id\":");
    json::write_str(&mut out, id);
    out.extend_from_slice(b",\"timestamp\":\"");
    out.extend_from_slice(timestamp.as_bytes());
    out.extend_from_slice(b"\",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
    out
}

fn now() -> String {
    crate::time::iso_now()
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

fn ack_id(request_id: Option<&str>) -> String {
    match request_id {
        Some(r) => format!("{r}_ack"),
        None => format!("ack_{}", crate::time::now_millis()),
    }
}

pub fn connected(client_id: &str, data_type: &str) -> Vec<u8> {
    let ts = now();
    let mut d = Vec::with_capacity(96);
    d.extend_from_slice(b"{\"client_id\":");
    json::write_str(&mut d, client_id);
    d.extend_from_slice(b",\"data_type\":");
    json::write_str(&mut d, data_type);
    d.extend_from_slice(b",\"server_time\":\"");
    d.extend_from_slice(ts.as_bytes());
    d.extend_from_slice(b"\"}");
    envelope("connected", &format!("connected_{client_id}"), &ts, &d)
}

/// `subscribe_ack` / `unsubscribe_ack`; `field` is `subscribed` or `unsubscribed`.
pub fn ack(
    kind: &str,
    field: &str,
    request_id: Option<&str>,
    ok: &[ChannelId],
    failed: &[ChannelId],
    total: usize,
) -> Vec<u8> {
    let mut d = Vec::with_capacity(96);
    d.push(b'{');
    write_request_id(&mut d, request_id);
    d.extend_from_slice(b",\"");
    d.extend_from_slice(field.as_bytes());
    d.extend_from_slice(b"\":");
    write_ids(&mut d, ok);
    d.extend_from_slice(b",\"failed\":");
    write_ids(&mut d, failed);
    d.extend_from_slice(b",\"total\":");
    json::write_u64(&mut d, total as u64);
    d.push(b'}');
    envelope(kind, &ack_id(request_id), &now(), &d)
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

/// `pong` with the latency between the client's timestamp and our receipt (0 if unreadable).
pub fn pong(request_id: Option<&str>, client_timestamp: Option<&str>, received_ms: i64) -> Vec<u8> {
    let latency = client_timestamp
        .and_then(crate::time::parse_iso_millis)
        .map(|sent| (received_ms - sent).max(0))
        .unwrap_or(0);
    let ts = now();
    let mut d = Vec::with_capacity(64);
    d.extend_from_slice(b"{\"server_time\":\"");
    d.extend_from_slice(ts.as_bytes());
    d.extend_from_slice(b"\",\"latency\":");
    json::write_i64(&mut d, latency);
    d.push(b'}');
    envelope("pong", &pong_id(request_id), &ts, &d)
}

/// `error {code, message, details, request_id}`.
pub fn error(err: &ApiError, request_id: Option<&str>) -> Vec<u8> {
    let mut d = Vec::with_capacity(160);
    err.write_json(&mut d);
    d.pop();
    d.push(b',');
    write_request_id(&mut d, request_id);
    d.push(b'}');
    let id = match request_id {
        Some(r) => format!("{r}_error"),
        None => format!("error_{}", crate::time::now_millis()),
    };
    envelope("error", &id, &now(), &d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Result<Request, ApiError> {
        parse(text, 100).request
    }

    #[test]
    fn seed_subscribe() {
        let m = parse(
            r#"{"type":"subscribe","id":"sub_001","timestamp":"{时间戳}","data":{"channels":[1001,1002],"data_types":["T","S"],"interval":1000}}"#,
            100,
        );
        assert_eq!(m.id.as_deref(), Some("sub_001"));
        assert_eq!(
            m.request.unwrap(),
            Request::Subscribe(SubscribeRequest {
                channels: vec![ChannelId(1001), ChannelId(1002)],
                types: TypeMask(0b11),
                interval_ms: 1000
            })
        );
    }

    #[test]
    fn defaults_and_ranges() {
        let Request::Subscribe(s) =
            req(r#"{"type":"subscribe","data":{"channels":[5,5]}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.channels, vec![ChannelId(5)]);
        assert_eq!(s.types, TypeMask::ALL);
        assert_eq!(s.interval_ms, 1000);
        for (bad, field) in [
            (r#"{"type":"subscribe","data":{"channels":[]}}"#, "channels"),
            (
                r#"{"type":"subscribe","data":{"channels":"1001"}}"#,
                "channels",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[0]}}"#,
                "channels",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1.5]}}"#,
                "channels",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[4294967296]}}"#,
                "channels",
            ),
            (r#"{"type":"subscribe","data":{}}"#, "channels"),
            (r#"{"type":"subscribe"}"#, "data"),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"interval":99}}"#,
                "interval",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"interval":60001}}"#,
                "interval",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"interval":"1000"}}"#,
                "interval",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"data_types":["X"]}}"#,
                "data_types",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"data_types":[]}}"#,
                "data_types",
            ),
        ] {
            let e = req(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParameter, "{bad}");
            assert!(e.details.contains(field), "{bad}: {e}");
        }
        let many = format!(
            r#"{{"type":"subscribe","data":{{"channels":[{}]}}}}"#,
            (1..=101)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(req(&many).unwrap_err().details.contains("at most 100"));
    }

    #[test]
    fn other_types() {
        assert_eq!(
            req(r#"{"type":"unsubscribe","id":"u","data":{"channels":[1001]}}"#).unwrap(),
            Request::Unsubscribe(Some(vec![ChannelId(1001)]))
        );
        assert_eq!(
            req(r#"{"type":"unsubscribe"}"#).unwrap(),
            Request::Unsubscribe(None)
        );
        assert_eq!(
            req(r#"{"type":"unsubscribe","data":{"channels":[]}}"#).unwrap(),
            Request::Unsubscribe(None)
        );
        assert_eq!(
            req(r#"{"type":"ping","id":"ping_001","timestamp":"2025-08-12T10:30:00Z"}"#).unwrap(),
            Request::Ping
        );
        assert_eq!(
            req(r#"{"type":"control","data":{}}"#).unwrap(),
            Request::Control
        );
        let e = parse(r#"{"type":"dance","id":"d1"}"#, 10);
        assert_eq!(e.request.unwrap_err().code, ErrorCode::UnknownType);
        assert_eq!(e.id.as_deref(), Some("d1"));
        assert_eq!(req("{nope").unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(req("[1,2]").unwrap_err().code, ErrorCode::InvalidMessage);
        assert_eq!(
            req(r#"{"id":"x"}"#).unwrap_err().code,
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            req(r#"{"type":5}"#).unwrap_err().code,
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            parse(r#"{"type":"ping","id":7}"#, 1).id.as_deref(),
            Some("7")
        );
    }

    #[test]
    fn replies() {
        assert_eq!(pong_id(Some("ping_001")), "pong_001");
        assert_eq!(pong_id(Some("hb_1")), "pong_hb_1");
        let p = String::from_utf8(pong(
            Some("ping_1"),
            Some("2025-08-12T10:30:00.000Z"),
            1_754_994_600_005,
        ))
        .unwrap();
        assert!(p.contains("\"latency\":5"), "{p}");
        let a = String::from_utf8(ack(
            "subscribe_ack",
            "subscribed",
            Some("sub_001"),
            &[ChannelId(1001)],
            &[ChannelId(9)],
            1,
        ))
        .unwrap();
        assert!(
            a.starts_with(r#"{"type":"subscribe_ack","id":"sub_001_ack","timestamp":""#),
            "{a}"
        );
        assert!(
            a.ends_with(
                r#""data":{"request_id":"sub_001","subscribed":[1001],"failed":[9],"total":1}}"#
            ),
            "{a}"
        );
        let e =
            String::from_utf8(error(&ApiError::channel_not_found(9999), Some("sub_001"))).unwrap();
        assert!(e.contains(r#""data":{"code":"CHANNEL_NOT_FOUND","message":"Channel not found","details":"Channel 9999 not found","request_id":"sub_001"}"#), "{e}");
    }
}
