//! The DNS server on real loopback sockets: UDP and pipelined TCP, idle timeout, snapshot swaps,
//! several listeners on one server, counters, a burst's answers sent in segments, clean shutdown.
#![allow(clippy::unwrap_used)] // test inputs are fixed; a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use shibafu_overlay::dns::{
    bind_tcp, bind_udp, bind_udp_group, DnsServer, ServerConfig, Snapshot, SnapshotBuilder,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

fn snapshot(ip: &str) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    b.zone("test.local").record(
        "web.test.local",
        30,
        RData::try_from_str(RecordType::A, ip).unwrap(),
    );
    b.build().unwrap()
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

fn first_answer(bytes: &[u8]) -> String {
    let m = Message::from_vec(bytes).expect("parseable");
    m.answers
        .first()
        .map(|r| r.data.to_string())
        .unwrap_or_else(|| format!("{:?}", m.metadata.response_code))
}

struct Running {
    server: DnsServer,
    udp: Vec<SocketAddr>,
    tcp: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start(config: ServerConfig, udp_sockets: Vec<UdpSocket>) -> Running {
    let handle = Arc::new(ArcSwap::from_pointee(snapshot("10.0.0.1")));
    let server = DnsServer::new(handle, None, config);
    let udp = udp_sockets
        .iter()
        .map(|s| s.local_addr().unwrap())
        .collect();
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let tcp = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let s = server.clone();
    let task = tokio::spawn(async move {
        s.run(udp_sockets, vec![listener], async { drop(rx.await) })
            .await
            .unwrap();
    });
    Running {
        server,
        udp,
        tcp,
        stop: Some(tx),
        task,
    }
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("stops")
            .unwrap();
    }
}

async fn udp_ask(server: SocketAddr, packet: Vec<u8>) -> Vec<u8> {
    tokio::task::spawn_blocking(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send_to(&packet, server).unwrap();
        let mut buf = [0u8; 2048];
        let n = s.recv(&mut buf).expect("an answer");
        buf[..n].to_vec()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_answers_follow_snapshot_swaps() {
    let r = start(
        ServerConfig::default(),
        vec![bind_udp("127.0.0.1:0".parse().unwrap()).unwrap()],
    )
    .await;
    assert_eq!(
        first_answer(&udp_ask(r.udp[0], query(1, "web.test.local.")).await),
        "10.0.0.1"
    );
    r.server.snapshot().store(Arc::new(snapshot("10.0.0.2")));
    assert_eq!(
        first_answer(&udp_ask(r.udp[0], query(2, "web.test.local.")).await),
        "10.0.0.2"
    );
    assert_eq!(
        first_answer(&udp_ask(r.udp[0], query(3, "nope.test.local.")).await),
        "NXDomain"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_serves_pipelined_queries_on_one_connection() {
    let r = start(ServerConfig::default(), Vec::new()).await;
    let tcp = r.tcp;
    let answers = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut burst = Vec::new();
        for id in 1..=3u16 {
            let q = query(
                id,
                if id == 2 {
                    "nope.test.local."
                } else {
                    "web.test.local."
                },
            );
            burst.extend_from_slice(&(q.len() as u16).to_be_bytes());
            burst.extend_from_slice(&q);
        }
        s.write_all(&burst).unwrap();
        (0..3)
            .map(|_| {
                let mut len = [0u8; 2];
                s.read_exact(&mut len).unwrap();
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut msg).unwrap();
                let m = Message::from_vec(&msg).unwrap();
                (m.metadata.id, m.metadata.response_code)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(
        answers,
        [
            (1, ResponseCode::NoError),
            (2, ResponseCode::NXDomain),
            (3, ResponseCode::NoError)
        ]
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connections_are_closed() {
    let config = ServerConfig {
        tcp_idle_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let r = start(config, Vec::new()).await;
    let tcp = r.tcp;
    let read = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 1];
        s.read(&mut buf)
    })
    .await
    .unwrap();
    assert_eq!(
        read.expect("closed, not timed out"),
        0,
        "EOF after the idle timeout"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_listeners_share_one_server_and_its_counters() {
    let mut sockets = bind_udp_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    sockets.push(bind_udp("127.0.0.2:0".parse().unwrap()).unwrap());
    let r = start(ServerConfig::default(), sockets).await;
    assert_eq!(
        r.udp[0].port(),
        r.udp[1].port(),
        "one port for a SO_REUSEPORT group"
    );
    for (i, addr) in r.udp.iter().enumerate() {
        for j in 0..4 {
            let a = udp_ask(*addr, query((i * 10 + j) as u16, "web.test.local.")).await;
            assert_eq!(first_answer(&a), "10.0.0.1");
        }
    }
    let answered = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let report = r.server.report();
            if report
                .zones
                .get("test.local.")
                .is_some_and(|z| z.answers == 12)
            {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("zone counters flushed");
    assert_eq!(answered.queries_udp, 12);
    assert_eq!(answered.prebuilt, 12);
    assert_eq!(answered.rcodes.get("NOERROR"), Some(&12));
    assert_eq!(answered.latency.iter().map(|(_, n)| n).sum::<u64>(), 12);
    r.stop().await;
}

/// Sends 40 queries from one socket to `server` before serving it (one batch of two answer
/// sizes to one requester), checks each is answered by its own datagram, and returns the
/// server's count of answers sent in segmented sends.
async fn burst_answered(server: UdpSocket) -> u64 {
    let addr = server.local_addr().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let name = |id: u16| {
        if id % 2 == 0 {
            "web.test.local."
        } else {
            "nope.test.local."
        }
    };
    for id in 0..40 {
        client.send_to(&query(id, name(id)), addr).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let r = start(ServerConfig::default(), vec![server]).await;
    let answers = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 2048];
        (0..40)
            .map(|_| {
                let n = client.recv(&mut buf).expect("an answer per query");
                let m = Message::from_vec(&buf[..n]).expect("one whole message per datagram");
                (m.metadata.id, first_answer(&buf[..n]))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut ids: Vec<u16> = answers.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..40).collect::<Vec<_>>());
    for (id, answer) in &answers {
        let want = if id % 2 == 0 { "10.0.0.1" } else { "NXDomain" };
        assert_eq!(answer, want, "answer to query {id}");
    }
    let report = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let report = r.server.report();
            if report.queries_udp == 40 {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the batch counted");
    r.stop().await;
    report.coalesced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_socket_leaves_in_segments_and_arrives_answer_by_answer() {
    let server = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    assert_eq!(
        burst_answered(server).await,
        40,
        "two segmented sends of 20"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_refusing_segmented_sends_answers_one_by_one() {
    let server = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    // Without UDP checksums the kernel refuses segmentation (EINVAL), as it does on a route
    // without checksum offload (EIO).
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option of the size given.
    let r = unsafe {
        libc::setsockopt(
            server.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_NO_CHECK");
    assert_eq!(burst_answered(server).await, 0, "every answer sent alone");
}
