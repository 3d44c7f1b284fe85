//! The operations a plan is made of: small, self-contained kernel changes, applied in order.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::MacAddr;

/// Where a link lives: the host namespace or a container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LinkRef {
    /// A link in the host namespace (the one the dataplane manages).
    Host(String),
    /// An interface inside a container's network namespace.
    Container {
        /// Path of the namespace (`/run/netns/x`, `/proc/<pid>/ns/net`, ...).
        netns: PathBuf,
        /// Interface name inside it (`eth0`).
        name: String,
    },
}

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkRef::Host(n) => write!(f, "{n}"),
            LinkRef::Container { netns, name } => write!(f, "{name} in {}", netns.display()),
        }
    }
}

/// IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// One kernel change. Ops name links, never interface indexes, so a plan stays valid across
/// the deletes and creates before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Turn on IP forwarding of a family in the host namespace (the gateways route).
    EnableForwarding(IpFamily),
    /// Keep bridged frames out of the host's iptables/nftables hooks (br_netfilter sysctls 0).
    DisableBridgeNetfilter,
    /// Delete a host link (a veth takes its container end with it).
    DeleteLink(String),
    /// Create a bridge with the anycast gateway MAC, down.
    CreateBridge {
        /// Bridge name.
        name: String,
        /// Its MAC (the network's anycast gateway MAC).
        mac: MacAddr,
        /// MTU.
        mtu: u32,
    },
    /// Create a VXLAN device without learning and without a default destination, down.
    CreateVxlan {
        /// Device name.
        name: String,
        /// VXLAN network identifier.
        vni: u32,
        /// Local VTEP address (the node's underlay address); `None` = chosen by route.
        local: Option<IpAddr>,
        /// UDP destination port.
        port: u16,
        /// MTU.
        mtu: u32,
    },
    /// Create a veth pair whose peer is born inside the container namespace, down.
    CreateVeth {
        /// Host end name.
        host: String,
        /// Container namespace path.
        netns: PathBuf,
        /// Interface name inside the container.
        peer: String,
        /// MAC of the container end.
        peer_mac: MacAddr,
        /// MAC of the host end: its bridge's own, so the bridge keeps no forwarding entry of
        /// its own per port (and walks none when the next port comes).
        host_mac: MacAddr,
        /// MTU of both ends.
        mtu: u32,
        /// The container end keeps IPv6 (its network has IPv6). Otherwise it gets no IPv6
        /// link-local address; the host end takes no part in IPv6 either way: see the netlink
        /// backend.
        peer_ipv6: bool,
    },
    /// Turn a bridge's own br_netfilter switches (`nf_call_iptables` and `nf_call_ip6tables`)
    /// on or off: with them on, its bridged frames go through the inet hooks even while the
    /// host's `bridge-nf-call-*` sysctls are 0. Ports, addresses and FDB are left as they are.
    SetBridgeNetfilter {
        /// Bridge name.
        name: String,
        /// Both switches on (a policed network) or off.
        on: bool,
    },
    /// Turn a bridge's multicast snooping off. Nothing on a shibafu bridge queries for groups
    /// (no IGMP/MLD querier), so the bridge floods multicast either way; snooping only costs:
    /// the kernel walks its ports for it on every port added, and parses every container's
    /// reports. New bridges are created without it; this fixes one that has it.
    DisableMulticastSnooping {
        /// Bridge name.
        name: String,
    },
    /// Set a link's MTU.
    SetMtu {
        /// The link.
        link: LinkRef,
        /// New MTU.
        mtu: u32,
    },
    /// Set a link's MAC address.
    SetMac {
        /// The link.
        link: LinkRef,
        /// New MAC.
        mac: MacAddr,
    },
    /// Bring a link up.
    SetUp(LinkRef),
    /// Enslave a host link to a bridge.
    SetMaster {
        /// The port.
        name: String,
        /// The bridge.
        master: String,
    },
    /// Set bridge-port options of the VXLAN port: ARP/ND suppression on, learning off.
    SetPortFlags {
        /// The port.
        name: String,
        /// `neigh_suppress`: the bridge answers ARP/ND for MACs behind this port itself.
        neigh_suppress: bool,
        /// `learning`: learn source MACs arriving on this port.
        learning: bool,
    },
    /// Add an address (with prefix) to a link.
    AddAddress {
        /// The link.
        link: LinkRef,
        /// Address and prefix length.
        addr: IpNet,
    },
    /// Remove an address from a link.
    DelAddress {
        /// The link.
        link: LinkRef,
        /// Address and prefix length.
        addr: IpNet,
    },
    /// Install (or replace) the default route of a family via a gateway on a container link.
    SetDefaultRoute {
        /// The container interface.
        link: LinkRef,
        /// Next hop.
        gateway: IpAddr,
    },
    /// Add a VXLAN FDB entry (`bridge fdb add MAC dev VX dst VTEP self permanent`).
    AddFdb {
        /// VXLAN device.
        vxlan: String,
        /// Remote MAC.
        mac: MacAddr,
        /// Remote VTEP.
        vtep: IpAddr,
    },
    /// Remove a VXLAN FDB entry.
    DelFdb {
        /// VXLAN device.
        vxlan: String,
        /// MAC of the entry.
        mac: MacAddr,
        /// Destination of the entry.
        vtep: IpAddr,
    },
    /// Add a static bridge FDB entry pointing a MAC at a port (`... master static`).
    AddPortFdb {
        /// The bridge port (the VXLAN device).
        port: String,
        /// Remote MAC.
        mac: MacAddr,
    },
    /// Remove a static bridge FDB entry.
    DelPortFdb {
        /// The bridge port.
        port: String,
        /// MAC of the entry.
        mac: MacAddr,
    },
    /// Add or replace a permanent neighbour entry on a bridge (answers ARP/ND via suppression).
    SetNeigh {
        /// The bridge.
        bridge: String,
        /// Remote endpoint address.
        ip: IpAddr,
        /// Its MAC.
        mac: MacAddr,
    },
    /// Remove a permanent neighbour entry from a bridge.
    DelNeigh {
        /// The bridge.
        bridge: String,
        /// Address of the entry.
        ip: IpAddr,
    },
}

impl Op {
    /// Is this a delete (teardown keeps going past failed deletes)?
    pub fn is_delete(&self) -> bool {
        matches!(
            self,
            Op::DeleteLink(_)
                | Op::DelAddress { .. }
                | Op::DelFdb { .. }
                | Op::DelPortFdb { .. }
                | Op::DelNeigh { .. }
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::EnableForwarding(fam) => write!(f, "enable {fam:?} forwarding"),
            Op::DisableBridgeNetfilter => write!(f, "stop netfilter calls for bridged frames"),
            Op::DeleteLink(n) => write!(f, "delete link {n}"),
            Op::CreateBridge { name, mac, mtu } => {
                write!(f, "create bridge {name} (mac {mac}, mtu {mtu})")
            }
            Op::CreateVxlan {
                name,
                vni,
                local,
                port,
                mtu,
            } => {
                let local = local.map_or("by route".to_string(), |l| l.to_string());
                write!(
                    f,
                    "create vxlan {name} (vni {vni}, local {local}, port {port}, mtu {mtu})"
                )
            }
            Op::CreateVeth {
                host,
                netns,
                peer,
                peer_mac,
                host_mac,
                mtu,
                peer_ipv6,
            } => write!(
                f,
                "create veth {host} <-> {peer} in {} (mac {peer_mac}, host end {host_mac}, mtu {mtu}{})",
                netns.display(),
                if *peer_ipv6 { "" } else { ", IPv4 only" }
            ),
            Op::SetBridgeNetfilter { name, on } => {
                let v = u8::from(*on);
                write!(
                    f,
                    "set nf_call_iptables {v} nf_call_ip6tables {v} on bridge {name}"
                )
            }
            Op::DisableMulticastSnooping { name } => {
                write!(f, "set mcast_snooping 0 on bridge {name}")
            }
            Op::SetMtu { link, mtu } => write!(f, "set mtu of {link} to {mtu}"),
            Op::SetMac { link, mac } => write!(f, "set mac of {link} to {mac}"),
            Op::SetUp(link) => write!(f, "set {link} up"),
            Op::SetMaster { name, master } => write!(f, "attach {name} to {master}"),
            Op::SetPortFlags {
                name,
                neigh_suppress,
                learning,
            } => write!(
                f,
                "set port {name} neigh_suppress {neigh_suppress} learning {learning}"
            ),
            Op::AddAddress { link, addr } => write!(f, "add address {addr} to {link}"),
            Op::DelAddress { link, addr } => write!(f, "remove address {addr} from {link}"),
            Op::SetDefaultRoute { link, gateway } => {
                write!(f, "set default route via {gateway} on {link}")
            }
            Op::AddFdb { vxlan, mac, vtep } => write!(f, "add fdb {mac} dst {vtep} on {vxlan}"),
            Op::DelFdb { vxlan, mac, vtep } => {
                write!(f, "remove fdb {mac} dst {vtep} from {vxlan}")
            }
            Op::AddPortFdb { port, mac } => write!(f, "add bridge fdb {mac} on port {port}"),
            Op::DelPortFdb { port, mac } => write!(f, "remove bridge fdb {mac} from port {port}"),
            Op::SetNeigh { bridge, ip, mac } => {
                write!(f, "set neighbour {ip} -> {mac} on {bridge}")
            }
            Op::DelNeigh { bridge, ip } => write!(f, "remove neighbour {ip} from {bridge}"),
        }
    }
}
