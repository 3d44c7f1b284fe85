//! The network spec and the one set of rules every network must pass, at creation (coordinator)
//! and before a node builds it (planner), so nothing the coordinator accepts can stop a node.

use crate::telemetry::Trace;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::{validate_name, validate_zone, ModelError, SCHEMA_VERSION, VNI_MAX, VNI_MIN};

/// Smallest MTU of a network (what Linux accepts on every link it uses).
pub const MIN_MTU: u32 = 576;
/// Smallest MTU of a network with an IPv6 subnet (IPv6 needs 1280).
pub const MIN_MTU_V6: u32 = 1280;
/// Largest MTU of a network.
pub const MAX_MTU: u32 = 9000;

/// A network spec: one L2 segment spanning every node, with its own DNS zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Schema version.
    pub schema: u32,
    /// Unique name, a DNS label.
    pub name: String,
    /// IPv4 subnet; the gateway is its first address.
    pub subnet: Ipv4Net,
    /// Optional IPv6 subnet; the gateway is its first address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// VXLAN network identifier, unique in the cluster.
    pub vni: u32,
    /// DNS zone of this network (default `<name>.local`).
    pub zone: String,
    /// MTU of the overlay; `None` = underlay MTU - 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Internal networks have no route out of the cluster.
    #[serde(default)]
    pub internal: bool,
    /// Upstream DNS servers for names outside the zone (before the node's upstreams).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarders: Vec<SocketAddr>,
    /// `strict`: only the network's own endpoints (and peers a policy allows) may open
    /// connections to its endpoints, as if a policy allowed ingress from the network itself.
    #[serde(default, skip_serializing_if = "Isolation::is_none")]
    pub isolation: Isolation,
    /// Traffic between nodes is carried inside WireGuard (`--encrypted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// The trace context of the change that wrote this value (W3C `traceparent`), so watchers
    /// continue that trace; absent in values written without tracing.
    #[serde(default, skip_serializing_if = "Trace::is_none")]
    pub trace: Trace,
}

/// How a network is isolated beyond its policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Today's rules: other networks reach it only when linked (or a policy allows).
    #[default]
    None,
    /// Ingress only from the network itself, links notwithstanding, unless a policy allows.
    Strict,
}

impl Isolation {
    /// True for the default.
    pub fn is_none(&self) -> bool {
        *self == Isolation::None
    }
}

impl std::str::FromStr for Isolation {
    type Err = String;

    fn from_str(s: &str) -> Result<Isolation, String> {
        match s {
            "none" => Ok(Isolation::None),
            "strict" => Ok(Isolation::Strict),
            other => Err(format!("unknown isolation {other:?} (none, strict)")),
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::None => "none",
            Isolation::Strict => "strict",
        })
    }
}

impl Network {
    /// A network with the defaults of `shibafu network create`: zone `<name>.local`, no IPv6,
    /// the MTU from the underlay, not internal, no forwarders of its own.
    pub fn new(name: &str, subnet: Ipv4Net, vni: u32) -> Network {
        Network {
            schema: SCHEMA_VERSION,
            name: name.to_string(),
            subnet,
            subnet6: None,
            vni,
            zone: format!("{name}.local"),
            mtu: None,
            internal: false,
            forwarders: Vec::new(),
            isolation: Isolation::None,
            encrypted: false,
            trace: Trace::NONE,
        }
    }

    /// The IPv4 gateway (first address of the subnet); also the network's DNS server.
    pub fn gateway(&self) -> Ipv4Addr {
        first_host_v4(&self.subnet)
    }

    /// The IPv6 gateway, when the network has an IPv6 subnet.
    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        self.subnet6.as_ref().map(first_host_v6)
    }

    /// Name of this network's bridge on every node (fits IFNAMSIZ).
    pub fn bridge_name(&self) -> String {
        format!("sfbr{:x}", self.vni)
    }

    /// Name of this network's VXLAN device on every node (fits IFNAMSIZ).
    pub fn vxlan_name(&self) -> String {
        format!("sfvx{:x}", self.vni)
    }

    /// Checks every field; used before anything is written.
    pub fn validate(&self) -> Result<(), ModelError> {
        validate_name(&self.name)?;
        validate_zone(&self.zone)?;
        validate_subnet_v4(&self.subnet)?;
        if let Some(s6) = &self.subnet6 {
            validate_subnet_v6(s6)?;
        }
        if !(VNI_MIN..=VNI_MAX).contains(&self.vni) {
            return Err(ModelError::InvalidVni(self.vni));
        }
        if let Some(mtu) = self.mtu {
            check_mtu(mtu, self.min_mtu())?;
        }
        Ok(())
    }

    /// The smallest MTU this network works with: 1280 with IPv6, else 576.
    pub fn min_mtu(&self) -> u32 {
        if self.subnet6.is_some() {
            MIN_MTU_V6
        } else {
            MIN_MTU
        }
    }
}

/// Checks an MTU against `min` (the network's minimum) and [`MAX_MTU`].
pub fn check_mtu(mtu: u32, min: u32) -> Result<(), ModelError> {
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(ModelError::InvalidMtu(mtu));
    }
    if mtu < min {
        return Err(ModelError::MtuTooSmallForIpv6 { mtu, min });
    }
    Ok(())
}

/// First usable address of an IPv4 subnet (the gateway).
pub fn first_host_v4(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// First usable address of an IPv6 subnet (the gateway).
pub fn first_host_v6(net: &Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()) + 1)
}

/// Checks an IPv4 subnet: no host bits, at least /29.
pub fn validate_subnet_v4(net: &Ipv4Net) -> Result<(), ModelError> {
    if net.addr() != net.network() {
        return Err(ModelError::HostBitsSet {
            given: net.to_string(),
            network: net.trunc().to_string(),
        });
    }
    if net.prefix_len() > 29 {
        return Err(ModelError::SubnetTooSmall(net.to_string()));
    }
    Ok(())
}

/// Checks an IPv6 subnet: no host bits, at least /125.
pub fn validate_subnet_v6(net: &Ipv6Net) -> Result<(), ModelError> {
    if net.addr() != net.network() {
        return Err(ModelError::HostBitsSet {
            given: net.to_string(),
            network: net.trunc().to_string(),
        });
    }
    if net.prefix_len() > 125 {
        return Err(ModelError::SubnetTooSmall(net.to_string()));
    }
    Ok(())
}

/// How a network clashes with another network of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Same name.
    #[error("network {name:?} already exists ({subnet})")]
    Name {
        /// The name.
        name: String,
        /// The existing network's subnet.
        subnet: Ipv4Net,
    },
    /// IPv4 subnets share addresses.
    #[error("network {name:?}: subnet {subnet} overlaps network {other:?} ({other_subnet})")]
    Subnet {
        /// This network.
        name: String,
        /// Its subnet.
        subnet: Ipv4Net,
        /// The other network.
        other: String,
        /// Its subnet.
        other_subnet: Ipv4Net,
    },
    /// IPv6 subnets share addresses.
    #[error("network {name:?}: subnet6 {subnet} overlaps network {other:?} ({other_subnet})")]
    Subnet6 {
        /// This network.
        name: String,
        /// Its IPv6 subnet.
        subnet: Ipv6Net,
        /// The other network.
        other: String,
        /// Its IPv6 subnet.
        other_subnet: Ipv6Net,
    },
    /// Same DNS zone.
    #[error(
        "network {name:?}: zone {zone:?} is already used by network {other:?}; choose another zone"
    )]
    Zone {
        /// This network.
        name: String,
        /// The zone.
        zone: String,
        /// The other network.
        other: String,
    },
    /// Same VNI.
    #[error("network {name:?}: VNI {vni} is already used by network {other:?}")]
    Vni {
        /// This network.
        name: String,
        /// The VNI.
        vni: u32,
        /// The other network.
        other: String,
    },
}

impl Network {
    /// The first way this network clashes with `other` (name, subnets, zone, VNI), if any.
    pub fn conflict_with(&self, other: &Network) -> Option<Conflict> {
        let name = self.name.clone();
        if other.name == self.name {
            return Some(Conflict::Name {
                name,
                subnet: other.subnet,
            });
        }
        if overlaps_v4(&self.subnet, &other.subnet) {
            return Some(Conflict::Subnet {
                name,
                subnet: self.subnet,
                other: other.name.clone(),
                other_subnet: other.subnet,
            });
        }
        if let (Some(a), Some(b)) = (self.subnet6, other.subnet6) {
            if overlaps_v6(&a, &b) {
                return Some(Conflict::Subnet6 {
                    name,
                    subnet: a,
                    other: other.name.clone(),
                    other_subnet: b,
                });
            }
        }
        if other.zone == self.zone {
            return Some(Conflict::Zone {
                name,
                zone: self.zone.clone(),
                other: other.name.clone(),
            });
        }
        (other.vni == self.vni).then(|| Conflict::Vni {
            name,
            vni: self.vni,
            other: other.name.clone(),
        })
    }
}

/// Do two IPv4 subnets share an address?
pub fn overlaps_v4(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Do two IPv6 subnets share an address?
pub fn overlaps_v6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The networks of a cluster that may be used, in name order, and those that may not, with the
/// reason: each must pass [`Network::validate`] and clash with no network before it (of two that
/// clash, the one whose name sorts first is used). Every node and coordinator decides alike.
pub fn admit<'a>(
    networks: impl IntoIterator<Item = &'a Network>,
) -> (Vec<&'a Network>, Vec<(String, String)>) {
    let mut sorted: Vec<&Network> = networks.into_iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ok: Vec<&Network> = Vec::new();
    let mut refused = Vec::new();
    for net in sorted {
        if let Err(e) = net.validate() {
            refused.push((net.name.clone(), format!("invalid network spec: {e}")));
        } else if let Some(c) = ok.iter().find_map(|used| net.conflict_with(used)) {
            refused.push((
                net.name.clone(),
                format!("{c}; remove one of the two networks"),
            ));
        } else {
            ok.push(net);
        }
    }
    (ok, refused)
}
