//! The `fabric` step of `network diagnose`, pure: on each node, the bridge, the VXLAN device and
//! the FDB and neighbour entries that carry frames to the other container.

use std::net::IpAddr;

use shibafu_overlay::api::HostNet;
use shibafu_overlay::model::{Endpoint, Network};
use shibafu_overlay::plan::{ObservedFdb, ObservedNeigh, ObservedPortFdb};

use crate::diagnose_steps::Step;

/// What node `host` must hold to send to `remote` (an endpoint on `network`, on the node with
/// underlay `vtep`); `None` for its VTEP when the endpoint is on `host` itself.
fn fabric_problems(
    host: &HostNet,
    network: &Network,
    remote: &Endpoint,
    vtep: Option<IpAddr>,
) -> Vec<String> {
    let node = &host.node;
    let bridge = network.bridge_name();
    let vx = network.vxlan_name();
    let mut out = Vec::new();
    match host.links.iter().find(|l| l.name == bridge) {
        None => out.push(format!(
            "{node} has no bridge {bridge} for network {}",
            network.name
        )),
        Some(l) if !l.up => out.push(format!("bridge {bridge} on {node} is down")),
        Some(_) => {}
    }
    let Some(vtep) = vtep else { return out };
    match host.links.iter().find(|l| l.name == vx) {
        None => out.push(format!(
            "{node} has no VXLAN device {vx} for network {}",
            network.name
        )),
        Some(l) if !l.up => out.push(format!("VXLAN device {vx} on {node} is down")),
        Some(_) => {}
    }
    let fdb = ObservedFdb {
        vxlan: vx.clone(),
        mac: remote.mac,
        vtep,
    };
    if !host.vxlan_fdb.contains(&fdb) {
        out.push(format!(
            "{node} has no VXLAN FDB entry for {} ({}) -> {vtep} on {vx}: frames to it are not sent to its node",
            remote.name, remote.mac
        ));
    }
    let port = ObservedPortFdb {
        port: vx.clone(),
        mac: remote.mac,
    };
    if !host.bridge_fdb.contains(&port) {
        out.push(format!(
            "{node} has no bridge FDB entry for {} ({}) on port {vx}",
            remote.name, remote.mac
        ));
    }
    let neigh = ObservedNeigh {
        bridge,
        ip: IpAddr::V4(remote.ipv4),
        mac: remote.mac,
    };
    if !host.neighbours.contains(&neigh) {
        out.push(format!(
            "{node} has no neighbour entry {} -> {} for {}",
            remote.ipv4, remote.mac, remote.name
        ));
    }
    out
}

/// One side of the fabric: the node's view, the network the frames travel on, the endpoint
/// they go to and that endpoint's VTEP (`None`: on the same node).
pub struct FabricSide<'a> {
    /// The node's links and entries.
    pub host: &'a HostNet,
    /// The network the frames are bridged on at this node.
    pub network: &'a Network,
    /// The endpoint they are for.
    pub remote: &'a Endpoint,
    /// The VTEP of the endpoint's node, when it is another node.
    pub vtep: Option<IpAddr>,
}

/// Step `fabric`: bridges, VXLAN devices and the FDB and neighbour entries toward each other
/// on both nodes (the forward path on the source's, the reply path on the destination's).
pub fn fabric(sides: &[FabricSide<'_>]) -> Step {
    let mut nodes: Vec<&str> = sides.iter().map(|s| s.host.node.as_str()).collect();
    nodes.dedup();
    let mut problems = Vec::new();
    for s in sides {
        problems.extend(fabric_problems(s.host, s.network, s.remote, s.vtep));
    }
    let res = if problems.is_empty() {
        let what: Vec<String> = sides
            .iter()
            .map(|s| match s.vtep {
                Some(v) => format!(
                    "{}: {} and {} with FDB and neighbour entries for {} -> {v}",
                    s.host.node,
                    s.network.bridge_name(),
                    s.network.vxlan_name(),
                    s.remote.name
                ),
                None => format!("{}: {} up", s.host.node, s.network.bridge_name()),
            })
            .collect();
        Ok(what.join("; "))
    } else {
        Err(format!(
            "{}; the agent restores its entries at its next resync, or restart shibafu-agent on that node",
            problems.join("; ")
        ))
    };
    Step::new("fabric", &nodes.join(","), res)
}
