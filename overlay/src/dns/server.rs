//! The DNS server: a snapshot handle, an optional forwarder, UDP threads and TCP tasks on
//! sockets the caller bound, until a shutdown future resolves.

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use super::answer::{reply_without_records, truncate_for_link, AnswerConfig, Reply, Transport};
use super::forward::{ForwardError, Forwarder};
use super::metrics::{Metrics, MetricsReport, Tally};
use super::wire::{rcode, response_limit, Query};
use super::{tcp, udp, DnsError, Snapshot};

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Our EDNS UDP payload size (advertised, and the cap on UDP answers). Default 1232.
    pub max_udp_payload: u16,
    /// A TCP connection idle this long is closed. Default 10 s.
    pub tcp_idle_timeout: Duration,
    /// Most TCP connections served at once; more are closed on accept. Default 256.
    pub max_tcp_connections: usize,
    /// Most forwarded queries awaiting an upstream at once; more get SERVFAIL. Default 1024.
    pub max_forwards_in_flight: usize,
    /// Log every query through tracing (target `shibafu::dns::query`). Default off.
    pub query_log: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_udp_payload: 1232,
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 256,
            max_forwards_in_flight: 1024,
            query_log: false,
        }
    }
}

/// State shared by every listener of a server.
pub(crate) struct Shared {
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    pub(crate) forwarder: Option<Forwarder>,
    pub(crate) config: ServerConfig,
    pub(crate) answer_cfg: AnswerConfig,
    pub(crate) metrics: Metrics,
    forward_slots: Arc<Semaphore>,
}

/// A DNS server answering from a swappable snapshot. Cheap to clone; clones share counters, so
/// one server can [`run`](Self::run) several socket sets (one per gateway address) at once.
#[derive(Clone)]
pub struct DnsServer {
    shared: Arc<Shared>,
}

impl DnsServer {
    /// A server answering from `snapshot` (publish updates with `snapshot.store(...)`), handing
    /// names outside its zones to `forwarder` (REFUSED without one).
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        forwarder: Option<Forwarder>,
        config: ServerConfig,
    ) -> Self {
        let answer_cfg = AnswerConfig {
            max_udp_payload: config.max_udp_payload,
            forwarding: forwarder.is_some(),
        };
        let forward_slots = Arc::new(Semaphore::new(config.max_forwards_in_flight));
        DnsServer {
            shared: Arc::new(Shared {
                snapshot,
                forwarder,
                config,
                answer_cfg,
                metrics: Metrics::default(),
                forward_slots,
            }),
        }
    }

    /// The snapshot handle this server reads.
    pub fn snapshot(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.shared.snapshot
    }

    /// Traces one query as `client` would ask it: see [`super::trace::trace`].
    pub async fn trace(
        &self,
        qname: &str,
        qtype: hickory_proto::rr::RecordType,
        client: std::net::IpAddr,
    ) -> Result<super::trace::DnsTrace, super::trace::TraceError> {
        let snap = self.shared.snapshot.load_full();
        super::trace::trace(
            &snap,
            self.shared.forwarder.as_ref(),
            &self.shared.answer_cfg,
            qname,
            qtype,
            client,
        )
        .await
    }

    /// Current counters, with the forwarder's.
    pub fn report(&self) -> MetricsReport {
        self.shared
            .metrics
            .report(self.shared.forwarder.as_ref().map(Forwarder::stats))
    }

    /// Writes the current counters into `out` as the server of `network`. It reads atomics,
    /// the zone counts (flushed by the UDP threads once a second) and, one shard at a time for
    /// an instant, the forwarder's cache counters; local answers never wait on it.
    pub fn collect(&self, network: &str, out: &mut crate::metrics::Exposition) {
        self.report().write(network, out);
    }

    /// Serves `udp` (a thread each) and `tcp` (tokio tasks) until `shutdown` resolves, then stops
    /// them all. Must be called inside a tokio runtime; sockets may be bound to port 0.
    pub async fn run(
        &self,
        udp: Vec<UdpSocket>,
        tcp: Vec<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DnsError> {
        let rt = Handle::try_current().map_err(|e| DnsError::Io {
            what: "start the DNS server (it needs a tokio runtime)".into(),
            source: std::io::Error::other(e),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut result = Ok(());
        for socket in udp {
            let what = format!("start the UDP thread for {:?}", socket.local_addr().ok());
            let io = |source| DnsError::Io {
                what: what.clone(),
                source,
            };
            if let Err(e) = socket
                .set_read_timeout(Some(Duration::from_millis(200)))
                .map_err(io)
            {
                result = Err(e);
                break;
            }
            let (shared, stop, rt) = (self.shared.clone(), stop.clone(), rt.clone());
            let spawned = std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || udp::serve(shared, Arc::new(socket), stop, rt));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    result = Err(io(e));
                    break;
                }
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        if result.is_ok() {
            for listener in tcp {
                tasks.spawn(tcp::serve(self.shared.clone(), listener));
            }
            shutdown.await;
        }
        tasks.abort_all();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ =
            tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join())))
                .await;
        result
    }
}

impl Shared {
    /// A UDP query outside the zones, `q` as parsed from `packet` for answering: answered from
    /// the forwarder's cache into `out` now (returns the reply), else resolved in a task that
    /// sends the answer itself.
    pub(crate) fn forward_udp(
        self: &Arc<Self>,
        packet: &[u8],
        q: &Query,
        peer: SocketAddr,
        socket: &Arc<UdpSocket>,
        out: &mut Vec<u8>,
        rt: &Handle,
    ) -> Option<Reply> {
        let fwd = self.forwarder.as_ref()?;
        if fwd.answer_from_cache(packet, q, Transport::Udp, out) {
            return Some(reply_of(out));
        }
        let Ok(permit) = self.forward_slots.clone().try_acquire_owned() else {
            let (code, cfg) = (rcode::SERVFAIL, &self.answer_cfg);
            let reply = reply_without_records(packet, q, code, false, Transport::Udp, cfg, out);
            return Some(reply);
        };
        let (shared, socket, packet, q) =
            (self.clone(), socket.clone(), packet.to_vec(), q.clone());
        rt.spawn(async move {
            let mut out = Vec::new();
            if let Some(r) = shared.forward(&packet, &q, Transport::Udp, &mut out).await {
                let mut tally = Tally::default();
                tally.reply(&r);
                shared.metrics.add_udp(&tally);
                if shared.config.query_log {
                    udp::log_query(Some(&q), peer.ip(), &r, "udp");
                }
                let (sock, to) = (SockRef::from(&*socket), SockAddr::from(peer));
                let sent = sock.send_to_with_flags(&out, &to, libc::MSG_DONTWAIT);
                if sent.is_err_and(|e| e.raw_os_error() == Some(libc::EMSGSIZE)) {
                    truncate_for_link(&packet, &q, &shared.answer_cfg, &mut out);
                    let mut tally = Tally::default();
                    tally.truncated += 1;
                    shared.metrics.add_udp(&tally);
                    let _ = sock.send_to_with_flags(&out, &to, libc::MSG_DONTWAIT);
                }
            }
            drop(permit);
        });
        None
    }

    /// Resolves `q`, parsed from `packet`, through the forwarder into `out`: its answer, TC when
    /// too large for UDP, REFUSED without a route, SERVFAIL when every upstream failed.
    pub(crate) async fn forward(
        &self,
        packet: &[u8],
        q: &Query,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Option<Reply> {
        let fwd = self.forwarder.as_ref()?;
        let cfg = &self.answer_cfg;
        let (code, truncated) = match fwd.resolve(packet, q, out).await {
            Ok(())
                if transport == Transport::Tcp
                    || out.len() <= response_limit(transport, q.edns, cfg.max_udp_payload) =>
            {
                return Some(reply_of(out));
            }
            // Too large for UDP: TC, with the upstream's rcode.
            Ok(()) => (reply_of(out).rcode, true),
            Err(ForwardError::NoRoute(_) | ForwardError::BadQuery(_)) => (rcode::REFUSED, false),
            Err(e) => {
                tracing::debug!(error = %e, "forwarding failed");
                (rcode::SERVFAIL, false)
            }
        };
        let reply = reply_without_records(packet, q, code, truncated, transport, cfg, out);
        Some(reply)
    }
}

/// Facts about a response already encoded (for counters and logs).
pub(crate) fn reply_of(out: &[u8]) -> Reply {
    let field = |i: usize| {
        out.get(i..i + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    Reply {
        rcode: u16::from(out.get(3).map_or(0, |b| b & 0x0f)),
        answers: field(6),
        zone: None,
        prebuilt: false,
        truncated: out.get(2).is_some_and(|b| b & 0x02 != 0),
    }
}

fn socket_for(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    // Freebind: the agent binds gateway addresses that its bridges may not carry yet.
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        socket.set_freebind_v6(true)?;
    } else {
        socket.set_freebind_v4(true)?;
    }
    Ok(socket)
}

/// Sets an integer socket option.
fn set_int(socket: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: setsockopt reads an int from a valid pointer of the given length.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Sets a socket buffer size, past the system cap when privileged (SO_*BUFFORCE).
fn force_buffer(socket: &Socket, option: libc::c_int, size: usize) {
    if !set_int(socket, libc::SOL_SOCKET, option, size as libc::c_int) {
        let _ = if option == libc::SO_RCVBUFFORCE {
            socket.set_recv_buffer_size(size)
        } else {
            socket.set_send_buffer_size(size)
        };
    }
}

/// Answers leave with DF set and are never fragmented (RFC 9715): one larger than the outgoing
/// link's MTU fails with EMSGSIZE and is sent truncated instead, so the client asks again over
/// TCP. The path MTU from ICMP is ignored (a forged "fragmentation needed" cannot shrink
/// answers), and an unconnected socket with DF set skips the kernel's IP ID selection.
fn set_dont_fragment(socket: &Socket, addr: SocketAddr) -> std::io::Result<()> {
    let ok = if addr.is_ipv4() {
        set_int(
            socket,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    } else {
        set_int(
            socket,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        ) && set_int(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Binds one UDP socket with large buffers, its answers never fragmented.
pub fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, DnsError> {
    Ok(bind_udp_group(addr, 1)?.remove(0))
}

/// Binds `count` UDP sockets to one address with SO_REUSEPORT (the kernel spreads requesters
/// over them; serve each on its own thread). Port 0 picks one free port for all of them.
pub fn bind_udp_group(addr: SocketAddr, count: usize) -> Result<Vec<UdpSocket>, DnsError> {
    let io = |source| DnsError::Io {
        what: format!("bind UDP {addr}"),
        source,
    };
    let mut bound = addr;
    let mut sockets = Vec::new();
    for _ in 0..count.max(1) {
        let socket = socket_for(bound, Type::DGRAM, Protocol::UDP).map_err(io)?;
        if count > 1 {
            socket.set_reuse_port(true).map_err(io)?;
        }
        force_buffer(&socket, libc::SO_RCVBUFFORCE, 4 << 20);
        force_buffer(&socket, libc::SO_SNDBUFFORCE, 4 << 20);
        if let Err(e) = set_dont_fragment(&socket, bound) {
            tracing::warn!(error = %e, %addr, "cannot set DF on a DNS socket: its answers may be fragmented");
        }
        socket.bind(&bound.into()).map_err(io)?;
        let std_socket: UdpSocket = socket.into();
        bound = std_socket.local_addr().map_err(io)?;
        sockets.push(std_socket);
    }
    Ok(sockets)
}

/// Binds a TCP listener (SO_REUSEADDR, backlog 1024) for [`DnsServer::run`]; needs a runtime.
pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, DnsError> {
    let io = |source| DnsError::Io {
        what: format!("bind TCP {addr}"),
        source,
    };
    let socket = socket_for(addr, Type::STREAM, Protocol::TCP).map_err(io)?;
    socket.set_reuse_address(true).map_err(io)?;
    socket.bind(&addr.into()).map_err(io)?;
    socket.listen(1024).map_err(io)?;
    socket.set_nonblocking(true).map_err(io)?;
    TcpListener::from_std(socket.into()).map_err(io)
}
