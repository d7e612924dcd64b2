//! Sockets for many client connections: non-blocking connects from a spread of
//! source addresses on 127.0.0.0/8, so one address's ephemeral ports never cap a run.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

/// The source address for connection `index`, spread over `127.0.0.1 ..= 127.0.0.count`.
pub fn source_for(index: usize, count: usize) -> IpAddr {
    let host = 1 + (index % count.max(1)) as u32;
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | host))
}

/// Starts a non-blocking connect to `target` from `source` (any port).
pub fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    connect_with_receive_buffer(target, source, None)
}

/// As [`connect`], with the socket's receive buffer set to `receive_buffer` bytes
/// before the connect, so the window the server sees stays small: a client that
/// never reads then fills the server's queue instead of the kernel's.
pub fn connect_with_receive_buffer(
    target: SocketAddr,
    source: Option<IpAddr>,
    receive_buffer: Option<usize>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let Some(source) = source {
        bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Closes with a reset instead of a FIN, so the client keeps no TIME_WAIT entry: the
/// connect scenario opens tens of thousands of connections a second.
pub fn abort(stream: TcpStream) {
    let socket = Socket::from(std::net::TcpStream::from(stream));
    let _ = socket.set_linger(Some(Duration::ZERO));
}

/// Asks the kernel to pick the source port at `connect` rather than at `bind`, so
/// that ports are shared between destinations (the 4-tuple stays unique) and a
/// bound source address does not run out of ephemeral ports early.
#[allow(unsafe_code)]
fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let enable: libc::c_int = 1;
    // SAFETY: `socket` owns a valid descriptor for the duration of the call; the
    // option value is a live `c_int` whose size is passed alongside it, as
    // setsockopt(2) requires. socket2 has no wrapper for this Linux option.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&enable as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cycle_over_the_loopback_range() {
        assert_eq!(source_for(0, 4), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(source_for(3, 4), "127.0.0.4".parse::<IpAddr>().unwrap());
        assert_eq!(source_for(4, 4), "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_connection_from_a_spread_source_reaches_a_local_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let _stream = connect(target, Some(source_for(2, 8))).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), source_for(2, 8));
    }
}
