//! TCP and HTTP probes, made from inside the instance's own network namespace: a namespace
//! thread creates the socket there and starts the connect to the instance's address, and the
//! runtime finishes the exchange (a socket keeps the namespace it was made in).
//!
//! From inside, the connection goes over the namespace's loopback: the host needs no neighbour
//! entry per instance (the kernel's neighbour table is shared by every namespace and holds 1024
//! entries by default, fewer than a thousand instances and their replies need), no conntrack
//! entry per check, and no firewall pass. What it leaves out, the path across the bridge, is
//! the dataplane's to keep. Sockets close with a reset rather than FIN: nothing left in
//! TIME_WAIT per check (as HAProxy's checks do).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::{self, MAX_STATUS_LINE};
use super::netns_pool::NetnsPool;
use super::probe::Verdict;

/// A connection started on a namespace thread.
#[derive(Debug)]
pub enum Begun {
    /// Established already: over loopback the handshake is over by the time connect(2)
    /// returns, so most checks end here, without the runtime's poller.
    Connected(Socket),
    /// Still connecting (the listener's queue is full, say); the runtime waits for it.
    Pending(Socket),
}

/// Starts a TCP connection to `addr` from the calling thread's namespace; a refusal seen at
/// once is an error.
pub fn begin(addr: SocketAddr) -> io::Result<Begun> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_linger(Some(Duration::ZERO))?;
    match socket.connect(&addr.into()) {
        Ok(()) => return Ok(Begun::Connected(socket)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    if socket.peer_addr().is_ok() {
        return Ok(Begun::Connected(socket));
    }
    match socket.take_error()? {
        Some(e) => Err(e),
        None => Ok(Begun::Pending(socket)),
    }
}

/// The connection as a runtime stream, once established.
async fn established(begun: Begun) -> io::Result<TcpStream> {
    let (socket, pending) = match begun {
        Begun::Connected(s) => (s, false),
        Begun::Pending(s) => (s, true),
    };
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    if pending {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    Ok(stream)
}

/// Starts a connection to `addr` inside `netns` on one of `pool`'s threads.
async fn begin_in(pool: &NetnsPool, netns: &Path, addr: SocketAddr) -> io::Result<Begun> {
    pool.run(netns, move || begin(addr))
        .await
        .map_err(io::Error::other)?
}

/// A TCP check: passes when the connection to `addr` inside `netns` is accepted.
pub async fn tcp(pool: &NetnsPool, netns: &Path, addr: SocketAddr) -> Verdict {
    let done = match begin_in(pool, netns, addr).await {
        Ok(Begun::Connected(_)) => Ok(()),
        Ok(pending) => established(pending).await.map(drop),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => Verdict::pass(""),
        Err(e) => Verdict::fail(format!("connect {addr}: {e}")),
    }
}

/// An HTTP check: one GET of `path` to `addr` inside `netns`; passes on a 2xx or 3xx status
/// line, which is its output.
pub async fn http(pool: &NetnsPool, netns: &Path, addr: SocketAddr, path: &str) -> Verdict {
    let url = format!("http://{addr}{path}");
    let stream = match begin_in(pool, netns, addr).await {
        Ok(begun) => established(begun).await,
        Err(e) => Err(e),
    };
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => return Verdict::fail(format!("GET {url}: {e}")),
    };
    if let Err(e) = stream.write_all(&http::request(addr, path)).await {
        return Verdict::fail(format!("GET {url}: {e}"));
    }
    let mut buf = vec![0u8; MAX_STATUS_LINE];
    let mut len = 0;
    loop {
        match stream.read(&mut buf[len..]).await {
            Ok(0) => return Verdict::fail(format!("GET {url}: closed before a status line")),
            Ok(n) => len += n,
            Err(e) => return Verdict::fail(format!("GET {url}: {e}")),
        }
        match http::status(&buf[..len]) {
            Ok(None) => continue,
            Ok(Some((code, line))) if http::is_healthy(code) => return Verdict::pass(line),
            Ok(Some((_, line))) => return Verdict::fail(line),
            Err(e) => return Verdict::fail(format!("GET {url}: {e}")),
        }
    }
}
