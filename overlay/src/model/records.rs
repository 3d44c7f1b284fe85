//! The records of the cluster besides networks: nodes, endpoints, IPAM blocks, links, and the
//! problems nodes report.

use crate::telemetry::Trace;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{HealthCheck, MacAddr, NodeWireGuard, SCHEMA_VERSION};

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
    /// Its WireGuard key, port and tunnel address, when it has a key pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wg: Option<NodeWireGuard>,
    /// Unix time (seconds) the agent started.
    #[serde(default)]
    pub started_at: u64,
}

/// One interface of a container on one network; stored under the owning node's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Schema version.
    pub schema: u32,
    /// Unique id within the network: the workload's name, so a name is held at most once per
    /// network in the whole cluster (it is also the DNS name). The key is
    /// `/shibafu/v1/endpoints/<network>/<id>`.
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
    /// MAC address of the container's interface (stored as `aa:bb:cc:dd:ee:ff`).
    pub mac: MacAddr,
    /// Service this endpoint is an instance of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Service port (for SRV), when a service is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Load-balancing weight (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Health check of this instance, in place of its service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// The container id, for a namespace a container runtime attached through CNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<String>,
    /// The trace context of the change that wrote this value (W3C `traceparent`), so watchers
    /// continue that trace; absent in values written without tracing.
    #[serde(default, skip_serializing_if = "Trace::is_none")]
    pub trace: Trace,
}

fn default_weight() -> u32 {
    1
}

impl Endpoint {
    /// The endpoint of workload `name` on `network`, hosted by `node` at `ipv4`: id = name, MAC
    /// derived from the address ([`MacAddr::for_endpoint`]), no IPv6, aliases or service, weight 1.
    pub fn new(network: &str, name: &str, node: &str, ipv4: Ipv4Addr) -> Endpoint {
        Endpoint {
            schema: SCHEMA_VERSION,
            id: name.to_string(),
            network: network.to_string(),
            name: name.to_string(),
            aliases: Vec::new(),
            node: node.to_string(),
            ipv4,
            ipv6: None,
            mac: MacAddr::for_endpoint(ipv4),
            service: None,
            port: None,
            weight: 1,
            health: None,
            cni: None,
            trace: Trace::NONE,
        }
    }
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

/// Why a node does not build a network: written by that node's agent under its lease while the
/// problem lasts, shown by `shibafu network inspect`. The node's other networks are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkProblem {
    /// Schema version.
    pub schema: u32,
    /// The network.
    pub network: String,
    /// The node that skips it.
    pub node: String,
    /// What is wrong and what to do, in words for the user.
    pub reason: String,
}

/// A live coordinator: its API and DNS addresses, under its lease. Coordinators name each other
/// in the zones they serve (NS), and clients can find them here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorRecord {
    /// Schema version.
    pub schema: u32,
    /// Its name, a DNS label.
    pub name: String,
    /// Its API URL (`http://10.0.0.2:7480`).
    pub api: String,
    /// Where it answers DNS, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<std::net::SocketAddr>,
}
