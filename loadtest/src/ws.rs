//! Just enough WebSocket for a lean client: frame headers parsed by hand (payloads are never
//! copied), masked client frames, the HTTP upgrade, and a byte scanner that pulls
//! `(channel_id, "1", "2")` out of `data_update` / `data_batch` payloads.

use memchr::memmem::Finder;

pub const OP_CONT: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BIN: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// Largest frame accepted from a server.
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub header_len: usize,
    pub payload_len: usize,
}

impl Header {
    pub fn total(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses a frame header from the start of `b`; `None` when more bytes are needed.
pub fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < 2 {
        return None;
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let len7 = (b[1] & 0x7f) as usize;
    let (mut header_len, payload_len) = match len7 {
        126 => {
            if b.len() < 4 {
                return None;
            }
            (4, u16::from_be_bytes([b[2], b[3]]) as usize)
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            let mut l = [0u8; 8];
            l.copy_from_slice(&b[2..10]);
            (10, u64::from_be_bytes(l).min(usize::MAX as u64) as usize)
        }
        n => (2, n),
    };
    if masked {
        header_len += 4;
        if b.len() < header_len {
            return None;
        }
    }
    Some(Header {
        fin,
        opcode,
        masked,
        header_len,
        payload_len,
    })
}

/// A cheap per-thread PRNG (xorshift64*) for mask keys and channel choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Appends a masked client frame (RFC 6455 §5.3).
pub fn write_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: u32) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let key = mask.to_be_bytes();
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
}

/// The HTTP/1.1 upgrade request.
pub fn upgrade_request(host: &str, path: &str, key_seed: u64) -> Vec<u8> {
    // Any 16 bytes, base64: 22 chars + "==". Derived from the seed so keys differ.
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = Rng::new(key_seed);
    let mut key = String::with_capacity(24);
    for i in 0..22 {
        let v = rng.next_u64();
        // The last char encodes only 2 bits of the 16th byte.
        let idx = if i == 21 { (v & 3) << 4 } else { v & 63 } as usize;
        key.push(B64[idx] as char);
    }
    key.push_str("==");
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// `subscribe` for `channels`, data type T, at `interval` ms.
pub fn subscribe_message(channels: &[u32], interval: u32) -> Vec<u8> {
    let mut s = String::from(r#"{"type":"subscribe","id":"s1","data":{"channels":["#);
    for (i, c) in channels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&c.to_string());
    }
    s.push_str(&format!(
        r#"],"data_types":["T"],"interval":{interval}}}}}"#
    ));
    s.into_bytes()
}

/// What kind of server message a text payload is (by its leading `{"type":"…"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Data,
    Connected,
    SubscribeAck,
    Error,
    Other,
}

pub fn classify(p: &[u8]) -> Kind {
    let Some(rest) = p.strip_prefix(br#"{"type":""#) else {
        return Kind::Other;
    };
    if rest.starts_with(b"data_update\"") || rest.starts_with(b"data_batch\"") {
        Kind::Data
    } else if rest.starts_with(b"connected\"") {
        Kind::Connected
    } else if rest.starts_with(b"subscribe_ack\"") {
        Kind::SubscribeAck
    } else if rest.starts_with(b"error\"") {
        Kind::Error
    } else {
        Kind::Other
    }
}

/// Parses an unsigned integer at the start of `b` (a fraction is ignored); (value, bytes used).
fn parse_uint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v.wrapping_mul(10).wrapping_add(u64::from(b[i] - b'0'));
        i += 1;
    }
    if i == 0 {
        return None;
    }
    // Skip a fraction / exponent if present (round numbers are integers, but be lenient).
    let mut j = i;
    while j < b.len() && matches!(b[j], b'.' | b'e' | b'E' | b'+' | b'-' | b'0'..=b'9') {
        j += 1;
    }
    Some((v, j))
}

/// Parses a JSON number at the start of `b` as f64; (value, bytes used).
fn parse_f64(b: &[u8]) -> Option<(f64, usize)> {
    let mut j = 0;
    while j < b.len() && matches!(b[j], b'.' | b'e' | b'E' | b'+' | b'-' | b'0'..=b'9') {
        j += 1;
    }
    let s = std::str::from_utf8(&b[..j]).ok()?;
    Some((s.parse().ok()?, j))
}

/// Finds the value of `"key":` inside one `values` object (`vals` is the text between its
/// braces), trying position `hint` first.
fn find_point<'a>(vals: &'a [u8], key: &[u8], hint: usize, finder: &Finder) -> Option<&'a [u8]> {
    if let Some(rest) = vals.get(hint..) {
        if rest.starts_with(key) {
            return Some(&rest[key.len()..]);
        }
    }
    let i = finder.find(vals)?;
    Some(&vals[i + key.len()..])
}

/// Pre-built searchers, one set per thread.
pub struct Scanner {
    channel: Finder<'static>,
    values: Finder<'static>,
    p1: Finder<'static>,
    p2: Finder<'static>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            channel: Finder::new(br#""channel_id":"#),
            values: Finder::new(br#""values":{"#),
            p1: Finder::new(br#""1":"#),
            p2: Finder::new(br#""2":"#),
        }
    }
}

/// One update found in a data frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Update {
    pub channel: u32,
    /// Point "2" (round number), if present.
    pub round: Option<u64>,
}

impl Scanner {
    /// Calls `f` for every `{"channel_id":…,"values":{…}}` in `p`; returns point "1" of the
    /// first update when `want_t1` (the send time, for latency sampling).
    pub fn scan(&self, p: &[u8], want_t1: bool, mut f: impl FnMut(Update)) -> Option<f64> {
        let mut pos = 0;
        let mut t1 = None;
        let mut first = true;
        const CH: &[u8] = br#""channel_id":"#;
        const NEXT: &[u8] = br#"},{"channel_id":"#;
        while pos < p.len() {
            // Fast path: the next update starts right after the previous one.
            let start = if p[pos..].starts_with(NEXT) {
                pos + NEXT.len()
            } else {
                match self.channel.find(&p[pos..]) {
                    Some(i) => pos + i + CH.len(),
                    None => break,
                }
            };
            let Some((ch, used)) = parse_uint(&p[start..]) else {
                pos = start;
                continue;
            };
            let after = start + used;
            let Some(vi) = self.values.find(&p[after..]) else {
                break;
            };
            let vstart = after + vi + 10;
            let vend = match memchr::memchr(b'}', &p[vstart..]) {
                Some(i) => vstart + i,
                None => break,
            };
            let vals = &p[vstart..vend];
            let mut hint2 = 0;
            if first && want_t1 {
                if let Some(rest) = find_point(vals, br#""1":"#, 0, &self.p1) {
                    if let Some((v, used)) = parse_f64(rest) {
                        t1 = Some(v);
                        hint2 = (vals.len() - rest.len()) + used + 1;
                    }
                }
            } else if vals.starts_with(br#""1":"#) {
                // Skip the "1" value to land on "2" without searching.
                if let Some(c) = memchr::memchr(b',', vals) {
                    hint2 = c + 1;
                }
            }
            first = false;
            let round = find_point(vals, br#""2":"#, hint2, &self.p2)
                .and_then(parse_uint)
                .map(|(v, _)| v);
            f(Update {
                channel: ch as u32,
                round,
            });
            pos = vend;
        }
        t1
    }
}

/// Splits an HTTP response head off `buf`: (status, head length) once `\r\n\r\n` is present.
pub fn parse_http_head(buf: &[u8]) -> Option<(u16, usize)> {
    let end = memchr::memmem::find(buf, b"\r\n\r\n")? + 4;
    let status = buf
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Some((status, end))
}

/// `Content-Length` of a response head (case-insensitive), if present.
pub fn content_length(head: &[u8]) -> Option<usize> {
    for line in head.split(|b| *b == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            let v = std::str::from_utf8(&line[15..]).ok()?.trim();
            return v.parse().ok();
        }
    }
    None
}

/// True when the head says `Connection: close`.
pub fn connection_close(head: &[u8]) -> bool {
    head.split(|b| *b == b'\n').any(|line| {
        line.len() >= 11
            && line[..11].eq_ignore_ascii_case(b"connection:")
            && String::from_utf8_lossy(&line[11..])
                .trim()
                .eq_ignore_ascii_case("close")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(parse_header(&[0x81]), None);
        let h = parse_header(&[0x81, 5]).unwrap();
        assert_eq!(
            (h.opcode, h.header_len, h.payload_len, h.fin),
            (1, 2, 5, true)
        );
        let h = parse_header(&[0x81, 126, 1, 0]).unwrap();
        assert_eq!((h.header_len, h.payload_len), (4, 256));
        assert_eq!(parse_header(&[0x81, 127, 0, 0, 0]), None);
        let h = parse_header(&[0x02, 127, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap();
        assert_eq!(
            (h.opcode, h.fin, h.header_len, h.payload_len),
            (2, false, 10, 65536)
        );
        let h = parse_header(&[0x89, 0x82, 1, 2, 3, 4]).unwrap();
        assert!(h.masked);
        assert_eq!(h.header_len, 6);
    }

    #[test]
    fn masking_round_trips() {
        let mut out = Vec::new();
        write_masked(&mut out, OP_TEXT, b"hello", 0x01020304);
        let h = parse_header(&out).unwrap();
        assert!(h.masked);
        let key = &out[h.header_len - 4..h.header_len];
        let un: Vec<u8> = out[h.header_len..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i & 3])
            .collect();
        assert_eq!(un, b"hello");
        let mut big = Vec::new();
        write_masked(&mut big, OP_TEXT, &[b'x'; 300], 7);
        assert_eq!(parse_header(&big).unwrap().payload_len, 300);
    }

    #[test]
    fn scans_batches_and_updates() {
        let s = Scanner::default();
        let batch = br#"{"type":"data_batch","id":"batch_9","timestamp":"x","data":{"updates":[{"channel_id":1,"data_type":"T","values":{"1":1760000000123.456,"2":17,"3":1.5}},{"channel_id":2,"data_type":"T","values":{"1":1760000000123.456,"2":18,"3":2}}]}}"#;
        assert_eq!(classify(batch), Kind::Data);
        let mut got = Vec::new();
        let t1 = s.scan(batch, true, |u| got.push(u));
        assert_eq!(t1, Some(1760000000123.456));
        assert_eq!(
            got,
            vec![
                Update {
                    channel: 1,
                    round: Some(17)
                },
                Update {
                    channel: 2,
                    round: Some(18)
                }
            ]
        );
        let one = br#"{"type":"data_update","id":"update_3","timestamp":"x","data":{"channel_id":42,"data_type":"T","values":{"2":5,"7":1}}}"#;
        let mut got = Vec::new();
        assert_eq!(s.scan(one, true, |u| got.push(u)), None);
        assert_eq!(
            got,
            vec![Update {
                channel: 42,
                round: Some(5)
            }]
        );
        let nope = br#"{"type":"data_update","data":{"channel_id":3,"data_type":"T","values":{"1":2,"5":1}}}"#;
        let mut got = Vec::new();
        s.scan(nope, false, |u| got.push(u));
        assert_eq!(
            got,
            vec![Update {
                channel: 3,
                round: None
            }]
        );
    }

    #[test]
    fn classify_kinds() {
        assert_eq!(
            classify(br#"{"type":"connected","id":"c"}"#),
            Kind::Connected
        );
        assert_eq!(classify(br#"{"type":"subscribe_ack"}"#), Kind::SubscribeAck);
        assert_eq!(classify(br#"{"type":"error"}"#), Kind::Error);
        assert_eq!(classify(br#"{"type":"pong"}"#), Kind::Other);
    }

    #[test]
    fn http_heads() {
        let r = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi";
        let (st, n) = parse_http_head(r).unwrap();
        assert_eq!(st, 101);
        assert_eq!(&r[n..], b"\x81\x02hi");
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n"),
            Some(12)
        );
        assert!(connection_close(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        ));
        assert!(!connection_close(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n"
        ));
        let up = upgrade_request("127.0.0.1:1", "/ws", 5);
        assert!(String::from_utf8(up)
            .unwrap()
            .contains("Sec-WebSocket-Key: "));
    }
}
