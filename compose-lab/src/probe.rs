//! Readiness probes: minimal HTTP/1.1 GETs over TCP inside a lab namespace or over an agent's
//! unix socket, and a bounded wait that notices a daemon dying while we wait for it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::netns;
use crate::procs;

const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// GET `path` from `addr` inside namespace `ns`; returns (status, body).
pub fn http_get_in(ns: &str, addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let path = path.to_string();
    netns::in_netns(ns, move || -> anyhow::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        exchange(&mut s, &path)
    })?
}

/// GET `path` over TLS from `addr` inside namespace `ns`, with `config`'s client certificate;
/// returns (status, body).
pub fn https_get_in(
    ns: &str,
    addr: SocketAddr,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<(u16, String)> {
    let path = path.to_string();
    netns::in_netns(ns, move || -> anyhow::Result<(u16, String)> {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let conn = rustls::ClientConnection::new(config, name)?;
        let mut tls = rustls::StreamOwned::new(conn, s);
        exchange(&mut tls, &path)
    })?
}

/// GET `path` from an agent's API unix socket; returns (status, body).
pub fn http_get_unix(socket: &Path, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    exchange(&mut s, path)
}

fn exchange(s: &mut (impl Read + Write), path: &str) -> anyhow::Result<(u16, String)> {
    // One write: a peer that reads the request once must see all of it.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    );
    s.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP status line")?;
    Ok((status, body.to_string()))
}

/// Waits up to `timeout` for `ready` to return `Ok(true)`. While waiting, `pid` (the daemon
/// being waited for, if any) must stay alive: its death ends the wait early with its log tail.
pub fn wait_ready(
    what: &str,
    timeout: Duration,
    pid_and_log: Option<(u32, &Path)>,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err = String::new();
    loop {
        match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = format!("{e:#}"),
        }
        if let Some((pid, log)) = pid_and_log {
            if !procs::alive(pid) {
                bail!(
                    "{what}: the process exited; last lines of {}:\n{}",
                    log.display(),
                    procs::log_tail(log, 15)
                );
            }
        }
        if Instant::now() >= deadline {
            let tail = pid_and_log
                .map(|(_, log)| {
                    format!(
                        "\nlast lines of {}:\n{}",
                        log.display(),
                        procs::log_tail(log, 15)
                    )
                })
                .unwrap_or_default();
            bail!("{what}: not ready after {timeout:?} ({last_err}){tail}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asks a DNS server inside namespace `ns` for the SOA of `zone` over UDP; true on any answer.
pub fn dns_answers_in(ns: &str, server: SocketAddr, zone: &str) -> anyhow::Result<bool> {
    let query = soa_query(zone);
    netns::in_netns(ns, move || -> anyhow::Result<bool> {
        let sock = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        sock.send_to(&query, server)?;
        let mut buf = [0u8; 1500];
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => Ok(n >= 12 && buf[..2] == query[..2]),
            Err(_) => Ok(false),
        }
    })?
}

fn soa_query(zone: &str) -> Vec<u8> {
    // Header: id 0x5f1a, RD, one question.
    let mut q = vec![0x5f, 0x1a, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in zone
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.push(0);
    q.extend_from_slice(&[0, 6, 0, 1]);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soa_query_encodes_the_zone() {
        let q = soa_query("example.com.");
        assert_eq!(&q[12..], b"\x07example\x03com\x00\x00\x06\x00\x01");
        assert_eq!(&q[4..6], &[0, 1]);
    }

    #[test]
    fn http_exchange_sends_a_get_and_splits_status_and_body() {
        let (mut client, mut server) = UnixStream::pair().expect("pair");
        let peer = std::thread::spawn(move || {
            let mut req = [0u8; 512];
            let mut n = 0;
            while !req[..n].ends_with(b"\r\n\r\n") {
                let got = server.read(&mut req[n..]).expect("read request");
                assert!(got > 0, "request ended early");
                n += got;
            }
            server
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 7\r\n\r\n{\"a\":1}")
                .expect("write response");
            String::from_utf8_lossy(&req[..n]).to_string()
        });
        let (status, body) = exchange(&mut client, "/v1/status").expect("response");
        assert_eq!((status, body.as_str()), (404, "{\"a\":1}"));
        let request = peer.join().expect("peer");
        assert!(
            request.starts_with("GET /v1/status HTTP/1.1\r\n"),
            "{request}"
        );
    }
}
