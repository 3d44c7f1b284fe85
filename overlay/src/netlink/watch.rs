//! Kernel events that may mean someone undid what the dataplane built (a bridge, VXLAN device or
//! veth deleted, an address removed, a static FDB entry or permanent neighbour deleted), and of
//! nftables changes ([`nft`]); the agent repairs on them within moments instead of at its next
//! resync.
//! Only deletions count: creations and updates are what the agent itself does all the time, and
//! learned entries that age out (dynamic neighbours, learned FDB) are not damage.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{new_multicast_connection, MulticastGroup};
use tokio::sync::mpsc::UnboundedSender;

use super::NetlinkError;
use crate::plan::is_owned;

pub mod nft;

const NUD_PERMANENT: u16 = 0x80;
const NUD_NOARP: u16 = 0x40;

/// Something shibafu built that the kernel reports gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// A shibafu link (bridge, VXLAN device, host end of a veth) was deleted.
    Link(String),
    /// An address was removed from a shibafu link (the link's name when the kernel gives it).
    Address(Option<String>, IpAddr),
    /// A static FDB entry or permanent neighbour entry was deleted.
    Neighbour,
    /// The kernel dropped events (the socket overran): anything may be gone.
    Lost,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Link(name) => write!(f, "link {name} deleted"),
            Damage::Address(Some(link), a) => write!(f, "address {a} removed from {link}"),
            Damage::Address(None, a) => write!(f, "address {a} removed"),
            Damage::Neighbour => write!(f, "a static FDB or neighbour entry deleted"),
            Damage::Lost => write!(f, "kernel events lost (socket overrun)"),
        }
    }
}

/// The damage one route-netlink event reports, if any (pure).
pub fn damage(msg: &RouteNetlinkMessage) -> Option<Damage> {
    match msg {
        RouteNetlinkMessage::DelLink(l) => l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) if is_owned(n) => Some(Damage::Link(n.clone())),
            _ => None,
        }),
        RouteNetlinkMessage::DelAddress(a) => address_damage(a),
        RouteNetlinkMessage::DelNeighbour(n) => neighbour_damage(n),
        _ => None,
    }
}

fn address_damage(m: &AddressMessage) -> Option<Damage> {
    let mut label = None;
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Label(l) => label = Some(l.clone()),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    let addr = addr?;
    // The kernel's own link-local addresses come and go with the links.
    if let IpAddr::V6(v6) = addr {
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            return None;
        }
    }
    match label {
        Some(l) if is_owned(&l) => Some(Damage::Address(Some(l), addr)),
        Some(_) => None,
        // IPv6 addresses carry no label: shibafu's are the gateways on its bridges.
        None => Some(Damage::Address(None, addr)),
    }
}

fn neighbour_damage(m: &NeighbourMessage) -> Option<Damage> {
    let state = u16::from(m.header.state);
    (state & (NUD_PERMANENT | NUD_NOARP) != 0).then_some(Damage::Neighbour)
}

/// Sends every damage the kernel reports in the caller's namespace to `tx` until `tx` closes
/// (`Ok`) or the socket stops delivering (an error: the caller should start it again).
pub async fn watch(tx: UnboundedSender<Damage>) -> Result<(), NetlinkError> {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Neigh,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ];
    let (mut conn, _handle, mut messages) =
        new_multicast_connection(&groups).map_err(NetlinkError::Socket)?;
    enlarge_receive_buffer(conn.socket_mut().socket_ref().as_raw_fd());
    let task = tokio::spawn(conn);
    while let Some((msg, _)) = messages.next().await {
        let found = match msg.payload {
            NetlinkPayload::InnerMessage(m) => damage(&m),
            NetlinkPayload::Overrun(_) => Some(Damage::Lost),
            _ => None,
        };
        if let Some(d) = found {
            if tx.send(d).is_err() {
                task.abort();
                return Ok(());
            }
        }
    }
    task.abort();
    Err(NetlinkError::Socket(std::io::Error::other(
        "the kernel event stream ended",
    )))
}

/// The damage watcher's receive buffer. Every change on the node is an event (a container's
/// attach makes a dozen), most of them not damage, read on the agent's busy thread: with the
/// default buffer (208 KiB) a stream of attaches onto a bridge of 1,000 ports overran it, and
/// an overrun means anything may be gone, so a repair of everything (150 ms).
const WATCH_RCVBUF: libc::c_int = 8 << 20;

/// Gives the socket `fd` [`WATCH_RCVBUF`] bytes of receive buffer (past the host's
/// `rmem_max` where allowed: the agent holds CAP_NET_ADMIN); a refusal keeps the default.
fn enlarge_receive_buffer(fd: RawFd) {
    let size = WATCH_RCVBUF;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt(2) on a socket we hold, reading one c_int we own.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                std::ptr::addr_of!(size).cast(),
                len,
            )
        };
        if r == 0 {
            return;
        }
    }
    tracing::debug!(error = %std::io::Error::last_os_error(), "kernel event buffer left at its default");
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::link::LinkMessage;
    use rtnetlink::packet_route::neighbour::NeighbourState;

    use super::*;

    fn link(name: &str) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.attributes.push(LinkAttribute::IfName(name.into()));
        l
    }

    fn addr(label: Option<&str>, ip: &str) -> AddressMessage {
        let mut a = AddressMessage::default();
        a.attributes
            .push(AddressAttribute::Address(ip.parse().expect("ip")));
        if let Some(l) = label {
            a.attributes.push(AddressAttribute::Label(l.into()));
        }
        a
    }

    fn neigh(state: NeighbourState) -> NeighbourMessage {
        let mut n = NeighbourMessage::default();
        n.header.state = state;
        n
    }

    #[test]
    fn only_deletions_of_what_shibafu_built_count() {
        use RouteNetlinkMessage as M;
        assert_eq!(
            damage(&M::DelLink(link("sfbr1000"))),
            Some(Damage::Link("sfbr1000".into()))
        );
        assert_eq!(damage(&M::DelLink(link("eth0"))), None, "not ours");
        assert_eq!(
            damage(&M::NewLink(link("sfbr1000"))),
            None,
            "not a deletion"
        );
        assert_eq!(
            damage(&M::DelAddress(addr(Some("sfbr1000"), "10.88.1.1"))),
            Some(Damage::Address(
                Some("sfbr1000".into()),
                "10.88.1.1".parse().expect("ip")
            ))
        );
        assert_eq!(damage(&M::DelAddress(addr(Some("eth0"), "10.0.0.5"))), None);
        assert_eq!(
            damage(&M::DelAddress(addr(None, "fe80::1"))),
            None,
            "link-local"
        );
        assert!(damage(&M::DelAddress(addr(None, "fd00:21::1"))).is_some());
        assert_eq!(
            damage(&M::DelNeighbour(neigh(NeighbourState::Permanent))),
            Some(Damage::Neighbour)
        );
        assert_eq!(
            damage(&M::DelNeighbour(neigh(NeighbourState::Noarp))),
            Some(Damage::Neighbour)
        );
        assert_eq!(
            damage(&M::DelNeighbour(neigh(NeighbourState::Stale))),
            None,
            "aged out"
        );
        assert_eq!(
            damage(&M::DelNeighbour(neigh(NeighbourState::Reachable))),
            None
        );
    }
}
