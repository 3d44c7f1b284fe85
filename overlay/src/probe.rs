//! Connection probes for diagnosis: a TCP connect, a UDP datagram or an ICMP echo, run with
//! blocking sockets on a thread inside a container's network namespace (a socket keeps the
//! namespace it was created in).

use std::io::{self, ErrorKind};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::api::{ProbeKind, ProbeRequest, ProbeResult, MAX_PROBE_MS};
use crate::netns::{self, NetnsError};

/// Runs `req` inside the namespace at `netns` and reports what happened.
pub async fn probe_in(netns: &Path, req: ProbeRequest) -> Result<ProbeResult, NetnsError> {
    netns::run_in_async(netns, move || probe(&req)).await
}

/// Runs `req` in the caller's namespace (blocking for at most its timeout).
pub fn probe(req: &ProbeRequest) -> ProbeResult {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, MAX_PROBE_MS));
    let start = Instant::now();
    let mut answers = Vec::new();
    let (ok, detail) = match req.kind {
        ProbeKind::Tcp => tcp(SocketAddr::new(req.target, req.port), timeout),
        ProbeKind::Udp => udp(SocketAddr::new(req.target, req.port), timeout),
        ProbeKind::Icmp => icmp(req.target, timeout),
        ProbeKind::Dns => {
            let to = SocketAddr::new(req.target, if req.port == 0 { 53 } else { req.port });
            dns(
                to,
                req.name.as_deref().unwrap_or_default(),
                timeout,
                &mut answers,
            )
        }
    };
    ProbeResult {
        ok,
        detail,
        micros: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        answers,
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("no answer within {} ms", timeout.as_millis())
}

/// What an I/O error on a probe means, in words.
fn failure(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => timed_out(timeout),
        ErrorKind::ConnectionRefused => "refused: nothing listens on that port".into(),
        _ => e.to_string(),
    }
}

fn tcp(to: SocketAddr, timeout: Duration) -> (bool, String) {
    match TcpStream::connect_timeout(&to, timeout) {
        Ok(_) => (true, "connected".into()),
        Err(e) => (false, failure(&e, timeout)),
    }
}

fn udp(to: SocketAddr, timeout: Duration) -> (bool, String) {
    let run = || -> io::Result<usize> {
        let any: SocketAddr = match to {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let s = UdpSocket::bind(any)?;
        s.connect(to)?;
        s.set_read_timeout(Some(timeout))?;
        s.send(b"shibafu diagnose probe")?;
        let mut buf = [0u8; 512];
        s.recv(&mut buf)
    };
    match run() {
        Ok(_) => (true, "answered".into()),
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => (
            true,
            format!(
                "sent; {} (UDP cannot tell a silent service from a dropped datagram)",
                timed_out(timeout)
            ),
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => (
            false,
            "port unreachable: nothing listens on that port".into(),
        ),
        Err(e) => (false, failure(&e, timeout)),
    }
}

/// An A (or, to an IPv6 server, AAAA) query for `name` to `to`; the addresses go to `answers`.
fn dns(to: SocketAddr, name: &str, timeout: Duration, answers: &mut Vec<IpAddr>) -> (bool, String) {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};
    let Ok(qname) = Name::from_ascii(name) else {
        return (false, format!("{name:?} is not a DNS name"));
    };
    let ty = if to.is_ipv6() {
        RecordType::AAAA
    } else {
        RecordType::A
    };
    let mut m = Message::query();
    m.metadata.id = (std::process::id() & 0xffff) as u16;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(qname, ty));
    let Ok(packet) = m.to_vec() else {
        return (false, format!("cannot encode a query for {name}"));
    };
    let run = || -> io::Result<Vec<u8>> {
        let any: SocketAddr = match to {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let s = UdpSocket::bind(any)?;
        s.connect(to)?;
        s.set_read_timeout(Some(timeout))?;
        s.send(&packet)?;
        let mut buf = vec![0u8; 4096];
        let n = s.recv(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    };
    let reply = match run() {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            return (false, format!("no DNS server answers on {to}"))
        }
        Err(e) => return (false, format!("DNS server {to}: {}", failure(&e, timeout))),
    };
    let Ok(r) = Message::from_vec(&reply) else {
        return (false, format!("DNS server {to} sent an unreadable answer"));
    };
    for rec in &r.answers {
        match &rec.data {
            RData::A(a) => answers.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => answers.push(IpAddr::V6(a.0)),
            _ => {}
        }
    }
    match r.metadata.response_code {
        ResponseCode::NoError if !answers.is_empty() => {
            let list: Vec<String> = answers.iter().map(ToString::to_string).collect();
            (true, list.join(", "))
        }
        ResponseCode::NoError => (false, format!("{name} has no {ty} record (NODATA)")),
        ResponseCode::NXDomain => (false, format!("{name} does not exist (NXDOMAIN)")),
        code => (false, format!("DNS server {to} answered {code}")),
    }
}

/// Echo id of this process's probes.
fn echo_id() -> u16 {
    (std::process::id() & 0xffff) as u16
}

/// An ICMP (v4) or ICMPv6 echo request; the kernel fills in the ICMPv6 checksum.
pub fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let kind = if v6 { 128 } else { 8 };
    let mut pkt = vec![kind, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"shibafu-diagnose");
    if !v6 {
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    pkt
}

/// The internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Is `pkt` (ICMP header first) the echo reply to `id`?
pub fn is_echo_reply(v6: bool, pkt: &[u8], id: u16) -> bool {
    let reply = if v6 { 129 } else { 0 };
    pkt.len() >= 8 && pkt[0] == reply && u16::from_be_bytes([pkt[4], pkt[5]]) == id
}

fn icmp(to: IpAddr, timeout: Duration) -> (bool, String) {
    let v6 = to.is_ipv6();
    let run = || -> io::Result<bool> {
        let (domain, proto) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let s = Socket::new(domain, Type::RAW, Some(proto))?;
        let id = echo_id();
        s.send_to(&echo_request(v6, id, 1), &SocketAddr::new(to, 0).into())?;
        let deadline = Instant::now() + timeout;
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            s.set_read_timeout(Some(left))?;
            let (n, from) = match s.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            };
            // SAFETY: recv_from initialised the first n bytes.
            let data: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            // IPv4 raw sockets hand over the IP header too.
            let icmp = if v6 {
                &data[..]
            } else {
                let ihl = usize::from(data.first().map_or(0, |b| b & 0x0f)) * 4;
                data.get(ihl..).unwrap_or(&[])
            };
            if from.as_socket().map(|a| a.ip()) == Some(to) && is_echo_reply(v6, icmp, id) {
                return Ok(true);
            }
        }
    };
    match run() {
        Ok(true) => (true, "echo reply".into()),
        Ok(false) => (false, timed_out(timeout)),
        Err(e) => (false, failure(&e, timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum_and_replies_match_by_id() {
        let req = echo_request(false, 0x1234, 1);
        assert_eq!(&req[..2], &[8, 0]);
        assert_eq!(checksum(&req), 0, "a packet with its checksum sums to zero");
        let mut reply = req.clone();
        reply[0] = 0;
        assert!(is_echo_reply(false, &reply, 0x1234));
        assert!(!is_echo_reply(false, &reply, 0x4321));
        assert!(!is_echo_reply(false, &req, 0x1234), "a request is no reply");
        let v6 = echo_request(true, 7, 1);
        assert_eq!(&v6[..4], &[128, 0, 0, 0]);
        let mut reply6 = v6.clone();
        reply6[0] = 129;
        assert!(is_echo_reply(true, &reply6, 7));
    }

    #[test]
    fn loopback_probes_tell_refused_from_connected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let req = |kind, port| ProbeRequest {
            kind,
            target: "127.0.0.1".parse().expect("ip"),
            port,
            timeout_ms: 500,
            name: None,
        };
        let open = probe(&req(ProbeKind::Tcp, port));
        assert!(open.ok, "{open:?}");
        assert_eq!(open.detail, "connected");
        drop(listener);
        let closed = probe(&req(ProbeKind::Tcp, port));
        assert!(!closed.ok);
        assert!(closed.detail.starts_with("refused"), "{closed:?}");
        let udp_closed = probe(&req(ProbeKind::Udp, port));
        assert!(!udp_closed.ok, "{udp_closed:?}");
        assert!(udp_closed.detail.starts_with("port unreachable"));
    }
}
