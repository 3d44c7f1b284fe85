//! `plan(desired, observed) -> ops`: the difference, in an order the kernel accepts.
//!
//! Order: forwarding and br_netfilter switches, stale links (veths, then the rest), then per
//! network the bridge with its own netfilter switches, its addresses, the VXLAN device with its
//! FDB and the neighbour entries, then per local endpoint the veth and the container side.
//! Whatever is already right produces no op, so planning against the state an earlier apply left
//! is empty and an agent restart touches nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::desired::{DesiredEndpoint, DesiredHost, DesiredNetwork, DesiredVxlan};
use super::names::is_owned;
use super::observed::{LinkKind, ObservedContainer, ObservedHost, ObservedLink, PortFlags};
use super::{IpFamily, LinkRef, MacAddr, Op};

/// The VXLAN port options the plan wants: suppress ARP/ND (answered from the bridge's neighbour
/// entries), learn nothing (remote MACs come from the cluster state only).
pub const VXLAN_PORT_FLAGS: PortFlags = PortFlags {
    neigh_suppress: true,
    learning: false,
};

/// Computes the ordered ops that take `observed` to `desired`.
pub fn plan(desired: &DesiredHost, observed: &ObservedHost) -> Vec<Op> {
    let mut ops = Vec::new();
    if !desired.networks.is_empty() && !observed.forwarding4 {
        ops.push(Op::EnableForwarding(IpFamily::V4));
    }
    if desired.has_ipv6() && !observed.forwarding6 {
        ops.push(Op::EnableForwarding(IpFamily::V6));
    }
    if desired.bridge_netfilter_off && observed.bridge_netfilter {
        ops.push(Op::DisableBridgeNetfilter);
    }
    let kept = stale_links(desired, observed, &mut ops);
    for net in &desired.networks {
        network_ops(net, observed, &kept, &mut ops);
    }
    for ep in &desired.endpoints {
        endpoint_ops(ep, observed, &kept, &mut ops);
    }
    ops
}

/// The ops for the workloads `observed` covers (its container namespaces and the host ends of
/// their veths), taking the host side (forwarding, bridges, VXLAN, FDB, neighbours) as right:
/// the plan of an attach on a host whose networks are as the last reconcile left them.
pub fn plan_workloads(desired: &DesiredHost, observed: &ObservedHost) -> Vec<Op> {
    let mut ops = Vec::new();
    let kept = stale_links(desired, observed, &mut ops);
    // The observed namespaces' endpoints, found by search (the plan keeps them sorted by
    // namespace) and taken in the plan's order: an attach does not walk the host's 1,000.
    let mut runs: Vec<&[DesiredEndpoint]> = (observed.containers.iter())
        .map(|c| desired.endpoints_in(&c.netns))
        .filter(|run| !run.is_empty())
        .collect();
    runs.sort_by_key(|run| run.as_ptr());
    runs.dedup_by_key(|run| run.as_ptr());
    for ep in runs.into_iter().flatten() {
        endpoint_ops(ep, observed, &kept, &mut ops);
    }
    ops
}

/// Host links that stay (right name, right kind, right identity), by name.
type Kept<'a> = BTreeMap<&'a str, &'a ObservedLink>;

fn stale_links<'a>(
    desired: &DesiredHost,
    observed: &'a ObservedHost,
    ops: &mut Vec<Op>,
) -> Kept<'a> {
    let bridges: BTreeMap<&str, &DesiredNetwork> = desired
        .networks
        .iter()
        .map(|n| (n.bridge.as_str(), n))
        .collect();
    let vxlans: BTreeMap<&str, &DesiredVxlan> = desired
        .networks
        .iter()
        .filter_map(|n| n.vxlan.as_ref().map(|v| (v.name.as_str(), v)))
        .collect();
    // Only the veths observed are looked up: an attach observes its own, not the host's 1,000.
    let seen: BTreeSet<&str> = observed
        .links
        .iter()
        .filter(|l| matches!(l.kind, LinkKind::Veth))
        .map(|l| l.name.as_str())
        .collect();
    let veths: BTreeMap<&str, &DesiredEndpoint> = desired
        .endpoints
        .iter()
        .filter(|e| seen.contains(e.host_ifname.as_str()))
        .map(|e| (e.host_ifname.as_str(), e))
        .collect();

    let mut kept = Kept::new();
    let mut delete = Vec::new();
    for link in observed.links.iter().filter(|l| is_owned(&l.name)) {
        let name = link.name.as_str();
        let keep = match &link.kind {
            LinkKind::Bridge { .. } => bridges.contains_key(name),
            LinkKind::Vxlan {
                vni,
                local,
                port,
                learning,
            } => vxlans.get(name).is_some_and(|v| {
                *vni == v.vni && *local == v.local && *port == v.port && !learning
            }),
            LinkKind::Veth => veths
                .get(name)
                .is_some_and(|ep| veth_matches(link, ep, observed)),
            LinkKind::Other(_) => false,
        };
        if keep {
            kept.insert(name, link);
        } else {
            delete.push(link);
        }
    }
    // Veths first (they are ports), bridges last.
    delete.sort_by_key(|l| match l.kind {
        LinkKind::Veth => 0,
        LinkKind::Bridge { .. } => 2,
        _ => 1,
    });
    ops.extend(delete.into_iter().map(|l| Op::DeleteLink(l.name.clone())));
    kept
}

/// Is this host veth end the one of `ep`: its peer is `ep.ifname` in `ep.netns`, pointing back?
/// A namespace that could not be entered counts as a match, so a transient failure to look
/// never deletes a running container's interface.
fn veth_matches(host: &ObservedLink, ep: &DesiredEndpoint, observed: &ObservedHost) -> bool {
    match observed.container(&ep.netns) {
        Some(c) if c.reachable => c.link(&ep.ifname).is_some_and(|inner| {
            inner.kind == LinkKind::Veth
                && host.peer_index == Some(inner.index)
                && inner.peer_index == Some(host.index)
        }),
        _ => true,
    }
}

fn network_ops(net: &DesiredNetwork, observed: &ObservedHost, kept: &Kept<'_>, ops: &mut Vec<Op>) {
    let bridge = LinkRef::Host(net.bridge.clone());
    let mut want: Vec<IpNet> = vec![net.gateway4.into()];
    want.extend(net.gateway6.map(IpNet::from));
    let existing = kept.get(net.bridge.as_str()).copied();
    if existing.is_none() {
        ops.push(Op::CreateBridge {
            name: net.bridge.clone(),
            mac: net.mac,
            mtu: net.mtu,
        });
    }
    // Before the bridge comes up and gets ports, so no frame of a policed network skips the
    // hooks. A new bridge starts with both switches off and without multicast snooping.
    let (nf_call, snooping) = match existing.map(|l| &l.kind) {
        Some(LinkKind::Bridge {
            nf_call_iptables,
            nf_call_ip6tables,
            mcast_snooping,
        }) => ((*nf_call_iptables, *nf_call_ip6tables), *mcast_snooping),
        _ => ((false, false), false),
    };
    if nf_call != (net.netfilter, net.netfilter) {
        ops.push(Op::SetBridgeNetfilter {
            name: net.bridge.clone(),
            on: net.netfilter,
        });
    }
    if snooping {
        ops.push(Op::DisableMulticastSnooping {
            name: net.bridge.clone(),
        });
    }
    link_fix(&bridge, existing, net.mtu, Some(net.mac), &want, ops);
    let bridge_kept = existing.is_some();

    let mut neigh_want: BTreeMap<IpAddr, MacAddr> = BTreeMap::new();
    if let Some(vx) = &net.vxlan {
        vxlan_ops(net, vx, observed, kept, ops);
        for r in &vx.remotes {
            neigh_want.insert(IpAddr::V4(r.ipv4), r.mac);
            if let Some(a) = r.ipv6 {
                neigh_want.insert(IpAddr::V6(a), r.mac);
            }
        }
    }
    let neigh_have: BTreeMap<IpAddr, MacAddr> = observed
        .neighbours
        .iter()
        .filter(|n| bridge_kept && n.bridge == net.bridge)
        .map(|n| (n.ip, n.mac))
        .collect();
    for ip in neigh_have.keys().filter(|ip| !neigh_want.contains_key(ip)) {
        ops.push(Op::DelNeigh {
            bridge: net.bridge.clone(),
            ip: *ip,
        });
    }
    for (ip, mac) in &neigh_want {
        if neigh_have.get(ip) != Some(mac) {
            ops.push(Op::SetNeigh {
                bridge: net.bridge.clone(),
                ip: *ip,
                mac: *mac,
            });
        }
    }
}

fn vxlan_ops(
    net: &DesiredNetwork,
    vx: &DesiredVxlan,
    observed: &ObservedHost,
    kept: &Kept<'_>,
    ops: &mut Vec<Op>,
) {
    let link = LinkRef::Host(vx.name.clone());
    let existing = kept.get(vx.name.as_str()).copied();
    match existing {
        None => {
            ops.push(Op::CreateVxlan {
                name: vx.name.clone(),
                vni: vx.vni,
                local: vx.local,
                port: vx.port,
                mtu: net.mtu,
            });
            port_fix(&vx.name, &net.bridge, None, Some(VXLAN_PORT_FLAGS), ops);
            link_fix(&link, None, net.mtu, None, &[], ops);
        }
        Some(l) => {
            port_fix(&vx.name, &net.bridge, Some(l), Some(VXLAN_PORT_FLAGS), ops);
            link_fix(&link, Some(l), net.mtu, None, &[], ops);
        }
    }
    let fdb_want: BTreeSet<(MacAddr, IpAddr)> =
        vx.remotes.iter().map(|r| (r.mac, r.vtep)).collect();
    let fdb_have: BTreeSet<(MacAddr, IpAddr)> = observed
        .fdb
        .iter()
        .filter(|f| existing.is_some() && f.vxlan == vx.name)
        .map(|f| (f.mac, f.vtep))
        .collect();
    for (mac, vtep) in fdb_have.difference(&fdb_want) {
        ops.push(Op::DelFdb {
            vxlan: vx.name.clone(),
            mac: *mac,
            vtep: *vtep,
        });
    }
    for (mac, vtep) in fdb_want.difference(&fdb_have) {
        ops.push(Op::AddFdb {
            vxlan: vx.name.clone(),
            mac: *mac,
            vtep: *vtep,
        });
    }
    let port_want: BTreeSet<MacAddr> = vx.remotes.iter().map(|r| r.mac).collect();
    let port_have: BTreeSet<MacAddr> = observed
        .port_fdb
        .iter()
        .filter(|f| existing.is_some() && f.port == vx.name)
        .map(|f| f.mac)
        .collect();
    for mac in port_have.difference(&port_want) {
        ops.push(Op::DelPortFdb {
            port: vx.name.clone(),
            mac: *mac,
        });
    }
    for mac in port_want.difference(&port_have) {
        ops.push(Op::AddPortFdb {
            port: vx.name.clone(),
            mac: *mac,
        });
    }
}

fn endpoint_ops(ep: &DesiredEndpoint, observed: &ObservedHost, kept: &Kept<'_>, ops: &mut Vec<Op>) {
    let host = LinkRef::Host(ep.host_ifname.clone());
    let inner = LinkRef::Container {
        netns: ep.netns.clone(),
        name: ep.ifname.clone(),
    };
    let container = observed.container(&ep.netns);
    let mut want: Vec<IpNet> = vec![ep.ipv4.into()];
    want.extend(ep.ipv6.map(IpNet::from));
    match kept.get(ep.host_ifname.as_str()) {
        None => {
            ops.push(Op::CreateVeth {
                host: ep.host_ifname.clone(),
                netns: ep.netns.clone(),
                peer: ep.ifname.clone(),
                peer_mac: ep.mac,
                host_mac: ep.bridge_mac,
                mtu: ep.mtu,
                peer_ipv6: ep.ipv6.is_some(),
            });
            port_fix(&ep.host_ifname, &ep.bridge, None, None, ops);
            link_fix(&host, None, ep.mtu, None, &[], ops);
            link_fix(&inner, None, ep.mtu, Some(ep.mac), &want, ops);
            routes(ep, None, &inner, ops);
        }
        Some(h) => {
            let Some(c) = container.filter(|c| c.reachable) else {
                return;
            };
            port_fix(&ep.host_ifname, &ep.bridge, Some(h), None, ops);
            link_fix(&host, Some(h), ep.mtu, None, &[], ops);
            link_fix(&inner, c.link(&ep.ifname), ep.mtu, Some(ep.mac), &want, ops);
            routes(ep, Some(c), &inner, ops);
        }
    }
}

/// Ops that give `link` (absent = just created, with its MTU and MAC already right) the wanted
/// MTU, MAC and addresses, and bring it up. Addresses of `want` are the whole managed set:
/// others are removed (IPv6 link-local ones are never observed, so never removed).
fn link_fix(
    link: &LinkRef,
    have: Option<&ObservedLink>,
    mtu: u32,
    mac: Option<MacAddr>,
    want: &[IpNet],
    ops: &mut Vec<Op>,
) {
    let empty = Vec::new();
    let (have_addrs, up) = match have {
        None => (&empty, false),
        Some(l) => {
            if l.mtu != mtu {
                ops.push(Op::SetMtu {
                    link: link.clone(),
                    mtu,
                });
            }
            if let Some(m) = mac.filter(|m| l.mac != Some(*m)) {
                ops.push(Op::SetMac {
                    link: link.clone(),
                    mac: m,
                });
            }
            (&l.addresses, l.up)
        }
    };
    for a in have_addrs.iter().filter(|a| !want.contains(a)) {
        ops.push(Op::DelAddress {
            link: link.clone(),
            addr: *a,
        });
    }
    for a in want.iter().filter(|a| !have_addrs.contains(a)) {
        ops.push(Op::AddAddress {
            link: link.clone(),
            addr: *a,
        });
    }
    if !up {
        ops.push(Op::SetUp(link.clone()));
    }
}

/// Ops that make host link `name` a port of `bridge` (with `flags`, when given).
fn port_fix(
    name: &str,
    bridge: &str,
    have: Option<&ObservedLink>,
    flags: Option<PortFlags>,
    ops: &mut Vec<Op>,
) {
    let attached = have.is_some_and(|l| l.master.as_deref() == Some(bridge));
    if !attached {
        ops.push(Op::SetMaster {
            name: name.to_string(),
            master: bridge.to_string(),
        });
    }
    if let Some(f) = flags {
        if !attached || have.and_then(|l| l.port) != Some(f) {
            ops.push(Op::SetPortFlags {
                name: name.to_string(),
                neigh_suppress: f.neigh_suppress,
                learning: f.learning,
            });
        }
    }
}

fn routes(ep: &DesiredEndpoint, c: Option<&ObservedContainer>, inner: &LinkRef, ops: &mut Vec<Op>) {
    if let Some(gw) = ep.default4 {
        if !c.is_some_and(|c| c.default4.contains(&(gw, ep.ifname.clone()))) {
            ops.push(Op::SetDefaultRoute {
                link: inner.clone(),
                gateway: gw.into(),
            });
        }
    }
    if let Some(gw) = ep.default6 {
        if !c.is_some_and(|c| c.default6.contains(&(gw, ep.ifname.clone()))) {
            ops.push(Op::SetDefaultRoute {
                link: inner.clone(),
                gateway: gw.into(),
            });
        }
    }
}
