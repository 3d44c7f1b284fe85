//! A scripted upstream DNS server on 127.0.0.1 (UDP and TCP on one port) for the forwarder's
//! tests: answers from a table, misbehaves on request, counts what it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// How the fake upstream treats queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer from the table (NXDOMAIN with an SOA for unknown names).
    Answer,
    /// Never answer.
    Silent,
    /// Answer every query with this rcode and no records.
    Rcode(ResponseCode),
    /// Over UDP answer truncated (TC, no records); over TCP answer in full.
    TruncateUdp,
    /// Before the real answer, send one with a wrong id and one with another question, both
    /// carrying the address 10.66.6.6.
    SpoofFirst,
    /// Answer with the right id followed by junk.
    Garbage,
}

/// Records by (lowercased name, type).
pub type Table = HashMap<(Name, RecordType), Vec<Record>>;

/// A running fake upstream; stops when dropped or with [`FakeUpstream::stop`].
pub struct FakeUpstream {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    udp: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

/// An A record.
pub fn a(owner: &str, ttl: u32, addr: [u8; 4]) -> Record {
    let [w, x, y, z] = addr;
    Record::from_rdata(name(owner), ttl, RData::A(A::new(w, x, y, z)))
}

/// A name from text.
pub fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test name")
}

/// A table from records.
pub fn table(records: Vec<Record>) -> Table {
    let mut t = Table::new();
    for r in records {
        t.entry((r.name.to_lowercase(), r.record_type()))
            .or_default()
            .push(r);
    }
    t
}

impl FakeUpstream {
    /// Starts answering on a free 127.0.0.1 port, each answer after `delay`.
    pub async fn start(table: Table, behaviour: Behaviour, delay: Duration) -> FakeUpstream {
        let (udp_sock, tcp_listener) = bind_pair().await;
        let addr = udp_sock.local_addr().expect("udp addr");
        let table = Arc::new(table);
        let (udp, tcp) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let udp_task = tokio::spawn(serve_udp(
            Arc::new(udp_sock),
            table.clone(),
            behaviour,
            delay,
            udp.clone(),
        ));
        let tcp_task = tokio::spawn(serve_tcp(tcp_listener, table, behaviour, tcp.clone()));
        FakeUpstream {
            addr,
            udp,
            tcp,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Queries received over UDP.
    pub fn udp_queries(&self) -> usize {
        self.udp.load(SeqCst)
    }

    /// Queries received over TCP.
    pub fn tcp_queries(&self) -> usize {
        self.tcp.load(SeqCst)
    }

    /// Stops serving and waits until its sockets are closed.
    pub async fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = udp.local_addr().expect("udp addr");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no free port for both UDP and TCP on 127.0.0.1");
}

async fn serve_udp(
    sock: Arc<UdpSocket>,
    table: Arc<Table>,
    behaviour: Behaviour,
    delay: Duration,
    count: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 4096];
    while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
        count.fetch_add(1, SeqCst);
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let packets = udp_packets(&query, &table, behaviour);
        let sock = sock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for p in packets {
                let _ = sock.send_to(&p, peer).await;
            }
        });
    }
}

fn udp_packets(query: &Message, table: &Table, behaviour: Behaviour) -> Vec<Vec<u8>> {
    let encode = |m: &Message| m.to_vec().expect("encode answer");
    match behaviour {
        Behaviour::Silent => vec![],
        Behaviour::Answer | Behaviour::Rcode(_) => vec![encode(&respond(query, table, behaviour))],
        Behaviour::TruncateUdp => {
            let mut m = respond(query, table, behaviour);
            m.metadata.truncation = true;
            m.answers.clear();
            m.authorities.clear();
            vec![encode(&m)]
        }
        Behaviour::SpoofFirst => {
            let mut wrong_id = respond(query, table, behaviour);
            wrong_id.metadata.id ^= 0x5a5a;
            wrong_id.answers = vec![a("www.example.test.", 300, [10, 66, 6, 6])];
            let mut wrong_question = wrong_id.clone();
            wrong_question.metadata.id = query.metadata.id;
            wrong_question.queries = vec![Query::query(name("evil.test."), RecordType::A)];
            let real = respond(query, table, behaviour);
            vec![encode(&wrong_id), encode(&wrong_question), encode(&real)]
        }
        Behaviour::Garbage => {
            let mut p = query.metadata.id.to_be_bytes().to_vec();
            p.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 9, 0, 0, 0, 0, 3, b'w']);
            vec![p]
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    table: Arc<Table>,
    behaviour: Behaviour,
    count: Arc<AtomicUsize>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve_tcp_conn(
            stream,
            table.clone(),
            behaviour,
            count.clone(),
        ));
    }
}

async fn serve_tcp_conn(
    mut s: TcpStream,
    table: Arc<Table>,
    behaviour: Behaviour,
    count: Arc<AtomicUsize>,
) {
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut buf).await.is_err() {
            return;
        }
        count.fetch_add(1, SeqCst);
        let Ok(query) = Message::from_vec(&buf) else {
            return;
        };
        let answer = respond(&query, &table, behaviour)
            .to_vec()
            .expect("encode answer");
        let mut framed = u16::try_from(answer.len())
            .expect("fits")
            .to_be_bytes()
            .to_vec();
        framed.extend_from_slice(&answer);
        if s.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// The full, honest answer to `query` (or the configured error rcode).
fn respond(query: &Message, table: &Table, behaviour: Behaviour) -> Message {
    let mut m = Message::response(query.metadata.id, OpCode::Query);
    m.metadata.message_type = MessageType::Response;
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.queries.clone_from(&query.queries);
    m.edns.clone_from(&query.edns);
    if let Behaviour::Rcode(rcode) = behaviour {
        m.metadata.response_code = rcode;
        return m;
    }
    let Some(q) = query.queries.first() else {
        m.metadata.response_code = ResponseCode::FormErr;
        return m;
    };
    match table.get(&(q.name().to_lowercase(), q.query_type())) {
        Some(records) => m.answers.clone_from(records),
        None => {
            m.metadata.response_code = ResponseCode::NXDomain;
            let soa = SOA::new(
                name("ns.test."),
                name("admin.test."),
                1,
                3600,
                600,
                86_400,
                60,
            );
            m.authorities = vec![Record::from_rdata(name("test."), 3600, RData::SOA(soa))];
        }
    }
    m
}
