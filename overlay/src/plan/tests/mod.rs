//! Unit tests of planning: fixtures (a small cluster, a simulated kernel), then the tests of
//! building the desired state (`build`) and of planning against the simulated kernel (`diff`).

mod build;
mod diff;
mod encrypted;

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;
use crate::model::{Endpoint, Network, Node, SCHEMA_VERSION};
use crate::netlink::simulate;

pub(super) fn net(name: &str, subnet: &str, vni: u32) -> Network {
    Network::new(name, subnet.parse().expect("subnet"), vni)
}

pub(super) fn node(name: &str, ip: &str) -> Node {
    Node {
        schema: SCHEMA_VERSION,
        name: name.into(),
        underlay: ip.parse().expect("ip"),
        version: "test".into(),
        wg: None,
        started_at: 0,
    }
}

pub(super) fn ep(id: &str, network: &str, node: &str, ip: &str, mac: &str) -> Endpoint {
    Endpoint {
        mac: mac.parse().expect("mac"),
        ..Endpoint::new(network, id, node, ip.parse().expect("ip"))
    }
}

pub(super) fn container(netns: &str, ifs: &[(&str, &str, &str)]) -> LocalContainer {
    LocalContainer {
        netns: PathBuf::from(netns),
        interfaces: ifs
            .iter()
            .map(|(network, id, ifname)| LocalInterface {
                network: (*network).into(),
                endpoint_id: (*id).into(),
                ifname: (*ifname).into(),
            })
            .collect(),
    }
}

/// A two-network cluster seen from node1: fe (with IPv6) and be; a local container on both,
/// another local one on fe, and remote endpoints on node2 and node3.
pub(crate) struct Cluster {
    pub networks: Vec<Network>,
    pub nodes: Vec<Node>,
    pub endpoints: Vec<Endpoint>,
    pub containers: Vec<LocalContainer>,
    /// Networks policies govern (none by default).
    pub policed: BTreeSet<String>,
    /// Networks node1 uses (those of its containers: both).
    pub in_use: BTreeSet<String>,
}

impl Cluster {
    pub fn new() -> Cluster {
        let mut fe = net("fe", "172.21.0.0/24", 4096);
        fe.subnet6 = Some("fd00:21::/64".parse().expect("subnet6"));
        let be = net("be", "172.22.0.0/24", 4097);
        let mut api_fe = ep("n1-api", "fe", "node1", "172.21.0.2", "02:00:00:00:01:02");
        api_fe.ipv6 = Some("fd00:21::2".parse().expect("v6"));
        let mut web = ep("n2-web", "fe", "node2", "172.21.0.3", "02:00:00:00:02:03");
        web.ipv6 = Some("fd00:21::3".parse().expect("v6"));
        Cluster {
            networks: vec![fe, be],
            nodes: vec![
                node("node1", "10.0.0.1"),
                node("node2", "10.0.0.2"),
                node("node3", "10.0.0.3"),
            ],
            endpoints: vec![
                ep("n1-api", "be", "node1", "172.22.0.2", "02:00:00:00:01:12"),
                api_fe,
                ep("n1-cache", "fe", "node1", "172.21.0.4", "02:00:00:00:01:04"),
                web,
                ep("n3-db", "be", "node3", "172.22.0.5", "02:00:00:00:03:05"),
            ],
            containers: vec![
                container(
                    "/run/netns/api",
                    &[("be", "n1-api", "eth0"), ("fe", "n1-api", "eth1")],
                ),
                container("/run/netns/cache", &[("fe", "n1-cache", "eth0")]),
            ],
            policed: BTreeSet::new(),
            in_use: ["fe".to_string(), "be".to_string()].into(),
        }
    }

    pub fn inputs(&self) -> HostInputs<'_> {
        HostInputs {
            node: "node1",
            underlay: Some("10.0.0.1".parse().expect("ip")),
            underlay_mtu: 1500,
            networks: &self.networks,
            nodes: &self.nodes,
            endpoints: &self.endpoints,
            containers: &self.containers,
            policed: &self.policed,
            in_use: &self.in_use,
            tunnel: None,
            encrypt_all: false,
        }
    }

    pub fn desired(&self) -> DesiredHost {
        DesiredHost::build(&self.inputs()).expect("desired")
    }
}

/// A simulated host holding the given container namespaces, nothing else.
pub(super) fn kernel_with(netns: &[&str]) -> ObservedHost {
    ObservedHost {
        containers: netns
            .iter()
            .map(|n| ObservedContainer {
                netns: PathBuf::from(n),
                reachable: true,
                links: vec![],
                default4: vec![],
                default6: vec![],
            })
            .collect(),
        ..ObservedHost::default()
    }
}

/// Plans and applies until nothing is left; returns the ops of the first round.
pub(super) fn converge(desired: &DesiredHost, k: &mut ObservedHost) -> Vec<Op> {
    let first = plan(desired, k);
    for op in &first {
        simulate(k, op).unwrap_or_else(|e| panic!("{op}: {e}"));
    }
    let again = plan(desired, k);
    assert!(again.is_empty(), "not idempotent, second plan: {again:#?}");
    first
}
