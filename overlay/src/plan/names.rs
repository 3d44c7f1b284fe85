//! Names and numbers every node derives the same way: link names, the anycast gateway MAC, MTU.

use std::net::IpAddr;

use super::MacAddr;

/// Every link shibafu owns in the host namespace starts with this; nothing else is touched.
pub const OWNED_PREFIX: &str = "sf";
/// Prefix of the host end of a container's veth pair.
pub const VETH_PREFIX: &str = "sfe";
/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// UDP port of the VXLAN devices (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// VXLAN encapsulation overhead over an IPv4 underlay: outer IPv4 20 + UDP 8 + VXLAN 8 + inner
/// Ethernet 14.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// VXLAN encapsulation overhead over an IPv6 underlay (outer header 40 instead of 20).
pub const VXLAN_OVERHEAD_V6: u32 = 70;

/// Is `name` an interface name the kernel takes (`dev_valid_name`): 1-15 bytes, not `.` or
/// `..`, no `/`, `:` or whitespace?
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

/// Is `name` a link shibafu owns (and may therefore change or delete)?
pub fn is_owned(name: &str) -> bool {
    name.starts_with(OWNED_PREFIX)
}

/// Name of the host end of the veth of endpoint `endpoint_id` on `network`: `sfe` + 12 hex digits
/// of a stable hash, so it fits IFNAMSIZ and is the same after an agent restart.
pub fn veth_host_name(network: &str, endpoint_id: &str) -> String {
    let h = fnv1a64(&[network.as_bytes(), b"/", endpoint_id.as_bytes()]);
    format!("{VETH_PREFIX}{:012x}", h & 0xffff_ffff_ffff)
}

/// The anycast gateway MAC of a network: the same on every node (`02:73:66` + 24-bit VNI), so a
/// container keeps a valid gateway neighbour entry whichever node answered.
pub fn gateway_mac(vni: u32) -> MacAddr {
    let v = vni.to_be_bytes();
    MacAddr([0x02, 0x73, 0x66, v[1], v[2], v[3]])
}

/// Overlay MTU: the network's own, else the underlay's minus the VXLAN overhead of its family.
pub fn overlay_mtu(network_mtu: Option<u32>, underlay_mtu: u32, underlay: Option<IpAddr>) -> u32 {
    let overhead = match underlay {
        Some(IpAddr::V6(_)) => VXLAN_OVERHEAD_V6,
        _ => VXLAN_OVERHEAD_V4,
    };
    network_mtu.unwrap_or_else(|| underlay_mtu.saturating_sub(overhead))
}

/// The lowest `ethN` not in `taken`: the name for a container's next interface.
pub fn next_ifname<'a>(taken: impl IntoIterator<Item = &'a str>) -> String {
    let taken: Vec<&str> = taken.into_iter().collect();
    (0u32..)
        .map(|i| format!("eth{i}"))
        .find(|n| !taken.contains(&n.as_str()))
        .unwrap_or_default()
}

fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_are_stable() {
        let a = veth_host_name("frontend", "node1-web");
        assert_eq!(a.len(), MAX_IFNAME);
        assert!(a.starts_with(VETH_PREFIX) && is_owned(&a));
        assert_eq!(a, veth_host_name("frontend", "node1-web"));
        assert_ne!(a, veth_host_name("backend", "node1-web"));
        assert_ne!(a, veth_host_name("frontend", "node1-api"));
        // The separator keeps "ab/c" and "a/bc" apart.
        assert_ne!(veth_host_name("ab", "c"), veth_host_name("a", "bc"));
    }

    #[test]
    fn gateway_mac_is_unicast_local_and_per_vni() {
        let m = gateway_mac(0x00_1000);
        assert_eq!(m.to_string(), "02:73:66:00:10:00");
        assert!(m.is_unicast());
        assert_eq!(m.0[0] & 2, 2, "locally administered");
        assert_ne!(gateway_mac(4096), gateway_mac(4097));
        assert_eq!(gateway_mac(0xff_ffff).to_string(), "02:73:66:ff:ff:ff");
    }

    #[test]
    fn mtu_rules() {
        let v4: IpAddr = "10.0.0.1".parse().expect("ip");
        let v6: IpAddr = "fd00::1".parse().expect("ip");
        assert_eq!(overlay_mtu(None, 1500, Some(v4)), 1450);
        assert_eq!(overlay_mtu(None, 1500, Some(v6)), 1430);
        assert_eq!(overlay_mtu(None, 9000, None), 8950);
        assert_eq!(overlay_mtu(Some(1400), 1500, Some(v4)), 1400);
    }

    #[test]
    fn next_ifname_fills_gaps() {
        assert_eq!(next_ifname([]), "eth0");
        assert_eq!(next_ifname(["eth0", "eth1"]), "eth2");
        assert_eq!(next_ifname(["eth1"]), "eth0");
        assert_eq!(next_ifname(["eth0", "eth2"]), "eth1");
    }
}
