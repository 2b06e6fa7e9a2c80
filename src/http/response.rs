//! Response rendering: the JSON envelope's bytes plus a status line and headers.

use crate::error::ApiError;
use crate::json;
use crate::wire;

/// A response a handler returns; the connection decides keep-alive and HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra headers (e.g. `Allow` on 405).
    pub headers: Vec<(&'static str, String)>,
    /// Close the connection after this response.
    pub close: bool,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
            close: false,
        }
    }

    /// 200 with the success envelope around pre-rendered `data`, stamped `now` (Unix ms).
    pub fn success(data: &[u8], message: Option<&str>, now: i64) -> Response {
        Response::json(200, wire::rest::success(data, message, now))
    }

    /// The error envelope with the code's HTTP status, stamped `now` (Unix ms).
    pub fn error(err: &ApiError, now: i64) -> Response {
        Response::json(err.code.http_status(), wire::rest::error(err, now))
    }

    /// Closes the connection after this response.
    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Appends the response's bytes. `head_only` omits the body (HEAD) but keeps its length.
pub fn write_response(
    out: &mut Vec<u8>,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
    cors_origin: Option<&str>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    json::write_u64(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(reason(resp.status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(resp.content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    json::write_u64(out, resp.body.len() as u64);
    if let Some(origin) = cors_origin {
        out.extend_from_slice(b"\r\nAccess-Control-Allow-Origin: ");
        out.extend_from_slice(origin.as_bytes());
        if origin != "*" {
            // The answer depends on the Origin: caches must not hand it to another page.
            out.extend_from_slice(b"\r\nVary: Origin");
        }
    }
    for (name, value) in &resp.headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    if keep_alive && !resp.close {
        out.extend_from_slice(b"\r\nConnection: keep-alive\r\n\r\n");
    } else {
        out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    }
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn renders() {
        let mut out = Vec::new();
        let r = Response::json(200, b"{}".to_vec()).with_header("Allow", "GET");
        write_response(&mut out, &r, true, false, Some("*"));
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(s.contains("Allow: GET\r\n"));
        assert!(s.ends_with("keep-alive\r\n\r\n{}"));
        let mut out = Vec::new();
        let e = Response::error(&ApiError::channel_not_found(9999), 0);
        assert_eq!(e.status, 404);
        write_response(&mut out, &e, false, true, None);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("Connection: close\r\n\r\n"));
        assert!(!s.contains("Access-Control"));
        let body = String::from_utf8(e.body).unwrap();
        assert!(body.contains(ErrorCode::ChannelNotFound.as_str()));
        assert!(body.contains("Channel 9999 not found"));
    }
}
