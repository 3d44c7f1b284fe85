//! One UDP socket's batch: recvmmsg into reused buffers, answers sent with sendmmsg, those of
//! one size to one requester gathered into one segmented send (see [`super::coalesce`]).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr::null_mut;

use super::coalesce::Plan;

/// Datagrams read per recvmmsg call.
pub(crate) const BATCH: usize = 64;
/// Largest datagram read (longer ones arrive cut and get FORMERR). Not a multiple of the page
/// size, so the buffers of a batch do not all map to the same cache sets.
pub(crate) const PACKET: usize = 1280;
/// Segmented sends refused in a row (none accepted between) after which a socket sends alone:
/// a refusal can be one route's (IPsec, a device MTU under 540), not the whole socket's.
const REFUSALS: u32 = 16;
/// Room for one control message carrying a u16 (CMSG_SPACE(2) is 24 bytes on 64-bit Linux).
type Control = [u64; 4];

/// Receive and send vectors for one batch; the raw pointers point into the boxed slices, whose
/// heap storage never moves while the batch lives.
pub(crate) struct Batch {
    pub(crate) bufs: Box<[[u8; PACKET]]>,
    pub(crate) outs: Vec<Vec<u8>>,
    /// The requester of each datagram.
    pub(crate) addrs: Box<[libc::sockaddr_storage]>,
    pub(crate) hdr_in: Box<[libc::mmsghdr]>,
    iov_in: Box<[libc::iovec]>,
    /// The datagram each queued answer replies to, and its requester, by answer slot.
    queued: Vec<(usize, SocketAddr)>,
    plan: Plan,
    /// The answers' vectors by send position.
    iov_out: Box<[libc::iovec]>,
    /// By message: its header, its first send position, its segment size option.
    hdr_out: Box<[libc::mmsghdr]>,
    first: Box<[usize]>,
    control: Box<[Control]>,
    /// Whether this socket sends segmented (cleared after [`REFUSALS`] refusals in a row).
    coalesce: bool,
    /// Segmented sends the kernel refused since it last accepted one.
    refusals: u32,
}

impl Batch {
    /// Buffers for socket `fd`, segmented sends on if its kernel knows `UDP_SEGMENT`.
    pub(crate) fn new(fd: i32) -> Batch {
        // SAFETY: these libc structs are plain data for which all-zero bytes are valid.
        let zero_iov = || unsafe { zeroed::<libc::iovec>() };
        let zero_hdr = || unsafe { zeroed::<libc::mmsghdr>() };
        let zero_addr = || unsafe { zeroed::<libc::sockaddr_storage>() };
        let mut b = Batch {
            bufs: vec![[0u8; PACKET]; BATCH].into_boxed_slice(),
            outs: (0..BATCH).map(|_| Vec::with_capacity(PACKET)).collect(),
            addrs: (0..BATCH).map(|_| zero_addr()).collect(),
            hdr_in: (0..BATCH).map(|_| zero_hdr()).collect(),
            iov_in: (0..BATCH).map(|_| zero_iov()).collect(),
            queued: Vec::with_capacity(BATCH),
            plan: Plan::default(),
            iov_out: (0..BATCH).map(|_| zero_iov()).collect(),
            hdr_out: (0..BATCH).map(|_| zero_hdr()).collect(),
            first: vec![0; BATCH].into_boxed_slice(),
            control: vec![[0; 4]; BATCH].into_boxed_slice(),
            coalesce: segmentation_known(fd),
            refusals: 0,
        };
        for i in 0..BATCH {
            b.iov_in[i].iov_base = b.bufs[i].as_mut_ptr().cast();
            b.iov_in[i].iov_len = PACKET;
            let h = &mut b.hdr_in[i].msg_hdr;
            h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut b.iov_in[i];
            h.msg_iovlen = 1;
        }
        b
    }

    /// Reads up to a batch of datagrams; Ok(0) when the read timed out.
    pub(crate) fn receive(&mut self, fd: i32) -> io::Result<usize> {
        self.queued.clear();
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

    /// The length of datagram `i` as read, capped at its buffer.
    pub(crate) fn len(&self, i: usize) -> usize {
        (self.hdr_in[i].msg_len as usize).min(PACKET)
    }

    /// Queues the answer in `outs[i]` to `peer`, the sender of datagram `i`.
    pub(crate) fn queue(&mut self, i: usize, peer: SocketAddr) {
        self.queued.push((i, peer));
    }

    /// Sends the queued answers and returns how many left in segmented sends. A segmented
    /// send that fails is sent again answer by answer (see [`Batch::refusal`]). An answer the
    /// link cannot carry whole (EMSGSIZE: DF is set) is handed once to `shrink` with its query,
    /// and sent again if `shrink` rewrote it; any other answer the kernel rejects is skipped.
    pub(crate) fn send(
        &mut self,
        fd: i32,
        mut shrink: impl FnMut(usize, &[u8], &mut Vec<u8>) -> bool,
    ) -> u64 {
        let outs = &self.outs;
        let answers = self.queued.iter().map(|&(i, peer)| (peer, outs[i].len()));
        self.plan.make(answers, self.coalesce);
        for pos in 0..self.plan.order.len() {
            self.point(pos);
        }
        for m in 0..self.plan.runs.len() {
            let run = self.plan.runs[m];
            self.message(m, run.start, run.count);
        }
        let answers = self.plan.order.len();
        let mut count = self.plan.runs.len();
        let (mut sent, mut coalesced) = (0, 0);
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
                let done = &self.hdr_out[sent..sent + r as usize];
                let grouped = done
                    .iter()
                    .map(|h| h.msg_hdr.msg_iovlen)
                    .filter(|&n| n > 1)
                    .sum::<usize>() as u64;
                if grouped > 0 {
                    self.refusals = 0;
                }
                coalesced += grouped;
                sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let pos = self.first[sent];
            if self.hdr_out[sent].msg_hdr.msg_iovlen > 1 {
                self.refusal(&e);
                for (m, p) in (sent..).zip(pos..answers) {
                    self.message(m, p, 1);
                }
                count = sent + (answers - pos);
                continue;
            }
            let i = self.datagram(pos);
            if e.raw_os_error() == Some(libc::EMSGSIZE) && shrunk != Some(sent) {
                let len = self.len(i);
                if shrink(i, &self.bufs[i][..len], &mut self.outs[i]) {
                    shrunk = Some(sent);
                    self.point(pos);
                    continue;
                }
            }
            sent += 1;
        }
        coalesced
    }

    /// Counts a failed segmented send (its answers are then sent one by one): after
    /// [`REFUSALS`] in a row that the kernel refused with none accepted between them, this
    /// socket sends alone from then on. Other errors (a full buffer, a filter) only split the
    /// group.
    fn refusal(&mut self, e: &io::Error) {
        if !refused(e) {
            return;
        }
        self.refusals += 1;
        if self.refusals >= REFUSALS {
            tracing::info!(error = %e, "UDP segmentation refused: DNS answers on this socket leave one send each");
            self.coalesce = false;
        }
    }

    /// The datagram the answer at send position `pos` replies to.
    fn datagram(&self, pos: usize) -> usize {
        self.queued[self.plan.order[pos]].0
    }

    /// Points send position `pos`'s vector at its answer as it is now.
    fn point(&mut self, pos: usize) {
        let i = self.datagram(pos);
        let out = &mut self.outs[i];
        self.iov_out[pos].iov_base = out.as_mut_ptr().cast();
        self.iov_out[pos].iov_len = out.len();
    }

    /// Lays out message `m`: the `count` answers from send position `pos`, to their requester;
    /// with a segment size when more than one (all of them are that size).
    fn message(&mut self, m: usize, pos: usize, count: usize) {
        self.first[m] = pos;
        let i = self.datagram(pos);
        let h = &mut self.hdr_out[m].msg_hdr;
        h.msg_iov = self.iov_out[pos..].as_mut_ptr();
        h.msg_iovlen = count;
        h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = self.hdr_in[i].msg_hdr.msg_namelen;
        if count == 1 {
            h.msg_control = null_mut();
            h.msg_controllen = 0;
            return;
        }
        let size = self.iov_out[pos].iov_len as u16;
        let control = &mut self.control[m];
        h.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE(2) (24 bytes) fits in the zero-initialised, 8-aligned Control;
        // CMSG_FIRSTHDR of a header whose control buffer is that large is non-null and aligned.
        unsafe {
            h.msg_controllen = libc::CMSG_SPACE(2) as usize;
            let c = libc::CMSG_FIRSTHDR(h);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
            libc::CMSG_DATA(c).cast::<u16>().write_unaligned(size);
        }
    }
}

/// Whether the kernel knows `UDP_SEGMENT` (Linux 4.18): one before it would ignore the option
/// and send a group as one datagram, so it is asked once, before the first send.
fn segmentation_known(fd: i32) -> bool {
    let mut size: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a c_int out-parameter with its length.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        tracing::info!(error = %io::Error::last_os_error(), "no UDP segmentation: DNS answers leave one send each");
    }
    r == 0
}

/// Whether a failed segmented send is the kernel refusing segmentation: EIO (an IPsec route,
/// no checksum offload), EINVAL (`SO_NO_CHECK`, a segment over the device's MTU), EOPNOTSUPP.
fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
    )
}

/// The requester's address out of a sockaddr the kernel filled.
pub(crate) fn peer_addr(ss: &libc::sockaddr_storage) -> SocketAddr {
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
