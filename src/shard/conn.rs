//! One client connection: a thin loop that moves bytes between the socket and the sans-IO
//! HTTP core. Requests are answered in order (pipelining), responses coalesced into one write.

use super::Shared;
use super::{ws_conn, ShardCtx};
use crate::api;
use crate::error::{ApiError, ErrorCode, Upstream};
use crate::fanout::ConnId;
use crate::http::{
    head_end, parse_request, write_response, Limits, Method, Parsed, Request, Response,
};
use crate::ws::handshake::{self, is_ws_path};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts the connection (in total and per source IP) for its whole life.
pub struct Counted {
    ctx: Rc<ShardCtx>,
    ip: IpAddr,
    /// Connections now open (including this one): total, and from this IP.
    total: usize,
    from_ip: usize,
}

impl Counted {
    fn new(ctx: Rc<ShardCtx>, ip: IpAddr) -> Self {
        let total = ctx.shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let from_ip = {
            let mut per_ip = ctx.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_ip.entry(ip).or_insert(0);
            *n += 1;
            *n
        };
        Counted {
            ctx,
            ip,
            total,
            from_ip,
        }
    }

    /// Why this connection must be refused, if it must.
    fn refusal(&self) -> Option<ApiError> {
        let cfg = &self.ctx.shared.config;
        let (what, limit) = if self.total > cfg.max_connections {
            ("in total", cfg.max_connections)
        } else if self.from_ip > cfg.max_connections_per_ip {
            ("from one address", cfg.max_connections_per_ip)
        } else {
            return None;
        };
        Some(ErrorCode::TooManyConnections.context(format!(
            "the gateway accepts at most {limit} connections {what}"
        )))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.ctx.shared.connections.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self
            .ctx
            .shared
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

const READ_CHUNK: usize = 4096;

/// What one request's view is read from, held while its handler runs.
struct Loaded {
    snapshot: arc_swap::Guard<Arc<crate::site::Snapshot>>,
    redis: arc_swap::Guard<Arc<crate::site::DependencyHealth>>,
    alarms: arc_swap::Guard<Arc<crate::alarm::ActiveAlarms>>,
    catalog: arc_swap::Guard<Arc<crate::catalog::Catalog>>,
}

impl Loaded {
    fn now(shared: &Shared) -> Loaded {
        let p = &shared.published;
        Loaded {
            snapshot: p.snapshot.load(),
            redis: p.redis.load(),
            alarms: p.alarms.load(),
            catalog: p.catalog.load(),
        }
    }
}

/// Who a request acts as, settled before its handler runs.
struct Caller {
    principal: crate::auth::Principal,
    auth_error: Option<ApiError>,
    client_ip: IpAddr,
}

impl Caller {
    fn view<'a>(&'a self, shared: &'a Shared, l: &'a Loaded) -> api::View<'a> {
        api::View {
            snapshot: &l.snapshot,
            redis: &l.redis,
            config: &shared.config,
            alarms: &l.alarms,
            catalog: &l.catalog,
            principal: &self.principal,
            auth_error: self.auth_error.as_ref(),
            auth: &shared.auth,
            client_ip: self.client_ip,
            gateway: shared,
        }
    }
}

/// Runs the work a handler asked for (the feed, the verifier or the history querier),
/// waiting at most its deadline.
async fn run_work(
    ctx: &ShardCtx,
    conn: ConnId,
    work: api::Work,
    deadline: Duration,
) -> Result<crate::job::Answer, Upstream> {
    let shared = &ctx.shared;
    match work {
        api::Work::Redis(job) => ctx.ask(conn, deadline, |to| shared.feed.run(job, to)).await,
        api::Work::Verify { password, hash } => {
            ctx.ask(conn, deadline, |to| shared.verifier.ask(password, hash, to))
                .await
        }
        api::Work::History(query) => match &shared.history {
            Some(h) => ctx.ask(conn, deadline, |to| h.ask(query, to)).await,
            None => Err(Upstream::Unavailable),
        },
    }
}

/// Answers one REST request: the route resolved once, who asks settled first (a request
/// that will be refused runs nothing), then the handler's steps — each piece of work it asks
/// for run with its deadline, and the handler going on with a fresh view. Returns the
/// response and the route's metrics label.
async fn respond(
    ctx: &ShardCtx,
    conn: ConnId,
    req: &Request,
    peer: IpAddr,
) -> (Response, &'static str) {
    let shared = &ctx.shared;
    let cfg = &shared.config;
    let started = crate::time::now_millis();
    let resolved = api::resolve(&req.path);
    let label = resolved.label();
    if let Err(e) = api::gate(req, &shared.origins, &cfg.http.allowed_hosts) {
        return (Response::error(&e, started), label);
    }
    let token = crate::auth::Auth::bearer(req.authorization.as_deref());
    let (principal, auth_error) = match shared.auth.authenticate(token, started) {
        Ok(p) => (p, None),
        Err(e) => (crate::auth::Principal::anonymous(None), Some(e)),
    };
    let caller = Caller {
        principal,
        auth_error,
        client_ip: crate::http::origin::client_ip(
            peer,
            req.forwarded_for.as_deref(),
            &cfg.http.trusted_proxies,
        ),
    };
    let revocations = shared.auth.revocations();
    let loaded = Loaded::now(shared);
    let mut step = guarded(req, || {
        api::start(req, &resolved, &caller.view(shared, &loaded), started)
    });
    drop(loaded);
    let response = loop {
        let ask = match step {
            api::Step::Done(r) => break r,
            api::Step::Ask(ask) => ask,
        };
        if !ask.delay.is_zero() {
            monoio::time::sleep(ask.delay).await;
        }
        let deadline = ask.deadline;
        let (work, then) = ask.split();
        let answer = run_work(ctx, conn, work, deadline).await;
        let loaded = Loaded::now(shared);
        let now = crate::time::now_millis();
        step = guarded(req, || {
            then.finish(answer, &caller.view(shared, &loaded), now)
        });
    };
    // This request ended a login (logout, a reused refresh token): every shard's
    // connections acting for it end it now, not at their next sweep.
    if shared.auth.revocations() != revocations {
        for inbox in &shared.inboxes {
            inbox.push(crate::shard::inbox::ShardEvent::LoginsRevoked);
        }
    }
    (response, label)
}

/// A handler that panics answers 500 instead of unwinding through the shard.
fn guarded(req: &Request, f: impl FnOnce() -> api::Step) -> api::Step {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        crate::log::error(&format!("handler for {} panicked; answered 500", req.path));
        api::Step::Done(
            Response::error(
                &ErrorCode::InternalError.context("the request could not be handled"),
                crate::time::now_millis(),
            )
            .closing(),
        )
    })
}

pub async fn serve(mut stream: TcpStream, peer: SocketAddr, ctx: Rc<ShardCtx>) {
    let counted = Counted::new(ctx.clone(), peer.ip());
    let id = ctx.shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let cfg = &ctx.shared.config;
    let now = crate::time::now_millis;
    if let Some(err) = counted.refusal() {
        return answer_and_close(stream, &err).await;
    }
    let limits = Limits {
        max_head_bytes: cfg.http.max_head_bytes,
        max_headers: cfg.http.max_headers,
        max_body_bytes: cfg.http.max_body_bytes,
    };
    let idle = Duration::from_secs(cfg.http.idle_timeout_secs);
    let request_timeout = Duration::from_secs(cfg.http.request_timeout_secs);
    let send_timeout = Duration::from_secs(cfg.http.send_timeout_secs);
    let out_budget = cfg.http.max_pending_output_bytes;
    let mut inbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // How much of the partial request in `inbuf` was already searched for the head's end.
    let mut scanned = 0;
    // When the first byte of the request being received arrived: head and body must be
    // complete within `request_timeout` (slow-loris), however steadily the bytes trickle.
    let mut request_started: Option<Instant> = None;
    loop {
        let mut close = false;
        let mut consumed = 0;
        // Complete requests left unparsed because the output budget is spent.
        let mut more = false;
        while !close {
            if out.len() >= out_budget {
                more = true;
                break;
            }
            let pending = &inbuf[consumed..];
            if pending.is_empty() {
                break;
            }
            // Parse only once the head is complete (or over its limit, for the 431): a head
            // arriving a byte at a time is scanned once instead of re-parsed per read.
            if head_end(pending, &mut scanned).is_none() && pending.len() <= limits.max_head_bytes {
                break;
            }
            match parse_request(pending, &limits) {
                Parsed::Complete(req, n) => {
                    consumed += n;
                    scanned = 0;
                    let echo = cfg.ws.conformance_echo && req.path == "/autobahn";
                    let cors = ctx
                        .shared
                        .origins
                        .cors(req.origin.as_deref(), req.host.as_deref());
                    let cors = cors.as_deref();
                    if is_ws_path(&req.path) || echo {
                        let admitted = handshake::check(&req)
                            .and_then(|up| admit_upgrade(&ctx, &req, up, echo));
                        match admitted {
                            Ok((up, principal)) => {
                                out.extend_from_slice(&handshake::response(&up.accept_key));
                                let written =
                                    monoio::time::timeout(send_timeout, stream.write_all(out))
                                        .await;
                                if let Ok((Ok(_), _)) = written {
                                    // The WebSocket runs as its own (smaller) task: this HTTP
                                    // task and its buffers are freed, not held for the socket's
                                    // lifetime. Only the bytes after the handshake move on.
                                    let leftover = inbuf[consumed..].to_vec();
                                    monoio::spawn(ws_conn::serve(
                                        stream,
                                        id,
                                        leftover,
                                        ws_conn::Opened {
                                            up,
                                            principal,
                                            echo,
                                            source: crate::http::origin::client_ip(
                                                peer.ip(),
                                                req.forwarded_for.as_deref(),
                                                &cfg.http.trusted_proxies,
                                            ),
                                        },
                                        ctx.clone(),
                                        counted,
                                    ));
                                }
                                return;
                            }
                            Err(e) => {
                                let resp = Response::error(&e, now());
                                write_response(&mut out, &resp, false, false, cors);
                                close = true;
                                continue;
                            }
                        }
                    }
                    let started = Instant::now();
                    let (resp, label) = respond(&ctx, id, &req, peer.ip()).await;
                    if let Some(stats) = ctx.shared.http_stats.get(ctx.index) {
                        stats.lock().unwrap_or_else(|e| e.into_inner()).record(
                            label,
                            resp.status,
                            started.elapsed().as_secs_f64(),
                        );
                    }
                    let keep = req.keep_alive && !resp.close && !ctx.shutdown.is_triggered();
                    write_response(&mut out, &resp, keep, req.method == Method::Head, cors);
                    close = !keep;
                }
                Parsed::Partial => break,
                Parsed::Error(e) => {
                    write_response(&mut out, &Response::error(&e, now()), false, false, None);
                    close = true;
                }
            }
        }
        inbuf.drain(..consumed);
        if inbuf.is_empty() {
            request_started = None;
        } else {
            request_started.get_or_insert_with(Instant::now);
        }
        if !out.is_empty() {
            // A client that does not read its answers is closed after `send_timeout` rather
            // than holding them (and its pipelined requests) for ever.
            ctx.in_flight.set(ctx.in_flight.get() + 1);
            let written = monoio::time::timeout(send_timeout, stream.write_all(out)).await;
            ctx.in_flight.set(ctx.in_flight.get() - 1);
            match written {
                Ok((Ok(_), buf)) => {
                    out = buf;
                    out.clear();
                }
                _ => return,
            }
        }
        if close {
            linger_close(stream).await;
            return;
        }
        if more {
            continue;
        }
        if inbuf.is_empty() && inbuf.capacity() > 4 * READ_CHUNK {
            // A large request grew the buffer; an idle keep-alive connection gives it back.
            inbuf = Vec::with_capacity(READ_CHUNK);
        }
        if inbuf.capacity() - inbuf.len() < READ_CHUNK / 2 {
            inbuf.reserve(READ_CHUNK);
        }
        let wait = match request_started {
            Some(t) => match request_timeout.checked_sub(t.elapsed()) {
                Some(rest) => rest.min(idle),
                None => return request_timed_out(stream).await,
            },
            None => idle,
        };
        let len = inbuf.len();
        match monoio::time::timeout(wait, stream.read(inbuf.slice_mut(len..))).await {
            Ok((Ok(n), buf)) if n > 0 => inbuf = buf.into_inner(),
            Ok(_) => return, // closed by the peer or failed
            Err(_) if request_started.is_some() => {
                return request_timed_out(stream).await;
            }
            Err(_) => return, // idle keep-alive connection
        }
    }
}

/// Whether an upgrade may open a WebSocket, and as whom: the Host and Origin checks, the
/// token (`?token=` or `Authorization`), at least the viewer role, and a `client_id` that is
/// free or held by the same user.
fn admit_upgrade(
    ctx: &ShardCtx,
    req: &Request,
    up: handshake::Upgrade,
    echo: bool,
) -> Result<(handshake::Upgrade, crate::auth::Principal), ApiError> {
    let shared = &ctx.shared;
    let now = crate::time::now_millis();
    if echo {
        return Ok((up, crate::auth::Principal::anonymous(None)));
    }
    api::gate(req, &shared.origins, &shared.config.http.allowed_hosts)?;
    let token = up
        .token
        .as_deref()
        .or_else(|| crate::auth::Auth::bearer(req.authorization.as_deref()));
    let principal = shared.auth.authenticate(token, now)?;
    principal.require(crate::auth::Role::Viewer)?;
    if let Some(id) = &up.client_id {
        if !shared.registry.may_claim(id, principal.user.as_deref()) {
            return Err(ErrorCode::Forbidden.context(format!(
                    "client_id '{id}' is held by another user's connection; takeover is only for the same user"
                )));
        }
    }
    Ok((up, principal))
}

/// 408 for a request whose head or body did not arrive within `request_timeout_secs`.
async fn request_timed_out(stream: TcpStream) {
    let err = ErrorCode::RequestTimeout
        .context("the request's head and body must arrive within the request timeout");
    answer_and_close(stream, &err).await;
}

/// Sends `err` as the last response (a second at most: the client may not read) and closes.
async fn answer_and_close(mut stream: TcpStream, err: &ApiError) {
    let mut out = Vec::new();
    let resp = Response::error(err, crate::time::now_millis());
    write_response(&mut out, &resp, false, false, None);
    let _ = monoio::time::timeout(Duration::from_secs(1), stream.write_all(out)).await;
    linger_close(stream).await;
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
