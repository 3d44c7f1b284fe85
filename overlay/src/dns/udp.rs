//! The UDP loop: one OS thread per socket, recvmmsg/sendmmsg in batches of 64, answers written
//! into buffers reused from batch to batch (no allocation for local names).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::answer::{respond_prepared, truncate_for_link, Outcome, Prepared, Reply, Transport};
use super::metrics::{Tally, ZoneCounts};
use super::server::Shared;
use super::wire::{name_to_string, Query};
use super::Snapshot;

/// Datagrams read per recvmmsg call.
const BATCH: usize = 64;
/// Largest datagram read (longer ones arrive cut and get FORMERR). Not a multiple of the page
/// size, so the buffers of a batch do not all map to the same cache sets.
const PACKET: usize = 1280;
/// How many queries ahead the table slot, then the answer entry, are prefetched: far enough
/// for a miss to land while earlier queries are answered, near enough not to exhaust the CPU's
/// outstanding-miss buffers.
const SLOT_AHEAD: usize = 6;
const ENTRY_AHEAD: usize = 3;
/// How often zone counters reach the shared metrics.
const ZONE_FLUSH: Duration = Duration::from_secs(1);

/// Receive and send vectors for one batch; the raw pointers point into the boxed slices, whose
/// heap storage never moves while the batch lives.
struct Batch {
    bufs: Box<[[u8; PACKET]]>,
    outs: Vec<Vec<u8>>,
    /// The datagram each queued answer replies to, by send slot.
    queued: Box<[usize]>,
    addrs: Box<[libc::sockaddr_storage]>,
    iov_in: Box<[libc::iovec]>,
    hdr_in: Box<[libc::mmsghdr]>,
    iov_out: Box<[libc::iovec]>,
    hdr_out: Box<[libc::mmsghdr]>,
}

impl Batch {
    fn new() -> Batch {
        // SAFETY: these libc structs are plain data for which all-zero bytes are valid.
        let zero_iov = || unsafe { zeroed::<libc::iovec>() };
        let zero_hdr = || unsafe { zeroed::<libc::mmsghdr>() };
        let zero_addr = || unsafe { zeroed::<libc::sockaddr_storage>() };
        let mut b = Batch {
            bufs: vec![[0u8; PACKET]; BATCH].into_boxed_slice(),
            outs: (0..BATCH).map(|_| Vec::with_capacity(PACKET)).collect(),
            queued: vec![0; BATCH].into_boxed_slice(),
            addrs: (0..BATCH).map(|_| zero_addr()).collect(),
            iov_in: (0..BATCH).map(|_| zero_iov()).collect(),
            hdr_in: (0..BATCH).map(|_| zero_hdr()).collect(),
            iov_out: (0..BATCH).map(|_| zero_iov()).collect(),
            hdr_out: (0..BATCH).map(|_| zero_hdr()).collect(),
        };
        for i in 0..BATCH {
            b.iov_in[i].iov_base = b.bufs[i].as_mut_ptr().cast();
            b.iov_in[i].iov_len = PACKET;
            let h = &mut b.hdr_in[i].msg_hdr;
            h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut b.iov_in[i];
            h.msg_iovlen = 1;
            b.hdr_out[i].msg_hdr.msg_iov = &mut b.iov_out[i];
            b.hdr_out[i].msg_hdr.msg_iovlen = 1;
        }
        b
    }

    /// Reads up to a batch of datagrams; Ok(0) when the read timed out.
    fn receive(&mut self, fd: i32) -> io::Result<usize> {
        for h in self.hdr_in.iter_mut() {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: hdr_in holds BATCH valid headers whose buffers outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdr_in.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                null_mut(),
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Ok(0)
            }
            _ => Err(e),
        }
    }

    /// Queues the answer in `outs[i]` to the sender of datagram `i` as message `slot`.
    fn queue(&mut self, slot: usize, i: usize) {
        self.queued[slot] = i;
        self.iov_out[slot].iov_base = self.outs[i].as_mut_ptr().cast();
        self.iov_out[slot].iov_len = self.outs[i].len();
        let h = &mut self.hdr_out[slot].msg_hdr;
        h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = self.hdr_in[i].msg_hdr.msg_namelen;
    }

    /// Sends the first `count` queued answers. One the link cannot carry whole (EMSGSIZE: DF is
    /// set) is handed once to `shrink` with its query, and sent again if `shrink` rewrote it;
    /// any other message the kernel rejects is skipped.
    fn send(
        &mut self,
        fd: i32,
        count: usize,
        mut shrink: impl FnMut(usize, &[u8], &mut Vec<u8>) -> bool,
    ) {
        let mut sent = 0;
        let mut shrunk = None;
        while sent < count {
            // SAFETY: hdr_out[sent..count] are valid headers pointing into live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdr_out[sent..].as_mut_ptr(),
                    (count - sent) as u32,
                    0,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let i = self.queued[sent];
            if e.raw_os_error() == Some(libc::EMSGSIZE) && shrunk != Some(sent) {
                let len = (self.hdr_in[i].msg_len as usize).min(PACKET);
                if shrink(i, &self.bufs[i][..len], &mut self.outs[i]) {
                    shrunk = Some(sent);
                    self.queue(sent, i);
                    continue;
                }
            }
            sent += 1;
        }
    }
}

/// The requester's address out of a sockaddr the kernel filled.
fn peer_addr(ss: &libc::sockaddr_storage) -> SocketAddr {
    match i32::from(ss.ss_family) {
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                0,
                sin6.sin6_scope_id,
            ))
        }
        _ => {
            // SAFETY: AF_INET (the only other family a UDP/IP socket reports) is a sockaddr_in,
            // and sockaddr_storage is large and aligned enough for it in any case.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)))
        }
    }
}

/// Zone counts of the snapshot in use, flushed by name when it changes or every second.
struct ZoneTally {
    held: Option<Arc<Snapshot>>,
    counts: Vec<ZoneCounts>,
    flushed: Instant,
}

impl ZoneTally {
    fn track(&mut self, shared: &Shared, snap: &Arc<Snapshot>) {
        if self.held.as_ref().is_some_and(|h| Arc::ptr_eq(h, snap)) {
            return;
        }
        self.flush(shared);
        self.counts = vec![ZoneCounts::default(); snap.zones.len()];
        self.held = Some(Arc::clone(snap));
    }

    fn count(&mut self, r: &Reply) {
        if let Some(c) = r.zone.and_then(|z| self.counts.get_mut(usize::from(z))) {
            c.count(r);
        }
    }

    fn flush(&mut self, shared: &Shared) {
        self.flushed = Instant::now();
        let Some(snap) = &self.held else { return };
        let names = snap.zones.iter().map(|z| z.name.as_str());
        shared
            .metrics
            .add_zones(names.zip(self.counts.iter().copied()));
        self.counts
            .iter_mut()
            .for_each(|c| *c = ZoneCounts::default());
    }
}

/// Serves `socket` until `stop` is set (checked at least every read timeout).
pub(crate) fn serve(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    rt: Handle,
) {
    let fd = socket.as_raw_fd();
    let mut b = Batch::new();
    let mut zones = ZoneTally {
        held: None,
        counts: Vec::new(),
        flushed: Instant::now(),
    };
    let mut last_error: Option<Instant> = None;
    let mut prepared = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        let n = match b.receive(fd) {
            Ok(n) => n,
            Err(e) => {
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "DNS UDP receive failed");
                    last_error = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(10));
                0
            }
        };
        if n > 0 {
            let start = Instant::now();
            let mut tally = Tally {
                queries: n as u64,
                ..Tally::default()
            };
            let snap = shared.snapshot.load();
            zones.track(&shared, &snap);
            let mut slots = 0;
            prepared.clear();
            for i in 0..n {
                let len = (b.hdr_in[i].msg_len as usize).min(PACKET);
                prepared.push(Prepared::new(&snap, &b.bufs[i][..len]));
            }
            prepared
                .iter()
                .take(SLOT_AHEAD)
                .for_each(|p| p.prefetch_slot(&snap));
            prepared
                .iter()
                .take(ENTRY_AHEAD)
                .for_each(|p| p.prefetch_entry(&snap));
            for (i, prep) in prepared.iter().enumerate() {
                if let Some(ahead) = prepared.get(i + SLOT_AHEAD) {
                    ahead.prefetch_slot(&snap);
                }
                if let Some(ahead) = prepared.get(i + ENTRY_AHEAD) {
                    ahead.prefetch_entry(&snap);
                }
                let len = (b.hdr_in[i].msg_len as usize).min(PACKET);
                tally.qtype(prep.query().map(|q| q.qtype));
                let peer = peer_addr(&b.addrs[i]);
                let packet = &b.bufs[i][..len];
                let out = &mut b.outs[i];
                let reply = match respond_prepared(
                    &snap,
                    packet,
                    prep,
                    peer.ip(),
                    Transport::Udp,
                    &shared.answer_cfg,
                    out,
                ) {
                    Outcome::Reply(r) => {
                        zones.count(&r);
                        Some(r)
                    }
                    Outcome::Drop => {
                        tally.dropped += 1;
                        None
                    }
                    Outcome::Forward => {
                        tally.forwarded += 1;
                        let q = prep.query();
                        q.and_then(|q| shared.forward_udp(packet, q, peer, &socket, out, &rt))
                    }
                };
                if let Some(r) = reply {
                    tally.reply(&r);
                    if shared.config.query_log {
                        log_query(prep.query(), peer.ip(), &r, "udp");
                    }
                    b.queue(slots, i);
                    slots += 1;
                }
            }
            drop(snap);
            b.send(fd, slots, |i, packet, out| {
                let Some(q) = prepared[i].query() else {
                    return false;
                };
                truncate_for_link(packet, q, &shared.answer_cfg, out);
                tally.truncated += 1;
                tracing::debug!(
                    name = %name_to_string(q.name()),
                    "answer larger than the link's MTU: sent truncated"
                );
                true
            });
            tally.latency(start.elapsed(), n as u64);
            shared.metrics.add_udp(&tally);
        }
        if zones.flushed.elapsed() >= ZONE_FLUSH {
            zones.flush(&shared);
        }
    }
    zones.flush(&shared);
}

/// One structured log line per query (only with query logging on); `q` is the query as parsed
/// for answering, None when the packet was not one.
pub(crate) fn log_query(q: Option<&Query>, client: IpAddr, r: &Reply, transport: &'static str) {
    let (name, qtype) = q.map_or_else(
        || (String::from("-"), 0),
        |q| (name_to_string(q.name()), q.qtype),
    );
    tracing::info!(
        target: "shibafu::dns::query",
        %client, transport, name, qtype, rcode = r.rcode, answers = r.answers, truncated = r.truncated,
        "query"
    );
}
