//! One SO_REUSEPORT listening socket per shard, so the kernel spreads connections across
//! shards without a shared accept queue.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

fn reuseport_socket(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// How long a start-up waits for its port to free before calling it taken: after a SIGKILL
/// (or a moment after a clean exit) io_uring keeps the old process's listener alive for a
/// while, and a supervisor's immediate restart must still come back.
pub const PORT_FREE_WAIT: Duration = Duration::from_secs(5);

/// Binds `n` listeners on `addr`. A port held by another process is an error, not a silent
/// share: SO_REUSEPORT would otherwise hand part of the traffic to a stale server. A port
/// still held after `wait` is taken. Port 0 picks a free port once and binds every shard to
/// it.
pub fn bind(
    addr: SocketAddr,
    n: usize,
    backlog: i32,
    wait: Duration,
) -> io::Result<Vec<TcpListener>> {
    let mut addr = addr;
    if addr.port() != 0 {
        probe_until_free(addr, wait)?;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let l = reuseport_socket(addr, backlog)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// A plain bind (no SO_REUSEPORT) fails while anyone listens on the port; retried every
/// 50 ms until `wait` is over.
fn probe_until_free(addr: SocketAddr, wait: Duration) -> io::Result<()> {
    let started = Instant::now();
    let mut said = false;
    loop {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        match probe.bind(&addr.into()) {
            Ok(()) => {
                probe.listen(1)?;
                if said {
                    crate::log::info(&format!(
                        "{addr} is free after {} ms",
                        started.elapsed().as_millis()
                    ));
                }
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && started.elapsed() < wait => {
                if !std::mem::replace(&mut said, true) {
                    crate::log::info(&format!(
                        "{addr} is still in use (a previous gateway's listener closing?); waiting up to {} s for it to free",
                        wait.as_secs_f32()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{addr} is already in use by another process (still after {} s); stop it or choose another --listen address",
                        wait.as_secs_f32()
                    ),
                ))
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_shares_one_port() {
        let ls = bind("127.0.0.1:0".parse().unwrap(), 3, 16, Duration::ZERO).unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert!(ls.iter().all(|l| l.local_addr().unwrap().port() == port));
    }

    #[test]
    fn taken_port_is_an_error() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let started = Instant::now();
        let err = bind(addr, 2, 16, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("already in use"));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn a_port_freed_while_waiting_is_taken() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(other);
        });
        let ls = bind(addr, 2, 16, Duration::from_secs(5)).unwrap();
        closer.join().unwrap();
        assert_eq!(ls[0].local_addr().unwrap(), addr);
    }
}
