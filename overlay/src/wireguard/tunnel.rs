//! Numbers every node derives the same way for the encrypted overlay (pure): tunnel addresses,
//! the WireGuard port, MTUs, and which traffic is encrypted.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use crate::model::{Network, Node};
use crate::plan::VXLAN_OVERHEAD_V4;

/// UDP port of WireGuard devices when `--wg-port` does not say otherwise (IANA-registered).
pub const DEFAULT_PORT: u16 = 51820;
/// WireGuard's overhead over an IPv4 underlay: outer IPv4 20 + UDP 8 + WireGuard header 16 +
/// authentication tag 16.
pub const WG_OVERHEAD_V4: u32 = 60;
/// WireGuard's overhead over an IPv6 underlay (outer header 40 instead of 20).
pub const WG_OVERHEAD_V6: u32 = 80;
/// Persistent keepalive toward every peer (seconds): a live tunnel handshakes at least every
/// two minutes, so a stale handshake means a peer that is gone.
pub const KEEPALIVE_SECS: u16 = 25;

/// The range tunnel addresses come from (RFC 6598 shared space); one node holds one address.
pub fn tunnel_range() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).unwrap_or_default()
}

/// Candidate `attempt` for `node`'s tunnel address: a hash of its name into the range, never
/// the range's first or last address.
pub fn tunnel_candidate(node: &str, attempt: u32) -> Ipv4Addr {
    let range = tunnel_range();
    let hosts = (1u64 << (32 - range.prefix_len())) - 2;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain(attempt.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let offset = 1 + (h % hosts) as u32;
    Ipv4Addr::from(u32::from(range.network()) + offset)
}

/// `node`'s tunnel address: `kept` (from its state directory) unless a node whose name sorts
/// first holds it too (of two nodes on one address the first name keeps it, so both agree),
/// else the first candidate no other node in `nodes` holds.
pub fn choose_tunnel(node: &str, kept: Option<Ipv4Addr>, nodes: &[Node]) -> Ipv4Addr {
    // Each address with the first name among its holders.
    let mut taken: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.name != node) {
        if let Some(w) = &n.wg {
            let holder = taken.entry(w.tunnel).or_insert(n.name.as_str());
            *holder = (*holder).min(n.name.as_str());
        }
    }
    let keeps = |k: &Ipv4Addr| taken.get(k).is_none_or(|holder| *holder > node);
    if let Some(k) = kept.filter(|k| tunnel_range().contains(k) && keeps(k)) {
        return k;
    }
    (0..)
        .map(|i| tunnel_candidate(node, i))
        .find(|a| !taken.contains_key(a))
        .unwrap_or_else(|| tunnel_candidate(node, 0))
}

/// MTU of the WireGuard device: the underlay's minus WireGuard's overhead of its family.
pub fn device_mtu(underlay_mtu: u32, underlay: IpAddr) -> u32 {
    let overhead = match underlay {
        IpAddr::V4(_) => WG_OVERHEAD_V4,
        IpAddr::V6(_) => WG_OVERHEAD_V6,
    };
    underlay_mtu.saturating_sub(overhead)
}

/// Overlay MTU of a network whose VXLAN runs inside the tunnels (between IPv4 tunnel
/// addresses): the device's minus the VXLAN overhead.
pub fn encrypted_overlay_mtu(underlay_mtu: u32, underlay: IpAddr) -> u32 {
    device_mtu(underlay_mtu, underlay).saturating_sub(VXLAN_OVERHEAD_V4)
}

/// Is traffic of `net` between this node (`mine`: it encrypts everything) and `peer` carried
/// inside WireGuard? When the network is encrypted or either node encrypts everything; both
/// ends decide the same.
pub fn pair_encrypted(net: &Network, mine: bool, peer: &Node) -> bool {
    net.encrypted || mine || encrypts_all(peer)
}

/// Does `node` encrypt every network (`--encrypt-all`)?
pub fn encrypts_all(node: &Node) -> bool {
    node.wg.as_ref().is_some_and(|w| w.encrypt_all)
}

/// Does `net` send any traffic through the tunnels on this node (`mine`: it encrypts
/// everything), given the live `nodes`?
pub fn involves_tunnels(net: &Network, mine: bool, nodes: &[Node]) -> bool {
    net.encrypted || mine || nodes.iter().any(encrypts_all)
}

/// Does this cluster need WireGuard devices at all: an encrypted network, or a node that
/// encrypts everything?
pub fn tunnels_needed(networks: &[Network], nodes: &[Node], me: &Node) -> bool {
    networks.iter().any(|n| n.encrypted) || encrypts_all(me) || nodes.iter().any(encrypts_all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeWireGuard, SCHEMA_VERSION};

    fn node(name: &str, tunnel: Option<Ipv4Addr>, all: bool) -> Node {
        Node {
            schema: SCHEMA_VERSION,
            name: name.into(),
            underlay: "10.0.0.1".parse().expect("ip"),
            version: "t".into(),
            wg: tunnel.map(|tunnel| NodeWireGuard {
                public_key: "k".into(),
                port: DEFAULT_PORT,
                tunnel,
                next_key: None,
                encrypt_all: all,
            }),
            started_at: 0,
        }
    }

    #[test]
    fn tunnel_addresses_are_stable_in_range_and_avoid_taken_ones() {
        let a = tunnel_candidate("node1", 0);
        assert_eq!(a, tunnel_candidate("node1", 0));
        assert!(tunnel_range().contains(&a));
        assert_ne!(a, tunnel_range().network());
        assert_ne!(a, tunnel_range().broadcast());
        assert_ne!(a, tunnel_candidate("node2", 0));
        assert_eq!(choose_tunnel("node1", None, &[]), a);
        // Another node holding the candidate pushes this one to the next.
        let other = node("node0", Some(a), false);
        let b = choose_tunnel("node1", None, std::slice::from_ref(&other));
        assert_eq!(b, tunnel_candidate("node1", 1));
        // A kept address stays unless someone else holds it; one outside the range is dropped.
        let kept: Ipv4Addr = "100.64.9.9".parse().expect("ip");
        assert_eq!(choose_tunnel("node1", Some(kept), &[]), kept);
        assert_eq!(
            choose_tunnel("node1", Some(a), std::slice::from_ref(&other)),
            b
        );
        // Of two nodes on one address, the first name keeps it; of three, too.
        assert_eq!(
            choose_tunnel("a-first", Some(a), std::slice::from_ref(&other)),
            a
        );
        let last = node("zz", Some(a), false);
        assert_eq!(choose_tunnel("node1", Some(a), &[last.clone(), other]), b);
        assert_eq!(choose_tunnel("a-first", Some(a), &[last]), a);
        assert_eq!(
            choose_tunnel("node1", Some("10.0.0.1".parse().expect("ip")), &[]),
            a
        );
        // This node's own record does not count as taken.
        assert_eq!(
            choose_tunnel("node1", Some(kept), &[node("node1", Some(kept), false)]),
            kept
        );
    }

    #[test]
    fn mtus_follow_the_underlay_family() {
        let v4: IpAddr = "10.0.0.1".parse().expect("ip");
        let v6: IpAddr = "fd00::1".parse().expect("ip");
        assert_eq!(device_mtu(1500, v4), 1440);
        assert_eq!(device_mtu(1500, v6), 1420);
        assert_eq!(encrypted_overlay_mtu(1500, v4), 1390);
        assert_eq!(encrypted_overlay_mtu(9000, v6), 8870);
    }

    #[test]
    fn a_pair_is_encrypted_by_the_network_or_either_node() {
        let mut net = Network::new("n", "10.1.0.0/24".parse().expect("net"), 4096);
        let (a, b, all) = (
            node("a", None, false),
            node("b", Some("100.64.0.2".parse().expect("ip")), false),
            node("c", Some("100.64.0.3".parse().expect("ip")), true),
        );
        assert!(!pair_encrypted(&net, encrypts_all(&a), &b));
        assert!(pair_encrypted(&net, encrypts_all(&a), &all));
        assert!(pair_encrypted(&net, encrypts_all(&all), &b));
        assert!(!involves_tunnels(
            &net,
            encrypts_all(&a),
            std::slice::from_ref(&b)
        ));
        assert!(involves_tunnels(
            &net,
            encrypts_all(&a),
            &[b.clone(), all.clone()]
        ));
        assert!(!tunnels_needed(
            std::slice::from_ref(&net),
            std::slice::from_ref(&b),
            &a
        ));
        net.encrypted = true;
        assert!(pair_encrypted(&net, encrypts_all(&a), &b));
        assert!(tunnels_needed(&[net], &[], &a));
    }
}
