//! One SO_REUSEPORT listening socket per shard, so the kernel spreads connections across
//! shards without a shared accept queue.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

fn reuseport_socket(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Binds `n` listeners on `addr`. A port held by another process is an error, not a silent
/// share: SO_REUSEPORT would otherwise hand part of the traffic to a stale server. Port 0
/// picks a free port once and binds every shard to it.
pub fn bind(addr: SocketAddr, n: usize, backlog: i32) -> io::Result<Vec<TcpListener>> {
    let mut addr = addr;
    if addr.port() != 0 {
        // A plain bind (no SO_REUSEPORT) fails if anyone is listening on the port.
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into()).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{addr} is already in use by another process; stop it or choose another --listen address"),
                )
            } else {
                io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"))
            }
        })?;
        probe.listen(1)?;
        drop(probe);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_shares_one_port() {
        let ls = bind("127.0.0.1:0".parse().unwrap(), 3, 16).unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert!(ls.iter().all(|l| l.local_addr().unwrap().port() == port));
    }

    #[test]
    fn taken_port_is_an_error() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let err = bind(addr, 2, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("already in use"));
    }
}
