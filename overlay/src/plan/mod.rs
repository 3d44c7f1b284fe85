//! Pure planning of the host dataplane: desired state (from the cluster model and the local
//! attachments) and observed kernel state in, an ordered list of [`Op`]s out.
//!
//! Nothing here touches the kernel; [`crate::netlink`] observes and applies. The contract:
//! `plan(&desired, &observed_after_applying(plan(&desired, &observed)))` is empty, and an op is
//! only produced for something that is not already right.

mod desired;
mod diff;
mod in_use;
mod mirror;
mod names;
mod observed;
mod ops;

#[cfg(test)]
mod tests;

/// Test fixtures shared with other modules' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::Cluster;

    /// The two-network, three-node cluster of the plan tests, seen from node1.
    pub(crate) fn cluster() -> Cluster {
        Cluster::new()
    }
}

use std::net::IpAddr;
use std::path::PathBuf;

pub use crate::model::{MacAddr, MacParseError};
pub use desired::{
    DesiredEndpoint, DesiredHost, DesiredNetwork, DesiredVxlan, HostInputs, LocalContainer,
    LocalInterface, RemoteEndpoint, SkippedNetwork,
};
pub use diff::{plan, plan_workloads, VXLAN_PORT_FLAGS};
pub use in_use::{in_use_reads_endpoints, networks_in_use, networks_in_use_by};
pub use mirror::HostMirror;
pub use names::{
    gateway_mac, is_owned, next_ifname, overlay_mtu, valid_ifname, veth_host_name, MAX_IFNAME,
    OWNED_PREFIX, VETH_PREFIX, VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6, VXLAN_PORT,
};
pub use observed::{
    LinkKind, ObservedContainer, ObservedFdb, ObservedHost, ObservedLink, ObservedNeigh,
    ObservedPortFdb, PortFlags,
};
pub use ops::{IpFamily, LinkRef, Op};

/// Errors of building the desired state: local attachments that contradict the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A local interface names an endpoint with no record.
    #[error("network {network:?}: endpoint {endpoint:?} has no record; attach it again")]
    UnknownEndpoint {
        /// The network name.
        network: String,
        /// The endpoint id.
        endpoint: String,
    },
    /// A local interface names an endpoint owned by another node.
    #[error("endpoint {endpoint:?} belongs to node {node:?}, not this node")]
    ForeignEndpoint {
        /// The endpoint id.
        endpoint: String,
        /// Its node.
        node: String,
    },
    /// An endpoint's MAC is malformed or not unicast.
    #[error(
        "endpoint {endpoint:?}: invalid MAC {mac:?}; use a unicast address like 02:00:ac:15:00:02"
    )]
    InvalidMac {
        /// The endpoint id.
        endpoint: String,
        /// The MAC as stored.
        mac: String,
    },
    /// An endpoint address outside its network's subnet (or the gateway itself).
    #[error("endpoint {endpoint:?}: address {addr} is not a host address of {subnet}")]
    AddressOutsideSubnet {
        /// The endpoint id.
        endpoint: String,
        /// The address.
        addr: IpAddr,
        /// The subnet.
        subnet: String,
    },
    /// An interface name Linux would refuse.
    #[error("invalid interface name {0:?}: use 1-15 characters without '/', ':' or spaces")]
    InvalidIfname(String),
    /// Two interfaces of one container with the same name.
    #[error("container {}: two interfaces named {ifname:?}", netns.display())]
    DuplicateIfname {
        /// The container namespace.
        netns: PathBuf,
        /// The name.
        ifname: String,
    },
    /// The same endpoint attached twice.
    #[error("network {network:?}: endpoint {endpoint:?} is attached twice")]
    DuplicateAttachment {
        /// The network name.
        network: String,
        /// The endpoint id.
        endpoint: String,
    },
}
