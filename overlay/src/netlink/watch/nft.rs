//! nftables change notifications (NFNLGRP_NFTABLES), sorted into those that may have altered a
//! table's structure (tables, chains, rules, sets, objects) and those that only added or removed
//! set elements. An attach or detach changes the source guard's elements; checking the tables
//! after each of those would list sets of thousands of elements for nothing (the check looks at
//! the rules), so element-only transactions do not call for a check.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// nfnetlink's subsystem id of nf_tables (the high byte of a message type).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// nf_tables message types that change set elements only, or end a transaction.
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_DESTROYSETELEM: u16 = 30;
/// The size of a netlink message header.
const NLMSG_HDRLEN: usize = 16;

/// A netlink socket subscribed to nftables' change notifications (NFNLGRP_NFTABLES) in the
/// caller's namespace; [`next_nft_change`] blocks for the next one.
pub fn nft_events() -> std::io::Result<OwnedFd> {
    const NETLINK_NETFILTER: i32 = 12;
    const NFNLGRP_NFTABLES: u32 = 7;
    // SAFETY: socket(2) and bind(2) on a zeroed sockaddr_nl; the descriptor is owned at once.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = 1 << (NFNLGRP_NFTABLES - 1);
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        if libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// Blocks until the next nftables change notification on `fd`; true when it may have altered
/// more than set elements ([`beyond_elements`]). An overrun (ENOBUFS: changes came faster than
/// they were read) counts as such a change: what was lost is unknown.
pub fn next_nft_change(fd: &OwnedFd) -> std::io::Result<bool> {
    let mut buf = [0u8; 8192];
    // SAFETY: recv(2) into a buffer we own, bounded by its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOBUFS) {
            return Err(e);
        }
        return Ok(true);
    }
    Ok(beyond_elements(&buf[..n as usize]))
}

/// Does a datagram of notifications change anything but set elements? Only element messages
/// and the ends of transactions say no; anything unreadable (a short or malformed header, a
/// datagram cut off by the buffer) says yes.
pub fn beyond_elements(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    if rest.is_empty() {
        return true;
    }
    while !rest.is_empty() {
        let Some(header) = rest.get(..NLMSG_HDRLEN) else {
            return true;
        };
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        if len < NLMSG_HDRLEN || len > rest.len() || !elements_only(kind) {
            return true;
        }
        let aligned = (len + 3) & !3;
        rest = rest.get(aligned..).unwrap_or_default();
    }
    false
}

/// Is a message of this type a set element change or a transaction's end?
fn elements_only(kind: u16) -> bool {
    kind >> 8 == NFNL_SUBSYS_NFTABLES
        && matches!(
            kind & 0xff,
            NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM | NFT_MSG_NEWGEN | NFT_MSG_DESTROYSETELEM
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One nf_tables message of type `msg` with `payload` bytes after its header, padded.
    fn message(msg: u16, payload: usize) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload;
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.resize(len, 7);
        m.resize((len + 3) & !3, 0);
        m
    }

    #[test]
    fn element_changes_and_transaction_ends_call_for_no_check() {
        let attach: Vec<u8> = [
            message(NFT_MSG_NEWSETELEM, 41),
            message(NFT_MSG_NEWSETELEM, 60),
            message(NFT_MSG_NEWGEN, 30),
        ]
        .concat();
        assert!(!beyond_elements(&attach));
        assert!(!beyond_elements(&message(NFT_MSG_DELSETELEM, 8)));
        assert!(!beyond_elements(&message(NFT_MSG_DESTROYSETELEM, 8)));
    }

    #[test]
    fn a_table_chain_rule_or_set_change_calls_for_a_check() {
        const NEWTABLE: u16 = 0;
        const DELCHAIN: u16 = 5;
        const DELRULE: u16 = 8;
        const DELSET: u16 = 11;
        for msg in [NEWTABLE, DELCHAIN, DELRULE, DELSET] {
            let mixed = [message(NFT_MSG_DELSETELEM, 20), message(msg, 20)].concat();
            assert!(beyond_elements(&mixed), "type {msg}");
        }
    }

    #[test]
    fn anything_unreadable_calls_for_a_check() {
        let whole = message(NFT_MSG_NEWSETELEM, 40);
        assert!(beyond_elements(&[]), "empty");
        assert!(beyond_elements(&whole[..10]), "short header");
        assert!(beyond_elements(&whole[..30]), "cut off");
        let mut tiny = whole.clone();
        tiny[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(beyond_elements(&tiny), "length below a header");
        let mut other = whole;
        other[5] = 1;
        assert!(beyond_elements(&other), "another subsystem");
    }
}
