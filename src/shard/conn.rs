//! One client connection: a thin loop that moves bytes between the socket and the sans-IO
//! HTTP core. Requests are answered in order (pipelining), responses coalesced into one write.

use super::ShardCtx;
use crate::api;
use crate::http::{parse_request, write_response, Limits, Method, Parsed, Response};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Counts the connection in `Shared::connections` for its whole life.
struct Counted<'a>(&'a ShardCtx);

impl<'a> Counted<'a> {
    fn new(ctx: &'a ShardCtx) -> Self {
        ctx.shared.connections.fetch_add(1, Ordering::Relaxed);
        Counted(ctx)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

const READ_CHUNK: usize = 4096;

pub async fn serve(mut stream: TcpStream, _peer: SocketAddr, ctx: Rc<ShardCtx>) {
    let _counted = Counted::new(&ctx);
    let _ = stream.set_nodelay(true);
    let cfg = &ctx.shared.config;
    let limits = Limits {
        max_head_bytes: cfg.http.max_head_bytes,
        max_headers: cfg.http.max_headers,
        max_body_bytes: cfg.http.max_body_bytes,
    };
    let idle = Duration::from_secs(cfg.http.idle_timeout_secs);
    let cors = cfg.http.cors_origin.as_str();
    let mut inbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        let mut close = false;
        let mut consumed = 0;
        while !close {
            match parse_request(&inbuf[consumed..], &limits) {
                Parsed::Complete(req, n) => {
                    consumed += n;
                    let resp = api::handle(&req, &ctx.shared);
                    let keep = req.keep_alive && !resp.close && !ctx.shutdown.is_triggered();
                    write_response(&mut out, &resp, keep, req.method == Method::Head, cors);
                    close = !keep;
                }
                Parsed::Partial => break,
                Parsed::Error(e) => {
                    write_response(&mut out, &Response::error(&e), false, false, cors);
                    close = true;
                }
            }
        }
        inbuf.drain(..consumed);
        if !out.is_empty() {
            ctx.in_flight.set(ctx.in_flight.get() + 1);
            let (res, buf) = stream.write_all(out).await;
            ctx.in_flight.set(ctx.in_flight.get() - 1);
            out = buf;
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if close {
            linger_close(stream).await;
            return;
        }
        if inbuf.capacity() - inbuf.len() < READ_CHUNK / 2 {
            inbuf.reserve(READ_CHUNK);
        }
        let len = inbuf.len();
        match monoio::time::timeout(idle, stream.read(inbuf.slice_mut(len..))).await {
            Ok((Ok(n), buf)) if n > 0 => inbuf = buf.into_inner(),
            _ => return, // closed by the peer, failed, or idle too long
        }
    }
}

/// Half-closes and discards what the client still sends for a moment before closing: closing
/// with unread input makes the kernel send RST, which can destroy the error response the
/// client has not read yet (e.g. a 413 sent before the oversized body arrived).
async fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut discarded = 0usize;
    while discarded < 1 << 20 {
        match monoio::time::timeout(Duration::from_millis(500), stream.read(buf)).await {
            Ok((Ok(n), b)) if n > 0 => {
                discarded += n;
                buf = b;
            }
            _ => return,
        }
    }
}
