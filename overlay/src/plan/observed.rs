//! What the kernel holds now, as far as shibafu is concerned (links named `sf*` and what hangs
//! off them, plus the container interfaces the desired state names).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::MacAddr;

/// Observed state of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedHost {
    /// Is IPv4 forwarding on in the host namespace?
    pub forwarding4: bool,
    /// Is IPv6 forwarding on in the host namespace?
    pub forwarding6: bool,
    /// Do bridged frames go through the host's iptables/nftables hooks (any br_netfilter
    /// `bridge-nf-call-*` sysctl on)? False when br_netfilter is not loaded.
    #[serde(default)]
    pub bridge_netfilter: bool,
    /// Host links whose names start with `sf`.
    pub links: Vec<ObservedLink>,
    /// FDB entries of the VXLAN devices (`self` entries with a destination).
    pub fdb: Vec<ObservedFdb>,
    /// Static bridge FDB entries on VXLAN ports (`master static`).
    pub port_fdb: Vec<ObservedPortFdb>,
    /// Permanent neighbour entries on shibafu bridges.
    pub neighbours: Vec<ObservedNeigh>,
    /// Container namespaces that were looked into.
    pub containers: Vec<ObservedContainer>,
}

/// Kind of a link, with what the plan compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkKind {
    /// A Linux bridge, with its per-bridge br_netfilter switches (`ip -d link` shows them as
    /// `nf_call_iptables` / `nf_call_ip6tables`): bridged frames of that family go through the
    /// inet hooks when the switch or the namespace's `bridge-nf-call-*` sysctl is on.
    Bridge {
        /// IFLA_BR_NF_CALL_IPTABLES: bridged IPv4 frames.
        nf_call_iptables: bool,
        /// IFLA_BR_NF_CALL_IP6TABLES: bridged IPv6 frames.
        nf_call_ip6tables: bool,
        /// IFLA_BR_MCAST_SNOOPING (the kernel's default is on): shibafu's bridges run without,
        /// see [`crate::plan::Op::DisableMulticastSnooping`].
        #[serde(default)]
        mcast_snooping: bool,
    },
    /// A VXLAN device.
    Vxlan {
        /// VNI.
        vni: u32,
        /// Local VTEP address.
        local: Option<IpAddr>,
        /// UDP port.
        port: u16,
        /// Source-MAC learning on the device.
        learning: bool,
    },
    /// One end of a veth pair.
    Veth,
    /// Anything else (kind as the kernel names it).
    Other(String),
}

/// Bridge-port options of a port link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortFlags {
    /// ARP/ND suppression.
    pub neigh_suppress: bool,
    /// Source-MAC learning.
    pub learning: bool,
}

/// A link (in the host namespace or in a container).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLink {
    /// Name.
    pub name: String,
    /// Interface index (in its namespace).
    pub index: u32,
    /// Kind.
    pub kind: LinkKind,
    /// MTU.
    pub mtu: u32,
    /// MAC address.
    pub mac: Option<MacAddr>,
    /// Administratively up?
    pub up: bool,
    /// Name of the bridge it is a port of.
    pub master: Option<String>,
    /// Bridge-port options, when it is a bridge port.
    pub port: Option<PortFlags>,
    /// Index of the peer (veth) or lower device, in the peer's namespace.
    pub peer_index: Option<u32>,
    /// Addresses, without IPv6 link-local ones.
    pub addresses: Vec<IpNet>,
}

/// A VXLAN FDB entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObservedFdb {
    /// VXLAN device.
    pub vxlan: String,
    /// MAC (all zeros = flooding entry).
    pub mac: MacAddr,
    /// Remote VTEP.
    pub vtep: IpAddr,
}

/// A static bridge FDB entry on a port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObservedPortFdb {
    /// The port.
    pub port: String,
    /// MAC.
    pub mac: MacAddr,
}

/// A permanent neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObservedNeigh {
    /// The bridge.
    pub bridge: String,
    /// Address.
    pub ip: IpAddr,
    /// MAC.
    pub mac: MacAddr,
}

/// What a container namespace holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedContainer {
    /// Namespace path.
    pub netns: PathBuf,
    /// Could the namespace be entered at all?
    pub reachable: bool,
    /// Its links (all of them: the plan looks them up by name).
    pub links: Vec<ObservedLink>,
    /// IPv4 default routes of the main table: (gateway, interface name).
    pub default4: Vec<(Ipv4Addr, String)>,
    /// IPv6 default routes of the main table: (gateway, interface name).
    pub default6: Vec<(Ipv6Addr, String)>,
}

impl ObservedHost {
    /// The host link named `name`.
    pub fn link(&self, name: &str) -> Option<&ObservedLink> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The observed container namespace at `netns` (the path as the plan spells it: compared
    /// as a string, not component by component, since a plan asks this for every endpoint).
    pub fn container(&self, netns: &Path) -> Option<&ObservedContainer> {
        self.containers
            .iter()
            .find(|c| c.netns.as_os_str() == netns.as_os_str())
    }
}

impl ObservedContainer {
    /// The interface named `name`.
    pub fn link(&self, name: &str) -> Option<&ObservedLink> {
        self.links.iter().find(|l| l.name == name)
    }
}
