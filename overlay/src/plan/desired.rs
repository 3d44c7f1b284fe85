//! What this host's dataplane should look like, built from cluster state and local attachments.
//!
//! A host builds the bridge (and VXLAN device) of each network it uses
//! ([`super::networks_in_use`]): its containers' networks, the networks linked to them (routing
//! between linked networks happens on the sending node), the networks consenting to outside
//! peers and, where those are used, their peers' networks. The others stay idle here: no device, no FDB or neighbour entry, no pass when their
//! endpoints change. A network this host cannot build (invalid, clashing with another network,
//! an overlay MTU below its minimum here) is skipped with the reason, and local interfaces on it
//! are left out: the other networks go on. The rules are the model's, the ones the coordinator
//! applies at creation; they are checked over every network of the cluster, used here or not.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::names::{gateway_mac, overlay_mtu, valid_ifname, veth_host_name, VXLAN_PORT};
use super::{MacAddr, PlanError};
use crate::model::{admit, Endpoint, Network, Node};
use crate::wireguard::tunnel;

/// The whole desired dataplane of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredHost {
    /// Networks present on this host, sorted by bridge name.
    pub networks: Vec<DesiredNetwork>,
    /// Local container interfaces, sorted by (netns, ifname).
    pub endpoints: Vec<DesiredEndpoint>,
    /// Keep bridged frames out of the host's iptables/nftables hooks (the br_netfilter sysctls
    /// off): shibafu's rules concern routed traffic, except on policed networks, whose bridges
    /// call the hooks themselves ([`DesiredNetwork::netfilter`]). For hosts dedicated to shibafu.
    #[serde(default)]
    pub bridge_netfilter_off: bool,
    /// Networks of the cluster this host does not build, sorted by name.
    #[serde(default)]
    pub skipped: Vec<SkippedNetwork>,
    /// Valid networks of the cluster nothing on this host uses, so not built here, sorted.
    #[serde(default)]
    pub idle: Vec<String>,
}

/// A network this host does not build, and why (in words for `shibafu network inspect`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SkippedNetwork {
    /// Network name.
    pub name: String,
    /// What is wrong and what to do.
    pub reason: String,
}

/// One network's bridge (carrying the anycast gateway) and VXLAN device on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredNetwork {
    /// Network name (for messages).
    pub name: String,
    /// Bridge name (`sfbr<vni hex>`).
    pub bridge: String,
    /// Bridge MAC: the anycast gateway MAC of the network.
    pub mac: MacAddr,
    /// Overlay MTU (bridge, VXLAN, both veth ends).
    pub mtu: u32,
    /// IPv4 gateway with the subnet's prefix length.
    pub gateway4: Ipv4Net,
    /// IPv6 gateway with the subnet's prefix length.
    pub gateway6: Option<Ipv6Net>,
    /// The VXLAN device; `None` on a host without an underlay address (single-host mode).
    pub vxlan: Option<DesiredVxlan>,
    /// Policies govern this network: its bridged frames go through the inet netfilter hooks
    /// (the bridge's `nf_call_iptables` / `nf_call_ip6tables` on, whatever the host's
    /// `bridge-nf-call-*` sysctls say), where policy rules and conntrack see them; the kernel
    /// has no bridge-family conntrack. Off for other networks, which keep the fast path.
    #[serde(default)]
    pub netfilter: bool,
}

/// A network's VXLAN device and what it must know about remote endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredVxlan {
    /// Device name (`sfvx<vni hex>`).
    pub name: String,
    /// VNI.
    pub vni: u32,
    /// Local VTEP: this node's underlay address; `None` when some of the network's traffic runs
    /// inside the WireGuard tunnels, so the kernel picks the source by route (the tunnel
    /// address toward a tunnel peer, the underlay address toward the others).
    pub local: Option<IpAddr>,
    /// UDP port.
    pub port: u16,
    /// Remote endpoints, sorted by MAC.
    pub remotes: Vec<RemoteEndpoint>,
}

/// A container interface on another node: FDB entry MAC -> VTEP, neighbour entries IP -> MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    /// Its MAC.
    pub mac: MacAddr,
    /// Its IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
    /// Underlay address of its node, or its tunnel address when their traffic is encrypted.
    pub vtep: IpAddr,
}

/// A local container interface: a veth pair from the network's bridge into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredEndpoint {
    /// Network name.
    pub network: String,
    /// Endpoint id.
    pub endpoint_id: String,
    /// Host end of the veth (`sfe` + hash).
    pub host_ifname: String,
    /// Bridge it is a port of.
    pub bridge: String,
    /// Container network namespace path.
    pub netns: PathBuf,
    /// Interface name inside the container.
    pub ifname: String,
    /// MAC of the container interface.
    pub mac: MacAddr,
    /// MAC of the bridge (the network's gateway), which the host end carries too.
    pub bridge_mac: MacAddr,
    /// IPv4 address with the subnet's prefix.
    pub ipv4: Ipv4Net,
    /// IPv6 address with the subnet's prefix.
    pub ipv6: Option<Ipv6Net>,
    /// MTU of both ends.
    pub mtu: u32,
    /// IPv4 default route via this gateway (the container's first network only).
    pub default4: Option<Ipv4Addr>,
    /// IPv6 default route via this gateway (the container's first network with IPv6 only).
    pub default6: Option<Ipv6Addr>,
}

/// A container (network namespace) on this host and its interfaces in attach order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalContainer {
    /// Network namespace path.
    pub netns: PathBuf,
    /// Interfaces, first = the network of the default route.
    pub interfaces: Vec<LocalInterface>,
}

/// One interface of a local container: which endpoint it is and its name inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalInterface {
    /// Network name.
    pub network: String,
    /// Endpoint id (its record carries addresses and MAC).
    pub endpoint_id: String,
    /// Name inside the container, chosen once at attach (see [`super::next_ifname`]).
    pub ifname: String,
}

/// Everything [`DesiredHost::build`] reads.
#[derive(Debug, Clone, Copy)]
pub struct HostInputs<'a> {
    /// This node's name.
    pub node: &'a str,
    /// This node's underlay address (local VTEP); `None` = single host, no VXLAN.
    pub underlay: Option<IpAddr>,
    /// MTU of the underlay interface.
    pub underlay_mtu: u32,
    /// Every network of the cluster.
    pub networks: &'a [Network],
    /// Every live node.
    pub nodes: &'a [Node],
    /// Every endpoint of the cluster (local ones included).
    pub endpoints: &'a [Endpoint],
    /// Local containers and their interfaces.
    pub containers: &'a [LocalContainer],
    /// Names of the networks policies govern (`crate::policy::policed_networks`).
    pub policed: &'a BTreeSet<String>,
    /// Names of the networks this host uses ([`super::networks_in_use`]); only they are built.
    pub in_use: &'a BTreeSet<String>,
    /// This node's tunnel address, once its WireGuard device is up.
    pub tunnel: Option<Ipv4Addr>,
    /// This node encrypts every network (`--encrypt-all`).
    pub encrypt_all: bool,
}

impl DesiredHost {
    /// Builds the desired state. Networks this host cannot build are skipped (see
    /// [`DesiredHost::skipped`]) and local interfaces on them or on unknown networks left out.
    /// Other local inconsistencies (an interface naming an unknown endpoint, a bad MAC or
    /// address) fail the whole build so nothing half-right is applied; bad remote records are
    /// logged and skipped.
    pub fn build(inp: &HostInputs<'_>) -> Result<DesiredHost, PlanError> {
        let (networks, mut skipped, idle) = build_networks(inp);
        let endpoints = build_endpoints(inp, &networks)?;
        let mut networks: Vec<DesiredNetwork> = networks.into_values().map(|(n, _)| n).collect();
        add_remotes(inp, &mut networks);
        networks.sort_by(|a, b| a.bridge.cmp(&b.bridge));
        for s in &skipped {
            warn!(network = %s.name, reason = %s.reason, "skipping network");
        }
        skipped.sort();
        Ok(DesiredHost {
            networks,
            endpoints,
            bridge_netfilter_off: false,
            skipped,
            idle,
        })
    }

    /// Distinct container namespaces this host configures.
    pub fn container_netns(&self) -> Vec<&Path> {
        let set: BTreeSet<&Path> = self.endpoints.iter().map(|e| e.netns.as_path()).collect();
        set.into_iter().collect()
    }

    /// The interfaces of the container in `netns` (a binary search: the endpoints are sorted by
    /// namespace).
    pub fn endpoints_in(&self, netns: &Path) -> &[DesiredEndpoint] {
        let from = self
            .endpoints
            .partition_point(|e| e.netns.as_path() < netns);
        let to = from + self.endpoints[from..].partition_point(|e| e.netns.as_path() == netns);
        &self.endpoints[from..to]
    }

    /// Does any network carry IPv6 (so IPv6 forwarding is needed)?
    pub fn has_ipv6(&self) -> bool {
        self.networks.iter().any(|n| n.gateway6.is_some())
    }

    /// The network named `name`.
    pub fn network(&self, name: &str) -> Option<&DesiredNetwork> {
        self.networks.iter().find(|n| n.name == name)
    }
}

type NetworkMap<'a> = BTreeMap<&'a str, (DesiredNetwork, &'a Network)>;

/// The networks this host builds, those it skips with the reason, and the idle ones (sorted).
fn build_networks<'a>(inp: &HostInputs<'a>) -> (NetworkMap<'a>, Vec<SkippedNetwork>, Vec<String>) {
    let mut out: NetworkMap<'a> = BTreeMap::new();
    let (admitted, refused) = admit(inp.networks);
    let mut skipped: Vec<SkippedNetwork> = refused
        .into_iter()
        .map(|(name, reason)| SkippedNetwork { name, reason })
        .collect();
    let mut idle = Vec::new();
    for net in admitted {
        let tunnels =
            inp.underlay.is_some() && tunnel::involves_tunnels(net, inp.encrypt_all, inp.nodes);
        let mtu = match inp.underlay {
            Some(u) if tunnels => {
                let inside = tunnel::encrypted_overlay_mtu(inp.underlay_mtu, u);
                net.mtu.map_or(inside, |m| m.min(inside))
            }
            _ => overlay_mtu(net.mtu, inp.underlay_mtu, inp.underlay),
        };
        let min = net.min_mtu();
        if mtu < min {
            skipped.push(SkippedNetwork {
                name: net.name.clone(),
                reason: format!(
                "overlay MTU {mtu} on this node (underlay MTU {} minus VXLAN overhead) is below {min}, the minimum for this network; raise the underlay MTU or give the network an explicit --mtu of at least {min}",
                inp.underlay_mtu
                ),
            });
            continue;
        }
        // Checked above for every network, so a node reports what it could not build even
        // before a container of the network comes here.
        if !inp.in_use.contains(&net.name) {
            idle.push(net.name.clone());
            continue;
        }
        let gateway4 = Ipv4Net::new(net.gateway(), net.subnet.prefix_len()).unwrap_or(net.subnet);
        let gateway6 = net
            .subnet6
            .as_ref()
            .map(|s| Ipv6Net::new(crate::model::first_host_v6(s), s.prefix_len()).unwrap_or(*s));
        let vxlan = inp.underlay.map(|local| DesiredVxlan {
            name: net.vxlan_name(),
            vni: net.vni,
            local: (!tunnels).then_some(local),
            port: VXLAN_PORT,
            remotes: Vec::new(),
        });
        let d = DesiredNetwork {
            name: net.name.clone(),
            bridge: net.bridge_name(),
            mac: gateway_mac(net.vni),
            mtu,
            gateway4,
            gateway6,
            vxlan,
            netfilter: inp.policed.contains(&net.name),
        };
        out.insert(net.name.as_str(), (d, net));
    }
    idle.sort();
    (out, skipped, idle)
}

fn build_endpoints(
    inp: &HostInputs<'_>,
    nets: &NetworkMap<'_>,
) -> Result<Vec<DesiredEndpoint>, PlanError> {
    let by_id: BTreeMap<(&str, &str), &Endpoint> = inp
        .endpoints
        .iter()
        .map(|e| ((e.network.as_str(), e.id.as_str()), e))
        .collect();
    let mut out = Vec::new();
    let mut host_names = BTreeSet::new();
    for c in inp.containers {
        let mut names = BTreeSet::new();
        let mut has_default6 = false;
        for (i, li) in c.interfaces.iter().enumerate() {
            let Some((dn, net)) = nets.get(li.network.as_str()) else {
                debug!(netns = %c.netns.display(), network = %li.network, "interface on a network not built here; left out");
                continue;
            };
            let ep = by_id
                .get(&(li.network.as_str(), li.endpoint_id.as_str()))
                .ok_or_else(|| PlanError::UnknownEndpoint {
                    network: li.network.clone(),
                    endpoint: li.endpoint_id.clone(),
                })?;
            if ep.node != inp.node {
                return Err(PlanError::ForeignEndpoint {
                    endpoint: ep.id.clone(),
                    node: ep.node.clone(),
                });
            }
            if !valid_ifname(&li.ifname) {
                return Err(PlanError::InvalidIfname(li.ifname.clone()));
            }
            if !names.insert(li.ifname.as_str()) {
                return Err(PlanError::DuplicateIfname {
                    netns: c.netns.clone(),
                    ifname: li.ifname.clone(),
                });
            }
            let mac = unicast_mac(ep)?;
            if !net.subnet.contains(&ep.ipv4) || ep.ipv4 == dn.gateway4.addr() {
                return Err(PlanError::AddressOutsideSubnet {
                    endpoint: ep.id.clone(),
                    addr: ep.ipv4.into(),
                    subnet: net.subnet.to_string(),
                });
            }
            let ipv6 = match (ep.ipv6, net.subnet6) {
                (None, _) => None,
                (Some(a), Some(s)) if s.contains(&a) && Some(a) != net.gateway6() => {
                    Some(Ipv6Net::new(a, s.prefix_len()).unwrap_or(s))
                }
                (Some(a), s) => {
                    return Err(PlanError::AddressOutsideSubnet {
                        endpoint: ep.id.clone(),
                        addr: a.into(),
                        subnet: s
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "(no IPv6 subnet)".into()),
                    })
                }
            };
            let host_ifname = veth_host_name(&li.network, &li.endpoint_id);
            if !host_names.insert(host_ifname.clone()) {
                return Err(PlanError::DuplicateAttachment {
                    network: li.network.clone(),
                    endpoint: li.endpoint_id.clone(),
                });
            }
            let default6 = match (has_default6, ipv6, dn.gateway6) {
                (false, Some(_), Some(gw)) => {
                    has_default6 = true;
                    Some(gw.addr())
                }
                _ => None,
            };
            out.push(DesiredEndpoint {
                network: li.network.clone(),
                endpoint_id: li.endpoint_id.clone(),
                host_ifname,
                bridge: dn.bridge.clone(),
                netns: c.netns.clone(),
                ifname: li.ifname.clone(),
                mac,
                bridge_mac: dn.mac,
                ipv4: Ipv4Net::new(ep.ipv4, net.subnet.prefix_len()).unwrap_or(net.subnet),
                ipv6,
                mtu: dn.mtu,
                default4: (i == 0).then(|| dn.gateway4.addr()),
                default6,
            });
        }
    }
    out.sort_by(|a, b| (&a.netns, &a.ifname).cmp(&(&b.netns, &b.ifname)));
    Ok(out)
}

fn unicast_mac(ep: &Endpoint) -> Result<MacAddr, PlanError> {
    if ep.mac.is_unicast() {
        Ok(ep.mac)
    } else {
        Err(PlanError::InvalidMac {
            endpoint: ep.id.clone(),
            mac: ep.mac.to_string(),
        })
    }
}

fn add_remotes(inp: &HostInputs<'_>, networks: &mut [DesiredNetwork]) {
    let Some(underlay) = inp.underlay else {
        return;
    };
    // Whether this node encrypts everything: its flag, or its own record says so.
    let mine = inp.encrypt_all
        || inp
            .nodes
            .iter()
            .any(|n| n.name == inp.node && tunnel::encrypts_all(n));
    let nodes: BTreeMap<&str, &Node> = inp.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let subnets: BTreeMap<&str, &Network> =
        inp.networks.iter().map(|n| (n.name.as_str(), n)).collect();
    for dn in networks.iter_mut() {
        let Some(net) = subnets.get(dn.name.as_str()) else {
            continue;
        };
        let Some(vx) = dn.vxlan.as_mut() else {
            continue;
        };
        // Local endpoints' MACs and addresses win over any remote record claiming them.
        let mut macs = BTreeSet::new();
        let mut ips = BTreeSet::from([IpAddr::V4(dn.gateway4.addr())]);
        ips.extend(dn.gateway6.map(|g| IpAddr::V6(g.addr())));
        for ep in inp
            .endpoints
            .iter()
            .filter(|e| e.network == dn.name && e.node == inp.node)
        {
            macs.insert(ep.mac);
            ips.insert(IpAddr::V4(ep.ipv4));
            ips.extend(ep.ipv6.map(IpAddr::V6));
        }
        for ep in inp
            .endpoints
            .iter()
            .filter(|e| e.network == dn.name && e.node != inp.node)
        {
            let skip = |why: &str| warn!(network = %dn.name, endpoint = %ep.id, node = %ep.node, "skipping remote endpoint: {why}");
            let Some(&peer) = nodes.get(ep.node.as_str()) else {
                debug!(network = %dn.name, endpoint = %ep.id, node = %ep.node, "remote endpoint's node is not live");
                continue;
            };
            let (vtep, local) = if tunnel::pair_encrypted(net, mine, peer) {
                let peer_tunnel = peer.wg.as_ref().map(|w| w.tunnel);
                let (Some(mine), Some(theirs)) = (inp.tunnel, peer_tunnel) else {
                    // Never in clear: the endpoint waits for both tunnels.
                    debug!(network = %dn.name, endpoint = %ep.id, node = %ep.node, "remote endpoint waits for the WireGuard tunnel");
                    continue;
                };
                (IpAddr::V4(theirs), IpAddr::V4(mine))
            } else {
                // A device without a fixed source is an IPv4 one: an IPv6 underlay peer is
                // then out of its reach.
                let local = match vx.local {
                    Some(l) => l,
                    None if underlay.is_ipv4() => underlay,
                    None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                };
                (peer.underlay, local)
            };
            if vtep.is_ipv4() != local.is_ipv4() || vtep == local {
                skip("its node's underlay address cannot be reached from this VTEP");
                continue;
            }
            let Ok(mac) = unicast_mac(ep) else {
                skip("invalid MAC");
                continue;
            };
            if !net.subnet.contains(&ep.ipv4) {
                skip("address outside the subnet");
                continue;
            }
            let ipv6 = ep
                .ipv6
                .filter(|a| net.subnet6.is_some_and(|s| s.contains(a)));
            let v6_taken = ipv6.is_some_and(|a| ips.contains(&IpAddr::V6(a)));
            if macs.contains(&mac) || ips.contains(&IpAddr::V4(ep.ipv4)) || v6_taken {
                skip("MAC or address already used by another endpoint");
                continue;
            }
            macs.insert(mac);
            ips.insert(IpAddr::V4(ep.ipv4));
            ips.extend(ipv6.map(IpAddr::V6));
            vx.remotes.push(RemoteEndpoint {
                mac,
                ipv4: ep.ipv4,
                ipv6,
                vtep,
            });
        }
        vx.remotes.sort_by_key(|r| r.mac);
    }
}
