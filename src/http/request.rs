//! Request parsing over a byte buffer the connection owns.

use super::query::decode_path;
use crate::error::{ApiError, ErrorCode};

/// Size limits applied while parsing (from `HttpConfig`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }

    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// A complete request, owning what the handlers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The HTTP/1.x minor version (0 or 1).
    pub version: u8,
    /// Percent-decoded path, without the query.
    pub path: String,
    /// Raw query string (after `?`), still encoded.
    pub query: String,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// `Upgrade: websocket` with `Connection: upgrade`.
    pub websocket: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    pub authorization: Option<String>,
    /// `Host` (one is required in HTTP/1.1), `Origin` (browsers send it on cross-origin and
    /// upgrade requests) and `X-Forwarded-For` (believed only from trusted proxies).
    pub host: Option<String>,
    pub origin: Option<String>,
    pub forwarded_for: Option<String>,
    /// `If-None-Match` (the page's assets answer 304 when it names their ETag).
    pub if_none_match: Option<String>,
    pub body: Vec<u8>,
}

/// The length of the request head in `buf` (through its `\r\n\r\n`), if complete. The
/// search resumes where the previous call on the same growing buffer stopped (`scanned`), so
/// a head that arrives a byte at a time is scanned once in all, not once per read. Once found,
/// `scanned` stays before the terminator, so later calls (the body still arriving) find the
/// same end again instead of searching past it.
pub fn head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    let from = (*scanned).min(buf.len()).saturating_sub(3);
    match buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => {
            *scanned = from + i;
            Some(from + i + 4)
        }
        None => {
            *scanned = buf.len();
            None
        }
    }
}

/// Outcome of feeding the buffer to the parser.
#[derive(Debug)]
pub enum Parsed {
    /// A request and how many bytes of the buffer it used.
    Complete(Box<Request>, usize),
    /// Need more bytes.
    Partial,
    /// The request cannot be served; answer with this error and close the connection
    /// (the framing of whatever follows is unknown).
    Error(ApiError),
}

fn head_too_large(limits: &Limits) -> Parsed {
    Parsed::Error(ErrorCode::HeadersTooLarge.context(format!(
        "request line and headers must fit in {} bytes and {} headers",
        limits.max_head_bytes, limits.max_headers
    )))
}

fn bad_request(details: impl Into<String>) -> Parsed {
    Parsed::Error(ErrorCode::BadRequest.context(details))
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Parses one request from the front of `buf`.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Parsed {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > limits.max_head_bytes => {
            return head_too_large(limits)
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return head_too_large(limits)
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return head_too_large(limits),
        Err(e) => return bad_request(format!("malformed request: {e}")),
    };
    let version = req.version.unwrap_or(1);
    let method = Method::parse(req.method.unwrap_or(""));
    let target = req.path.unwrap_or("/");

    let mut content_length: Option<usize> = None;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut connection_upgrade = false;
    let mut upgrade_ws = false;
    let mut ws_key = None;
    let mut ws_version = None;
    let mut authorization = None;
    let mut hosts = 0;
    let (mut host, mut origin, mut forwarded_for) = (None, None, None);
    let mut if_none_match = None;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("");
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = match value.trim().parse::<usize>() {
                Ok(n) if value.trim().bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return bad_request("invalid Content-Length"),
            };
            if content_length.is_some_and(|old| old != n) {
                return bad_request("conflicting Content-Length headers");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Request bodies are small JSON documents; chunked uploads are refused rather than
            // half-supported (request smuggling lives in that half).
            return bad_request("Transfer-Encoding is not supported; send Content-Length");
        } else if name.eq_ignore_ascii_case("connection") {
            connection_close |= has_token(value, "close");
            connection_keep_alive |= has_token(value, "keep-alive");
            connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_ws |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            ws_key = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            ws_version = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            // Several headers form one list (RFC 7230 §3.2.2).
            let list: &mut String = forwarded_for.get_or_insert_with(String::new);
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(value.trim());
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("if-none-match") {
            if_none_match = Some(value.trim().to_owned());
        }
    }

    let body_len = content_length.unwrap_or(0);
    if body_len > limits.max_body_bytes {
        return Parsed::Error(ErrorCode::PayloadTooLarge.context(format!(
            "request body must be at most {} bytes",
            limits.max_body_bytes
        )));
    }
    if buf.len() < head_len + body_len {
        return Parsed::Partial;
    }

    if !target.starts_with('/') {
        return bad_request("request target must be an absolute path");
    }
    let (raw_path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(path) = decode_path(raw_path) else {
        return bad_request(
            "request path is not valid percent-encoded UTF-8, or encodes '/' or NUL",
        );
    };
    if version == 1 && hosts != 1 {
        // RFC 7230 §5.4: exactly one Host header in an HTTP/1.1 request.
        return bad_request("an HTTP/1.1 request needs exactly one Host header");
    }
    let keep_alive = if version == 0 {
        connection_keep_alive && !connection_close
    } else {
        !connection_close
    };
    let request = Request {
        method,
        version,
        path,
        query: query.to_owned(),
        keep_alive,
        websocket: upgrade_ws && connection_upgrade,
        ws_key,
        ws_version,
        authorization,
        host,
        origin,
        forwarded_for,
        if_none_match,
        body: buf[head_len..head_len + body_len].to_vec(),
    };
    Parsed::Complete(Box::new(request), head_len + body_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 1024,
        max_headers: 8,
        max_body_bytes: 16,
    };

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf, &LIMITS) {
            Parsed::Complete(r, n) => (*r, n),
            other => panic!("{other:?}"),
        }
    }

    fn error_code(buf: &[u8]) -> ErrorCode {
        match parse_request(buf, &LIMITS) {
            Parsed::Error(e) => e.code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn head_end_resumes_its_search() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let mut scanned = 0;
        for n in 1..27 {
            assert_eq!(head_end(&req[..n], &mut scanned), None, "{n}");
            assert_eq!(scanned, n);
        }
        assert_eq!(head_end(&req[..27], &mut scanned), Some(27));
        // The body arriving afterwards: the same head end, again and again.
        for n in 28..=req.len() {
            assert_eq!(head_end(&req[..n], &mut scanned), Some(27), "{n}");
        }
        let mut fresh = 0;
        assert_eq!(head_end(req, &mut fresh), Some(27));
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /api/channels/1001/realtime?data_type=T HTTP/1.1\r\nHost: x\r\n\r\n";
        let (r, n) = complete(raw);
        assert_eq!(n, raw.len());
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/api/channels/1001/realtime");
        assert_eq!(r.query, "data_type=T");
        assert!(r.keep_alive);
    }

    #[test]
    fn pipelined_and_partial() {
        let raw = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HT";
        let (a, n) = complete(raw);
        assert_eq!(a.path, "/a");
        let (b, m) = complete(&raw[n..]);
        assert_eq!(b.path, "/b");
        assert!(matches!(
            parse_request(&raw[n + m..], &LIMITS),
            Parsed::Partial
        ));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn body_and_limits() {
        let (r, _) = complete(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(r.body, b"abc");
        assert!(matches!(
            parse_request(
                b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab",
                &LIMITS
            ),
            Parsed::Partial
        ));
        assert_eq!(
            error_code(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n"),
            ErrorCode::PayloadTooLarge
        );
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(2000));
        assert_eq!(error_code(long.as_bytes()), ErrorCode::HeadersTooLarge);
        let partial_long = format!("GET /{}", "a".repeat(2000));
        assert_eq!(
            error_code(partial_long.as_bytes()),
            ErrorCode::HeadersTooLarge
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "X-A: 1\r\n".repeat(9)
        );
        assert_eq!(error_code(many.as_bytes()), ErrorCode::HeadersTooLarge);
    }

    #[test]
    fn host_and_encoded_slashes() {
        for bad in [
            &b"GET /health HTTP/1.1\r\n\r\n"[..],
            b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /api/channels%2F1001%2Fstatus HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/channels%2f1 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(
                error_code(bad),
                ErrorCode::BadRequest,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // HTTP/1.0 predates Host; other escapes still decode.
        assert_eq!(complete(b"GET /health HTTP/1.0\r\n\r\n").0.version, 0);
        assert_eq!(
            complete(b"GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n").0.path,
            "/a b"
        );
    }

    #[test]
    fn bad_requests() {
        assert_eq!(
            error_code(b"GET\x01 / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ErrorCode::BadRequest
        );
        assert_eq!(
            error_code(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ErrorCode::BadRequest
        );
        assert_eq!(
            error_code(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            ),
            ErrorCode::BadRequest
        );
        assert_eq!(
            error_code(b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ErrorCode::BadRequest
        );
        assert_eq!(
            error_code(b"GET x HTTP/1.1\r\nHost: x\r\n\r\n"),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn websocket_upgrade() {
        let (r, _) = complete(
            b"GET /ws?client_id=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert!(r.websocket);
        assert_eq!(r.ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(r.ws_version.as_deref(), Some("13"));
    }
}
