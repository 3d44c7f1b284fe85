//! One question to one upstream: UDP from a fresh socket (kernel-randomised source port) with a
//! random id, answers checked against id and question (spoofing resistance), then TCP when the
//! UDP answer is truncated. Every failure is an error value, never a panic.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::answer::response_edns;

/// Largest UDP answer read; we advertise 1232 bytes upstream, so this leaves ample room.
const UDP_BUFFER: usize = 4096;

/// Why one try of one upstream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No acceptable answer within the per-try timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A socket operation failed (e.g. connection refused: nothing listens there).
    #[error("{0}")]
    Io(String),
    /// The answer could not be parsed, or a TCP answer did not match the query.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The upstream answered with an error code (SERVFAIL, REFUSED, ...).
    #[error("answered {0}")]
    Rcode(ResponseCode),
}

impl From<io::Error> for UpstreamError {
    fn from(e: io::Error) -> Self {
        UpstreamError::Io(e.to_string())
    }
}

/// An accepted answer.
#[derive(Debug)]
pub struct Exchange {
    /// The upstream's response (NOERROR or NXDOMAIN).
    pub response: Message,
    /// True when UDP was truncated and the answer came over TCP.
    pub via_tcp: bool,
}

/// What to make of one received packet.
enum Verdict {
    Accept(Message),
    /// Not an answer to our query (wrong id or question): keep waiting.
    Ignore(&'static str),
    Reject(UpstreamError),
}

/// Asks `upstream` for `question`, each transport bounded by `timeout`.
pub async fn exchange(
    upstream: SocketAddr,
    question: &Query,
    dnssec_ok: bool,
    timeout: Duration,
) -> Result<Exchange, UpstreamError> {
    let udp_request = request(question, dnssec_ok);
    let udp = tokio::time::timeout(timeout, udp_exchange(upstream, &udp_request))
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))??;
    let (response, via_tcp) = if udp.metadata.truncation {
        let tcp_request = request(question, dnssec_ok);
        let tcp = tokio::time::timeout(timeout, tcp_exchange(upstream, &tcp_request))
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))??;
        (tcp, true)
    } else {
        (udp, false)
    };
    match response.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(Exchange { response, via_tcp }),
        rcode => Err(UpstreamError::Rcode(rcode)),
    }
}

fn request(question: &Query, dnssec_ok: bool) -> Message {
    // Message::query draws a random id from a CSPRNG.
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(question.clone());
    m.edns = Some(response_edns(dnssec_ok));
    m
}

async fn udp_exchange(upstream: SocketAddr, request: &Message) -> Result<Message, UpstreamError> {
    let bytes = request
        .to_vec()
        .map_err(|e| UpstreamError::Malformed(e.to_string()))?;
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // A connected socket only receives datagrams from the upstream's address and port.
    socket.connect(upstream).await?;
    socket.send(&bytes).await?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let n = socket.recv(&mut buf).await?;
        match verdict(&buf[..n], request) {
            Verdict::Accept(m) => return Ok(m),
            Verdict::Reject(e) => return Err(e),
            Verdict::Ignore(why) => {
                tracing::debug!(upstream = %upstream, reason = why, "ignored stray datagram");
            }
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, request: &Message) -> Result<Message, UpstreamError> {
    let bytes = request
        .to_vec()
        .map_err(|e| UpstreamError::Malformed(e.to_string()))?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| UpstreamError::Malformed("query too long".into()))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    match verdict(&buf, request) {
        Verdict::Accept(m) if m.metadata.truncation => {
            Err(UpstreamError::Malformed("truncated over TCP".into()))
        }
        Verdict::Accept(m) => Ok(m),
        Verdict::Reject(e) => Err(e),
        Verdict::Ignore(why) => Err(UpstreamError::Malformed(format!("TCP answer: {why}"))),
    }
}

fn verdict(packet: &[u8], request: &Message) -> Verdict {
    if packet.len() >= 2 && u16::from_be_bytes([packet[0], packet[1]]) != request.metadata.id {
        return Verdict::Ignore("id mismatch");
    }
    let msg = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(e) => return Verdict::Reject(UpstreamError::Malformed(e.to_string())),
    };
    if msg.metadata.message_type != MessageType::Response {
        return Verdict::Ignore("not a response");
    }
    let Some(asked) = request.queries.first() else {
        return Verdict::Reject(UpstreamError::Malformed("query without question".into()));
    };
    match msg.queries.as_slice() {
        // Some servers send errors without the question.
        [] if msg.metadata.response_code != ResponseCode::NoError => {
            Verdict::Reject(UpstreamError::Rcode(msg.metadata.response_code))
        }
        [q] if q.name().eq_ignore_root(asked.name())
            && q.query_type() == asked.query_type()
            && q.query_class() == asked.query_class() =>
        {
            Verdict::Accept(msg)
        }
        _ => Verdict::Ignore("question mismatch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RecordType};

    fn req() -> Message {
        request(
            &Query::query(Name::from_ascii("a.test.").expect("name"), RecordType::A),
            false,
        )
    }

    fn answer_to(req: &Message, name: &str) -> Vec<u8> {
        let mut m = Message::response(req.metadata.id, req.metadata.op_code);
        m.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        m.to_vec().expect("encode")
    }

    #[test]
    fn verdict_accepts_only_the_matching_answer() {
        let r = req();
        assert!(matches!(
            verdict(&answer_to(&r, "A.TEST."), &r),
            Verdict::Accept(_)
        ));
        assert!(matches!(
            verdict(&answer_to(&r, "b.test."), &r),
            Verdict::Ignore(_)
        ));
        let mut wrong_id = answer_to(&r, "a.test.");
        wrong_id[0] ^= 0xff;
        assert!(matches!(
            verdict(&wrong_id, &r),
            Verdict::Ignore("id mismatch")
        ));
        let mut query_echo = r.to_vec().expect("encode");
        query_echo[2] &= 0x7f;
        assert!(matches!(verdict(&query_echo, &r), Verdict::Ignore(_)));
    }

    #[test]
    fn verdict_rejects_garbage_with_our_id_without_panicking() {
        let r = req();
        let mut junk = answer_to(&r, "a.test.");
        junk.truncate(14);
        assert!(matches!(
            verdict(&junk, &r),
            Verdict::Reject(UpstreamError::Malformed(_))
        ));
        assert!(matches!(
            verdict(&[1], &r),
            Verdict::Reject(UpstreamError::Malformed(_))
        ));
    }

    #[test]
    fn requests_carry_random_ids_rd_and_edns() {
        let ids: Vec<u16> = (0..4).map(|_| req().metadata.id).collect();
        assert!(ids.iter().any(|&id| id != ids[0]));
        let r = req();
        assert!(r.metadata.recursion_desired && r.edns.is_some());
    }
}
