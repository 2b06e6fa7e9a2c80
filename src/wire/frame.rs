//! Server-to-client frame headers. Data frames are built here, not by tungstenite, so one
//! pre-serialized frame can be shared by refcount across thousands of connections.

/// Writes the header of an unmasked, final frame with `opcode` and `len` payload bytes into
/// `buf`; returns the part of `buf` it used.
pub fn header(buf: &mut [u8; MAX_HEADER], opcode: u8, len: usize) -> &[u8] {
    buf[0] = 0x80 | opcode;
    if len < 126 {
        buf[1] = len as u8;
        &buf[..2]
    } else if len <= u16::MAX as usize {
        buf[1] = 126;
        buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        &buf[..4]
    } else {
        buf[1] = 127;
        buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        &buf[..10]
    }
}

/// Appends the header of an unmasked, final frame with `opcode` and `len` payload bytes.
pub fn write_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.extend_from_slice(header(&mut [0; MAX_HEADER], opcode, len));
}

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;

/// A complete text frame holding `payload`.
pub fn text(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    write_header(&mut out, OP_TEXT, payload.len());
    out.extend_from_slice(payload);
    out
}

/// Largest header `write_header` emits.
pub const MAX_HEADER: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths() {
        assert_eq!(text(b"hi"), [0x81, 2, b'h', b'i']);
        let f = text(&[b'a'; 200]);
        assert_eq!(&f[..4], &[0x81, 126, 0, 200]);
        let f = text(&vec![b'a'; 70_000]);
        assert_eq!(&f[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
    }
}
