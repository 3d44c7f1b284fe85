//! Packets with a forged source, as a process with `CAP_NET_RAW` can craft them (a raw IPv4
//! socket that writes its own header), and a sink that tells which sources reached it: the
//! tools of the source-guard tests (`shibafu-probe spoof`, `shibafu-probe sink`).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The payload every forged datagram carries.
pub const MARK: &[u8] = b"shibafu-spoof";

/// An IPv4 + UDP datagram from `src` to `dst:port` carrying [`MARK`] (the kernel fills the IP
/// checksum and length; the UDP checksum is left out, as IPv4 allows).
pub fn datagram(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let total = 20 + 8 + MARK.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let udp_len = (8 + MARK.len()) as u16;
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(MARK);
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p
}

/// Sends `count` forged datagrams from `src` to `dst:port` through a raw socket.
pub fn send(src: Ipv4Addr, dst: Ipv4Addr, port: u16, count: u32) -> std::io::Result<()> {
    // SAFETY: plain socket(2); the descriptor is owned below and closed on every path.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a socket this function opened and nothing else owns.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let packet = datagram(src, dst, port);
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    for _ in 0..count {
        // SAFETY: the buffer and address outlive the call; their lengths are given.
        let sent = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&owned),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                std::ptr::addr_of!(to).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Listens on UDP `port` for `secs` seconds; the distinct sources of datagrams carrying
/// [`MARK`], in the order first seen.
pub fn sink(port: u16, secs: u64) -> std::io::Result<Vec<Ipv4Addr>> {
    let s = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        if let Ok((n, SocketAddr::V4(from))) = s.recv_from(&mut buf) {
            if &buf[..n] == MARK && !seen.contains(from.ip()) {
                seen.push(*from.ip());
            }
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_has_the_forged_source_and_the_mark() {
        let p = datagram(
            Ipv4Addr::new(10, 9, 9, 9),
            Ipv4Addr::new(172, 21, 0, 3),
            9999,
        );
        assert_eq!(p.len(), 20 + 8 + MARK.len());
        assert_eq!(&p[12..16], &[10, 9, 9, 9]);
        assert_eq!(&p[16..20], &[172, 21, 0, 3]);
        assert_eq!(u16::from_be_bytes([p[22], p[23]]), 9999);
        assert_eq!(&p[28..], MARK);
    }
}
