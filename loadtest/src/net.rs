//! Loopback-only address checks, source-address spreading, non-blocking connect into monoio,
//! the fd limit, and one monoio runtime per thread (io_uring, falling back to epoll).

use monoio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Resolves `addr` and refuses anything that is not 127.0.0.0/8 (`localhost` is accepted).
pub fn loopback_addr(addr: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| matches!(a.ip(), IpAddr::V4(v4) if v4.is_loopback()))
        .copied()
        .ok_or_else(|| {
            format!("{addr}: only loopback targets (127.0.0.0/8, localhost) are allowed")
        })
}

/// Checks a `redis://host:port[/db]` URL points at loopback (or a unix socket).
pub fn loopback_redis(url: &str) -> Result<(), String> {
    if url.starts_with("unix:") || url.starts_with("redis+unix:") {
        return Ok(());
    }
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("{url}: expected redis://host:port"))?;
    let hostport = rest.split('/').next().unwrap_or("");
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let with_port = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    };
    loopback_addr(&with_port).map(|_| ())
}

/// The source address for client `i` of `k` sources starting at 127.0.0.`first`.
pub fn source_for(i: usize, k: usize, first: u8) -> Option<Ipv4Addr> {
    if k == 0 {
        return None;
    }
    let n = first as usize + (i % k);
    Some(Ipv4Addr::new(
        127,
        0,
        (n / 256).min(255) as u8,
        (n % 256) as u8,
    ))
}

/// Raises the soft fd limit to the hard one and returns it (the gateway's own start-up step).
pub use voltage_gateway::server::raise_fd_limit;

/// Fails with a clear message when `sockets` (plus ~50 spare) would not fit the fd limit.
pub fn check_fd_budget(sockets: usize, what: &str) -> Result<(), String> {
    let limit = raise_fd_limit();
    if sockets as u64 + 50 > limit {
        return Err(format!(
            "{what} needs {sockets} sockets but this process may open only {limit} files \
             (ulimit -n, which cannot be raised here; keep ~50 spare): use fewer clients, or \
             run several client processes with disjoint --source-first ranges"
        ));
    }
    Ok(())
}

thread_local! {
    static URING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn so_error(fd: i32) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: err/len are valid for getsockopt's output.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

/// Connects to `addr` from `src` (port chosen at connect time, so many sources can share
/// the ephemeral port range), within `timeout`.
pub async fn connect(
    addr: SocketAddr,
    src: Option<Ipv4Addr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = src {
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option value.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let fd = sock.as_raw_fd();
    let std_stream: std::net::TcpStream = sock.into();
    let stream = TcpStream::from_std(std_stream)?;
    match monoio::time::timeout(timeout, stream.writable(false)).await {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
    so_error(fd)?;
    if URING.with(|u| u.get()) {
        // io_uring ops on O_NONBLOCK sockets may complete with EAGAIN instead of waiting;
        // monoio's own uring sockets are blocking.
        set_blocking(fd, true);
    }
    Ok(stream)
}

pub fn set_blocking(fd: i32, blocking: bool) {
    // SAFETY: fcntl on a valid fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            let nfl = if blocking {
                fl & !libc::O_NONBLOCK
            } else {
                fl | libc::O_NONBLOCK
            };
            libc::fcntl(fd, libc::F_SETFL, nfl);
        }
    }
}

/// True when this thread's runtime is io_uring.
pub fn is_uring() -> bool {
    URING.with(|u| u.get())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    Auto,
    Uring,
    Legacy,
}

/// Runs `f()` to completion on a monoio runtime for this thread; returns its output and the
/// driver that ran it.
pub fn block_on<F, Fut, R>(driver: Driver, f: F) -> Result<(R, &'static str), String>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = R>,
{
    if driver != Driver::Legacy {
        // DEFER_TASKRUN: completions are processed only when this thread asks for them — no
        // task-work interrupts (measured ~20% less client CPU per frame here, kernel >= 6.1).
        // Plain io_uring when the kernel refuses the flags.
        let build = voltage_gateway::shard::uring_runtime;
        match build(true).or_else(|_| build(false)) {
            Ok(mut rt) => {
                URING.with(|u| u.set(true));
                return Ok((rt.block_on(f()), "io_uring"));
            }
            Err(e) if driver == Driver::Uring => return Err(format!("io_uring: {e}")),
            Err(_) => {}
        }
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("epoll runtime: {e}"))?;
    URING.with(|u| u.set(false));
    Ok((rt.block_on(f()), "epoll"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(loopback_addr("127.0.0.1:80").is_ok());
        assert!(loopback_addr("127.9.8.7:80").is_ok());
        assert!(loopback_addr("localhost:80").is_ok());
        assert!(loopback_addr("10.0.0.1:80").is_err());
        assert!(loopback_addr("0.0.0.0:80").is_err());
        assert!(loopback_redis("redis://127.0.0.1:6379").is_ok());
        assert!(loopback_redis("redis://localhost/0").is_ok());
        assert!(loopback_redis("redis://10.1.1.1:6379").is_err());
        assert!(loopback_redis("redis://:pw@127.0.0.1:7000/1").is_ok());
    }

    #[test]
    fn sources() {
        assert_eq!(source_for(0, 2, 2), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(1, 2, 2), Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(source_for(2, 2, 2), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(0, 1, 255), Some(Ipv4Addr::new(127, 0, 0, 255)));
        assert_eq!(source_for(1, 2, 255), Some(Ipv4Addr::new(127, 0, 1, 0)));
    }
}
