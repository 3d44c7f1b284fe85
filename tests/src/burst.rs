//! A burst of DNS queries from one socket, all sent before any answer is read, as a resolver
//! asking for many names at once does: the tool of the segmented-send test
//! (`shibafu-probe burst`).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// One answer as read from its datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The message ID (the query's).
    pub id: u16,
    /// The response code.
    pub rcode: u8,
    /// Records in the answer section.
    pub answers: u16,
    /// The first answer record's address, when it is an A record.
    pub first_a: Option<Ipv4Addr>,
}

/// A recursion-desired query for `name`'s A records, without EDNS.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + name.len() + 6);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p
}

/// The position after the name at `at` (labels, ending at a zero or a pointer).
fn skip_name(p: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *p.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// Reads a response's ID, code, answer count and first A record; None if it is not one.
pub fn parse(p: &[u8]) -> Option<Answer> {
    let word = |at: usize| Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]));
    if p.get(2)? & 0x80 == 0 {
        return None;
    }
    let (qd, an) = (word(4)?, word(6)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(p, at)? + 4;
    }
    let mut first_a = None;
    if an > 0 {
        at = skip_name(p, at)?;
        let (rtype, rdlen) = (word(at)?, word(at + 8)?);
        let data = p.get(at + 10..at + 10 + usize::from(rdlen))?;
        if rtype == 1 && data.len() == 4 {
            first_a = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
    }
    Some(Answer {
        id: word(0)?,
        rcode: p[3] & 0x0f,
        answers: an,
        first_a,
    })
}

/// Sends `count` queries (IDs 0.., names taken in turn) to `to` from one socket, then reads
/// answers until `count` came or `timeout` passed; one [`Answer`] per datagram read (a
/// datagram that is no response is an error).
pub fn run(
    to: SocketAddr,
    names: &[String],
    count: u16,
    timeout: Duration,
) -> io::Result<Vec<Answer>> {
    let bind: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind)?;
    for id in 0..count {
        let name = &names[usize::from(id) % names.len().max(1)];
        s.send_to(&query(id, name), to)?;
    }
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while out.len() < usize::from(count) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left))?;
        match s.recv(&mut buf) {
            Ok(n) => out.push(parse(&buf[..n]).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a datagram that is no response")
            })?),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_to_a_query_is_read_back() {
        let mut p = query(7, "web.test.local.");
        p[2] |= 0x84;
        p[7] = 1;
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 1, 1, 1]);
        let a = parse(&p).expect("a response");
        assert_eq!(
            a,
            Answer {
                id: 7,
                rcode: 0,
                answers: 1,
                first_a: Some(Ipv4Addr::new(10, 1, 1, 1))
            }
        );
        assert_eq!(
            parse(&query(7, "web.test.local")),
            None,
            "a query is no response"
        );
        assert_eq!(parse(&p[..20]), None, "a cut response is not read");
    }
}
