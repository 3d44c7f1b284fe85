//! The host tier's planning fixtures: networks, endpoints, nodes, a container's attachment,
//! and the desired state of a node that builds every network given.

use std::collections::BTreeSet;
use std::net::IpAddr;

use shibafu_overlay::model::{Endpoint, Network, Node, SCHEMA_VERSION};
use shibafu_overlay::plan::{DesiredHost, HostInputs, LocalContainer, LocalInterface};

use crate::NetnsGuard;

/// A network with the defaults of `network create`, and an IPv6 subnet when given.
pub fn net(name: &str, subnet: &str, subnet6: Option<&str>, vni: u32) -> Network {
    Network {
        subnet6: subnet6.map(|s| s.parse().expect("subnet6")),
        ..Network::new(name, subnet.parse().expect("subnet"), vni)
    }
}

/// An endpoint of `id` on `network`, hosted by `node`, with the given addresses and MAC.
pub fn ep(id: &str, network: &str, node: &str, ip: &str, ip6: Option<&str>, mac: &str) -> Endpoint {
    Endpoint {
        ipv6: ip6.map(|a| a.parse().expect("ip6")),
        mac: mac.parse().expect("mac"),
        ..Endpoint::new(network, id, node, ip.parse().expect("ip"))
    }
}

/// The record of node `name` with underlay address `ip`.
pub fn node(name: &str, ip: &str) -> Node {
    Node {
        schema: SCHEMA_VERSION,
        name: name.into(),
        underlay: ip.parse().expect("ip"),
        version: "t".into(),
        wg: None,
        started_at: 0,
    }
}

/// The container in `ns` on the given (network, endpoint id)s, as eth0, eth1, ...
pub fn attach(ns: &NetnsGuard, ifs: &[(&str, &str)]) -> LocalContainer {
    LocalContainer {
        netns: ns.path(),
        interfaces: ifs
            .iter()
            .enumerate()
            .map(|(i, (network, id))| LocalInterface {
                network: (*network).into(),
                endpoint_id: (*id).into(),
                ifname: format!("eth{i}"),
            })
            .collect(),
    }
}

/// The desired state of node `node` (underlay MTU 1500) in the given cluster.
pub fn desired(
    node: &str,
    underlay: Option<IpAddr>,
    networks: &[Network],
    nodes: &[Node],
    endpoints: &[Endpoint],
    containers: &[LocalContainer],
) -> DesiredHost {
    // Every network built, as on a host that uses them all (which ones are is planned apart).
    let in_use: BTreeSet<String> = networks.iter().map(|n| n.name.clone()).collect();
    DesiredHost::build(&HostInputs {
        node,
        underlay,
        underlay_mtu: 1500,
        networks,
        nodes,
        endpoints,
        containers,
        policed: &BTreeSet::new(),
        in_use: &in_use,
        tunnel: None,
        encrypt_all: false,
    })
    .expect("desired state")
}
