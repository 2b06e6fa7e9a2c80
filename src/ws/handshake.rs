//! The RFC 6455 opening handshake on top of a parsed HTTP request, plus this gateway's
//! query parameters (`client_id`, `data_type`, `alarms_since`, `token`).

use crate::alarm::EventId;
use crate::error::{ApiError, ErrorCode};
use crate::http::{Method, Query, Request};

/// What a connection receives (the `data_type` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Data updates, alarms and control feedback.
    General,
    /// Data updates and control feedback only.
    Realtime,
    /// Alarms only.
    Alarm,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::General => "general",
            Audience::Realtime => "realtime",
            Audience::Alarm => "alarm",
        }
    }

    pub fn wants_data(self) -> bool {
        self != Audience::Alarm
    }

    pub fn wants_alarms(self) -> bool {
        self != Audience::Realtime
    }
}

/// An accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    pub client_id: Option<String>,
    pub audience: Audience,
    /// `alarms_since`: the last alarm event the client saw (it is sent what followed).
    pub alarms_since: Option<EventId>,
    /// `token`: the access token (browsers cannot set `Authorization` on a WebSocket).
    pub token: Option<String>,
    pub accept_key: String,
}

/// True for the WebSocket paths (`/ws`, `/api/ws`).
pub fn is_ws_path(path: &str) -> bool {
    matches!(path, "/ws" | "/api/ws" | "/ws/" | "/api/ws/")
}

fn valid_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'))
}

/// RFC 6455 §4.1: the key is 16 bytes in base64 — 22 alphabet characters (the last one
/// carrying only 2 bits, so one of `AQgw`) and `==`.
fn is_websocket_key(k: &str) -> bool {
    let b = k.as_bytes();
    b.len() == 24
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
        && matches!(b[21], b'A' | b'Q' | b'g' | b'w')
        && &b[22..] == b"=="
}

/// Validates an upgrade request; the error is answered as a JSON HTTP error.
pub fn check(req: &Request) -> Result<Upgrade, ApiError> {
    let bad = |details: &str| ErrorCode::BadRequest.context(details);
    if req.method != Method::Get {
        return Err(ErrorCode::MethodNotAllowed
            .context("the WebSocket endpoint accepts GET with Upgrade: websocket"));
    }
    if !req.websocket {
        return Err(bad(
            "this endpoint needs 'Connection: Upgrade' and 'Upgrade: websocket'",
        ));
    }
    if req.version != 1 {
        // RFC 6455 §4.1: the opening handshake is an HTTP/1.1 request.
        return Err(bad("WebSocket upgrades need HTTP/1.1"));
    }
    if req.ws_version.as_deref() != Some("13") {
        return Err(bad("Sec-WebSocket-Version must be 13"));
    }
    let key = req
        .ws_key
        .as_deref()
        .filter(|k| is_websocket_key(k))
        .ok_or_else(|| bad("Sec-WebSocket-Key must be 16 base64-encoded bytes"))?;
    let q = Query::parse(&req.query)?;
    let client_id = match q.get("client_id")? {
        None | Some("") => None,
        Some(id) if valid_client_id(id) => Some(id.to_owned()),
        Some(_) => {
            return Err(ApiError::invalid_parameter(
                "client_id",
                "must be 1 to 64 characters of letters, digits and _ - . : @",
            ))
        }
    };
    let audience = match q.get("data_type")? {
        None | Some("general") => Audience::General,
        Some("realtime") => Audience::Realtime,
        Some("alarm") => Audience::Alarm,
        Some(other) => {
            return Err(ApiError::invalid_parameter(
                "data_type",
                &format!("must be general, realtime or alarm, got '{other}'"),
            ))
        }
    };
    let alarms_since = match q.get("alarms_since")? {
        None => None,
        Some(id) => Some(EventId::parse(id).ok_or_else(|| {
            ApiError::invalid_parameter(
                "alarms_since",
                &format!("must be an alarm event id such as 1733150000123-0, got '{id}'"),
            )
        })?),
    };
    let token = match q.get("token")? {
        None | Some("") => None,
        Some(t) if t.len() <= 4096 => Some(t.to_owned()),
        Some(_) => {
            return Err(ApiError::invalid_parameter(
                "token",
                "must be at most 4096 bytes",
            ))
        }
    };
    Ok(Upgrade {
        client_id,
        audience,
        alarms_since,
        token,
        accept_key: tungstenite::handshake::derive_accept_key(key.as_bytes()),
    })
}

/// The `101 Switching Protocols` response.
pub fn response(accept_key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept_key}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits, Parsed};

    fn request(target: &str, extra: &str) -> Request {
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
        );
        let limits = Limits {
            max_head_bytes: 4096,
            max_headers: 32,
            max_body_bytes: 0,
        };
        match parse_request(raw.as_bytes(), &limits) {
            Parsed::Complete(r, _) => *r,
            other => panic!("{other:?}"),
        }
    }

    const KEY: &str =
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn rfc_example_accept_key() {
        let u = check(&request("/ws", KEY)).unwrap();
        assert_eq!(u.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(u.audience, Audience::General);
        assert_eq!(u.client_id, None);
    }

    #[test]
    fn seed_examples() {
        let u = check(&request("/ws?client_id=dashboard_001", KEY)).unwrap();
        assert_eq!(u.client_id.as_deref(), Some("dashboard_001"));
        let u = check(&request("/ws?client_id=mobile_app&data_type=realtime", KEY)).unwrap();
        assert_eq!(u.audience, Audience::Realtime);
    }

    #[test]
    fn refusals() {
        let e = check(&request("/ws?data_type=video", KEY)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParameter);
        assert!(e.details.contains("data_type"));
        let e = check(&request("/ws?client_id=a%20b", KEY)).unwrap_err();
        assert!(e.details.contains("client_id"));
        let e = check(&request("/ws", "Sec-WebSocket-Version: 13\r\n")).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = check(&request(
            "/ws",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
        ))
        .unwrap_err();
        assert!(e.details.contains("13"));
        for key in [
            "!!!!!!!!!!!!!!!!!!!!!!==",
            "dGhlIHNhbXBsZSBub25jZR==",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "dGhlIHNhbXBsZSBub25jZQ===",
        ] {
            let e = check(&request(
                "/ws",
                &format!("Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"),
            ))
            .unwrap_err();
            assert!(e.details.contains("base64"), "{key}: {e}");
        }
        let mut old = request("/ws", KEY);
        old.version = 0;
        assert!(check(&old).unwrap_err().details.contains("HTTP/1.1"));
    }
}
