//! The cluster state schema stored in etcd (v1): networks, nodes, endpoints, links, IPAM blocks.
//!
//! Every value carries `schema` (the schema version). Validation lives here so the coordinator,
//! the agent and the CLI reject the same bad input with the same message.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Schema version written into every stored value.
pub const SCHEMA_VERSION: u32 = 1;

/// Lowest VNI handed to a network (small VNIs are left to hand-built overlays).
pub const VNI_MIN: u32 = 4096;
/// Highest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// Errors of model validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// A name that is not a valid DNS label.
    #[error("invalid name {0:?}: use 1-63 lowercase letters, digits or '-', not starting or ending with '-'")]
    InvalidName(String),
    /// A zone that is not a valid DNS name.
    #[error("invalid zone {0:?}: use dot-separated DNS labels")]
    InvalidZone(String),
    /// A subnet whose prefix leaves no room for a gateway and endpoints.
    #[error("subnet {0} is too small: use a prefix of /29 or shorter for IPv4, /125 or shorter for IPv6")]
    SubnetTooSmall(String),
    /// A subnet given with host bits set.
    #[error("subnet {given} has host bits set: did you mean {network}?")]
    HostBitsSet {
        /// The subnet as given.
        given: String,
        /// The network address it probably meant.
        network: String,
    },
    /// An MTU outside what Linux links accept.
    #[error("mtu {0} out of range 576..=9000")]
    InvalidMtu(u32),
}

/// Is `s` a valid DNS label usable as a network, node, container or service name?
pub fn is_valid_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Validates a name as a DNS label.
pub fn validate_name(s: &str) -> Result<(), ModelError> {
    if is_valid_label(s) {
        Ok(())
    } else {
        Err(ModelError::InvalidName(s.to_string()))
    }
}

/// Validates a DNS zone such as `backend.local` (no trailing dot, at most 253 bytes).
pub fn validate_zone(z: &str) -> Result<(), ModelError> {
    let ok = !z.is_empty() && z.len() <= 253 && z.split('.').all(is_valid_label);
    if ok {
        Ok(())
    } else {
        Err(ModelError::InvalidZone(z.to_string()))
    }
}

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
        if let Some(mtu) = self.mtu {
            if !(576..=9000).contains(&mtu) {
                return Err(ModelError::InvalidMtu(mtu));
            }
        }
        Ok(())
    }
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

/// A host running an agent; stored under the node's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Schema version.
    pub schema: u32,
    /// Node name, a DNS label.
    pub name: String,
    /// Underlay address: the VTEP of every VXLAN device on this node.
    pub underlay: IpAddr,
    /// Agent version string.
    pub version: String,
    /// WireGuard public key, when the encrypted overlay is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wg_pubkey: Option<String>,
    /// Unix time (seconds) the agent started.
    #[serde(default)]
    pub started_at: u64,
}

/// One interface of a container on one network; stored under the owning node's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Schema version.
    pub schema: u32,
    /// Unique id within the network (`<node>-<container>` by default).
    pub id: String,
    /// Network name.
    pub network: String,
    /// Container name (DNS label), resolvable as `<name>.<zone>`.
    pub name: String,
    /// Extra DNS names in the network's zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Node that hosts the container.
    pub node: String,
    /// IPv4 address.
    pub ipv4: Ipv4Addr,
    /// IPv6 address, when the network has an IPv6 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// MAC address of the container's interface, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Service this endpoint is an instance of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Service port (for SRV), when a service is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Load-balancing weight (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// An IPAM block of a network claimed by one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamBlock {
    /// Schema version.
    pub schema: u32,
    /// Network name.
    pub network: String,
    /// The block (a sub-range of the network's subnet).
    pub cidr: Ipv4Net,
    /// Owning node.
    pub node: String,
}

/// Two networks allowed to route to each other (`connect-networks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Schema version.
    pub schema: u32,
    /// First network (the lexically smaller name).
    pub a: String,
    /// Second network.
    pub b: String,
}

impl Link {
    /// A link with its two names in canonical (sorted) order.
    pub fn new(x: &str, y: &str) -> Link {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        Link {
            schema: SCHEMA_VERSION,
            a: a.to_string(),
            b: b.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str) -> Network {
        Network::new(name, subnet.parse().expect("subnet"), 4096)
    }

    #[test]
    fn labels() {
        assert!(is_valid_label("frontend"));
        assert!(is_valid_label("a-1"));
        assert!(!is_valid_label(""));
        assert!(!is_valid_label("-a"));
        assert!(!is_valid_label("a-"));
        assert!(!is_valid_label("Front"));
        assert!(!is_valid_label("a.b"));
        assert!(!is_valid_label(&"a".repeat(64)));
    }

    #[test]
    fn gateway_and_names() {
        let n = net("frontend", "172.21.0.0/24");
        assert_eq!(n.gateway(), "172.21.0.1".parse::<Ipv4Addr>().expect("ip"));
        assert_eq!(n.bridge_name(), "sfbr1000");
        assert!(n.vxlan_name().len() <= 15);
        assert_eq!(n.validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_networks() {
        assert!(matches!(
            net("x", "172.21.0.5/24").validate(),
            Err(ModelError::HostBitsSet { .. })
        ));
        assert!(matches!(
            net("x", "172.21.0.0/30").validate(),
            Err(ModelError::SubnetTooSmall(_))
        ));
        assert!(matches!(
            net("X", "172.21.0.0/24").validate(),
            Err(ModelError::InvalidName(_))
        ));
        let mut n = net("x", "172.21.0.0/24");
        n.zone = "bad..zone".into();
        assert!(matches!(n.validate(), Err(ModelError::InvalidZone(_))));
        n = net("x", "172.21.0.0/24");
        n.mtu = Some(100);
        assert_eq!(n.validate(), Err(ModelError::InvalidMtu(100)));
    }

    #[test]
    fn json_round_trip_and_defaults() {
        let n = net("backend", "172.22.0.0/24");
        let s = serde_json::to_string(&n).expect("ser");
        assert_eq!(serde_json::from_str::<Network>(&s).expect("de"), n);
        let e: Endpoint = serde_json::from_str(
            r#"{"schema":1,"id":"n1-a","network":"b","name":"a","node":"n1","ipv4":"172.22.0.2","mac":"02:00:00:00:00:01"}"#,
        )
        .expect("endpoint");
        assert_eq!(e.weight, 1);
        assert!(e.aliases.is_empty());
    }

    #[test]
    fn link_is_canonical() {
        assert_eq!(Link::new("b", "a"), Link::new("a", "b"));
    }
}
