//! NETLINK_NETFILTER sockets, one per network namespace, kept open between changes.
//!
//! Closing such a socket right after a commit costs an RCU grace period (~10-20 ms): the kernel's
//! NETLINK_URELEASE handler in nf_tables flushes the commit's deferred cleanup, which waits for
//! one, holding the commit mutex. A change itself costs ~50 us, so sockets are kept: the first
//! change in a namespace opens one (inside it; a socket stays in the namespace it was made in),
//! later ones reuse it from any thread. A namespace whose path stops naming it (deleted) has its
//! socket closed on a later call, so the cache does not keep dead namespaces alive for long.

use std::fs;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::firewall::FirewallError;
use crate::netns::{self, NetnsError};

/// How long the kernel may take to answer: it answers while the batch is being sent, so only a
/// batch it dropped unanswered (malformed) ever waits this long.
const ANSWER_TIMEOUT_SECS: libc::time_t = 5;

/// A NETLINK_NETFILTER socket, closed on drop.
#[derive(Debug)]
pub(super) struct NfSocket(OwnedFd);

/// A socket shared by the callers working on one namespace, one batch at a time.
pub(super) type Shared = Arc<Mutex<NfSocket>>;

/// A namespace's identity: device and inode of its nsfs file.
type NsKey = (u64, u64);

struct Entry {
    key: NsKey,
    /// The path it was asked for by; `None` for callers' own namespaces (never swept).
    path: Option<PathBuf>,
    socket: Shared,
}

static SOCKETS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn entries() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    SOCKETS.lock().unwrap_or_else(|p| p.into_inner())
}

fn ns_key(path: &Path) -> io::Result<NsKey> {
    let m = fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Closes sockets off the async threads: a close may wait for a grace period.
fn close_later(sockets: Vec<Shared>) {
    if sockets.is_empty() {
        return;
    }
    let close = move || drop(sockets);
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(close)),
        Err(_) => close(),
    }
}

/// The socket for the namespace at `netns` (None = the calling thread's), opened if needed.
pub(super) async fn socket_for(netns: Option<&Path>) -> Result<Shared, FirewallError> {
    let open_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NetnsError::Open { path, source }
    };
    let own = Path::new("/proc/thread-self/ns/net");
    let key = ns_key(netns.unwrap_or(own)).map_err(open_err(netns.unwrap_or(own)))?;
    let mut gone = Vec::new();
    let found = {
        let mut list = entries();
        list.retain(|e| {
            let live = e
                .path
                .as_deref()
                .is_none_or(|p| ns_key(p).ok() == Some(e.key));
            if !live {
                gone.push(e.socket.clone());
            }
            live
        });
        list.iter().find(|e| e.key == key).map(|e| e.socket.clone())
    };
    close_later(gone);
    if let Some(socket) = found {
        return Ok(socket);
    }
    let opened = match netns {
        Some(path) => netns::run_in_async(path, NfSocket::open).await?,
        None => NfSocket::open(),
    };
    let socket = Arc::new(Mutex::new(opened.map_err(|source| {
        FirewallError::Netlink {
            what: "opening a NETLINK_NETFILTER socket".into(),
            source,
        }
    })?));
    let mut list = entries();
    // Someone may have opened one meanwhile: keep theirs.
    if let Some(e) = list.iter().find(|e| e.key == key) {
        let theirs = e.socket.clone();
        drop(list);
        close_later(vec![socket]);
        return Ok(theirs);
    }
    list.push(Entry {
        key,
        path: netns.map(Path::to_path_buf),
        socket: socket.clone(),
    });
    Ok(socket)
}

/// Forgets `socket` after it failed (timeout, lost answers): the next change opens a new one.
pub(super) fn evict(socket: &Shared) {
    let mut list = entries();
    let before = list.len();
    list.retain(|e| !Arc::ptr_eq(&e.socket, socket));
    let dropped = before != list.len();
    drop(list);
    if dropped {
        close_later(vec![socket.clone()]);
    }
}

impl NfSocket {
    fn open() -> io::Result<NfSocket> {
        let flags = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
        // SAFETY: plain socket(2); the fd is owned right below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, flags, libc::NETLINK_NETFILTER) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sock = NfSocket(unsafe { OwnedFd::from_raw_fd(fd) });
        // Failures answer with only their header, plus the offending attribute's offset
        // (which element). Kernels without these options still work, with less detail.
        let _ = sock.set(libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, &1i32);
        let _ = sock.set(libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, &1i32);
        let timeout = libc::timeval {
            tv_sec: ANSWER_TIMEOUT_SECS,
            tv_usec: 0,
        };
        sock.set(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
        Ok(sock)
    }

    fn set<T>(&self, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
        let len = size_of::<T>() as libc::socklen_t;
        let ptr = (value as *const T).cast();
        // SAFETY: value points to a live T of len bytes.
        let rc = unsafe { libc::setsockopt(self.0.as_raw_fd(), level, name, ptr, len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn kernel() -> libc::sockaddr_nl {
        // SAFETY: sockaddr_nl is plain integers; all zero is valid (port 0 = the kernel).
        let mut addr: libc::sockaddr_nl = unsafe { zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr
    }

    /// Sends `bytes` as one datagram: the kernel takes a batch only whole.
    pub(super) fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // netlink refuses datagrams larger than the send buffer (212992 bytes by default).
        if bytes.len() > 128 * 1024 {
            let size = i32::try_from(bytes.len() + 4096).unwrap_or(i32::MAX);
            if self
                .set(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &size)
                .is_err()
            {
                self.set(libc::SOL_SOCKET, libc::SO_SNDBUF, &size)?;
            }
        }
        let addr = NfSocket::kernel();
        let addr_ptr = (&addr as *const libc::sockaddr_nl).cast();
        let addr_len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        loop {
            // SAFETY: bytes and addr are live for the call, with the lengths given.
            let n = unsafe {
                libc::sendto(
                    self.0.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    0,
                    addr_ptr,
                    addr_len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n as usize != bytes.len() {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "batch sent in part",
                ));
            }
            return Ok(());
        }
    }

    /// Receives one datagram from the kernel (others are dropped) into `buf`; its length.
    /// With `wait` false, returns WouldBlock when nothing is queued.
    pub(super) fn recv(&self, buf: &mut [u8], wait: bool) -> io::Result<usize> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        loop {
            let mut from = NfSocket::kernel();
            let mut from_len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: buf and from are live and writable for the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if from.nl_pid == 0 {
                return Ok(n as usize);
            }
        }
    }

    /// Discards answers left from an earlier batch that stopped reading at its first failure
    /// (and a pending ENOBUFS).
    pub(super) fn drain(&self, buf: &mut [u8]) {
        for _ in 0..1024 {
            match self.recv(buf, false) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(_) => return,
            }
        }
    }
}
