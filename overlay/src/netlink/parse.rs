//! Pure translation of netlink dump messages into the observed-state types the plan compares.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVxlan, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};

use super::conn::link_name;
use crate::plan::{
    LinkKind, MacAddr, ObservedFdb, ObservedLink, ObservedNeigh, ObservedPortFdb, PortFlags,
};

const NUD_PERMANENT: u16 = 0x80;
const NUD_NOARP: u16 = 0x40;

/// Turns a link message into what the plan compares.
pub(crate) fn parse_link(m: &LinkMessage, names: &HashMap<u32, String>) -> ObservedLink {
    let mut l = ObservedLink {
        name: link_name(m).unwrap_or_default().to_string(),
        index: m.header.index,
        kind: LinkKind::Other(String::new()),
        mtu: 0,
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
        master: None,
        port: None,
        peer_index: None,
        addresses: Vec::new(),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Address(b) => l.mac = MacAddr::from_slice(b),
            LinkAttribute::Controller(i) => l.master = names.get(i).cloned(),
            LinkAttribute::Link(i) => l.peer_index = Some(*i),
            LinkAttribute::LinkInfo(infos) => parse_info(infos, &mut l),
            _ => {}
        }
    }
    l
}

fn parse_info(infos: &[LinkInfo], l: &mut ObservedLink) {
    for info in infos {
        match info {
            LinkInfo::Kind(InfoKind::Bridge) if !matches!(l.kind, LinkKind::Bridge { .. }) => {
                l.kind = LinkKind::Bridge {
                    nf_call_iptables: false,
                    nf_call_ip6tables: false,
                    mcast_snooping: true,
                };
            }
            LinkInfo::Kind(InfoKind::Veth) => l.kind = LinkKind::Veth,
            LinkInfo::Kind(InfoKind::Vxlan) if !matches!(l.kind, LinkKind::Vxlan { .. }) => {
                l.kind = LinkKind::Vxlan {
                    vni: 0,
                    local: None,
                    port: 0,
                    learning: true,
                };
            }
            // Already filled in by a data attribute that came before the kind.
            LinkInfo::Kind(InfoKind::Bridge | InfoKind::Vxlan) => {}
            LinkInfo::Kind(k) => l.kind = LinkKind::Other(k.to_string()),
            LinkInfo::Data(InfoData::Vxlan(v)) => {
                let (mut vni, mut local, mut port, mut learning) = (0, None, 0, true);
                for x in v {
                    match x {
                        InfoVxlan::Id(i) => vni = *i,
                        InfoVxlan::Local(a) => local = Some(IpAddr::V4(*a)),
                        InfoVxlan::Local6(a) => local = Some(IpAddr::V6(*a)),
                        InfoVxlan::Port(p) => port = *p,
                        InfoVxlan::Learning(b) => learning = *b,
                        _ => {}
                    }
                }
                l.kind = LinkKind::Vxlan {
                    vni,
                    local,
                    port,
                    learning,
                };
            }
            LinkInfo::Data(InfoData::Bridge(b)) => {
                let (mut ipt, mut ip6t, mut snooping) = (false, false, true);
                for x in b {
                    match x {
                        InfoBridge::NfCallIpTables(on) => ipt = *on,
                        InfoBridge::NfCallIp6Tables(on) => ip6t = *on,
                        InfoBridge::MulticastSnooping(on) => snooping = *on,
                        _ => {}
                    }
                }
                l.kind = LinkKind::Bridge {
                    nf_call_iptables: ipt,
                    nf_call_ip6tables: ip6t,
                    mcast_snooping: snooping,
                };
            }
            LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                let mut flags = PortFlags {
                    neigh_suppress: false,
                    learning: true,
                };
                for x in p {
                    match x {
                        InfoBridgePort::NeighSupress(b) => flags.neigh_suppress = *b,
                        InfoBridgePort::Learning(b) => flags.learning = *b,
                        _ => {}
                    }
                }
                l.port = Some(flags);
            }
            _ => {}
        }
    }
}

/// Fills in the addresses of `links` (IPv6 link-local ones left out: the kernel owns them).
pub(crate) fn attach_addresses(links: &mut [ObservedLink], msgs: &[AddressMessage]) {
    for m in msgs {
        let Some(link) = links.iter_mut().find(|l| l.index == m.header.index) else {
            continue;
        };
        let local = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = local.or_else(|| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        let Some(ip) = addr else { continue };
        if let IpAddr::V6(v6) = ip {
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                continue;
            }
        }
        if let Ok(net) = IpNet::new(ip, m.header.prefix_len) {
            link.addresses.push(net);
        }
    }
}

/// The address of a neighbour attribute. In AF_BRIDGE (FDB) messages the parser cannot know the
/// destination's family and hands raw bytes: 4 or 16 of them are an IPv4 or IPv6 VTEP.
pub(crate) fn neigh_ip(d: &NeighbourAddress) -> Option<IpAddr> {
    match d {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        NeighbourAddress::Other(b) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice())
                .ok()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            16 => <[u8; 16]>::try_from(b.as_slice())
                .ok()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        },
        _ => None,
    }
}

/// VXLAN FDB entries and static bridge entries on VXLAN ports.
pub(crate) type FdbLists = (Vec<ObservedFdb>, Vec<ObservedPortFdb>);

/// VXLAN `self` entries (with a destination) and static bridge entries on shibafu VXLAN ports.
pub(crate) fn fdb_entries(
    msgs: &[NeighbourMessage],
    ours: &HashMap<u32, &ObservedLink>,
) -> FdbLists {
    let (mut fdb, mut port_fdb) = (Vec::new(), Vec::new());
    for m in msgs {
        let Some(link) = ours.get(&m.header.ifindex) else {
            continue;
        };
        if !matches!(link.kind, LinkKind::Vxlan { .. }) {
            continue;
        }
        let mut mac = None;
        let mut dst = None;
        let mut has_master = false;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::LinkLayerAddress(b) => mac = MacAddr::from_slice(b),
                NeighbourAttribute::Destination(d) => dst = neigh_ip(d),
                NeighbourAttribute::Controller(_) => has_master = true,
                _ => {}
            }
        }
        let Some(mac) = mac else { continue };
        let state = u16::from(m.header.state);
        if m.header.flags.contains(NeighbourFlags::Own) || (!has_master && dst.is_some()) {
            if let Some(vtep) = dst {
                fdb.push(ObservedFdb {
                    vxlan: link.name.clone(),
                    mac,
                    vtep,
                });
            }
        } else if has_master && state & NUD_NOARP != 0 && state & NUD_PERMANENT == 0 {
            port_fdb.push(ObservedPortFdb {
                port: link.name.clone(),
                mac,
            });
        }
    }
    fdb.sort();
    port_fdb.sort();
    (fdb, port_fdb)
}

/// Permanent neighbour entries on shibafu bridges.
pub(crate) fn neighbours(
    msgs: &[NeighbourMessage],
    ours: &HashMap<u32, &ObservedLink>,
) -> Vec<ObservedNeigh> {
    let mut out = Vec::new();
    for m in msgs {
        let Some(link) = ours.get(&m.header.ifindex) else {
            continue;
        };
        if !matches!(link.kind, LinkKind::Bridge { .. })
            || m.header.state != NeighbourState::Permanent
        {
            continue;
        }
        let mut ip = None;
        let mut mac = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(d) => ip = neigh_ip(d),
                NeighbourAttribute::LinkLayerAddress(b) => mac = MacAddr::from_slice(b),
                _ => {}
            }
        }
        if let (Some(ip), Some(mac)) = (ip, mac) {
            out.push(ObservedNeigh {
                bridge: link.name.clone(),
                ip,
                mac,
            });
        }
    }
    out.sort();
    out
}

/// IPv4 and IPv6 default routes as (gateway, interface name).
pub(crate) type DefaultRoutes = (Vec<(Ipv4Addr, String)>, Vec<(Ipv6Addr, String)>);

/// The routing table a route is in (the 32-bit attribute when present, else the header's byte).
pub(crate) fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

/// Default routes of the main table, as (gateway, interface name).
pub(crate) fn default_routes(msgs: &[RouteMessage], names: &HashMap<u32, String>) -> DefaultRoutes {
    let mut d4 = Vec::new();
    let mut d6 = Vec::new();
    for m in msgs {
        let table = route_table(m);
        if m.header.destination_prefix_length != 0
            || table != u32::from(RouteHeader::RT_TABLE_MAIN)
            || m.header.kind != RouteType::Unicast
        {
            continue;
        }
        let mut gw = None;
        let mut oif = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Gateway(g) => gw = Some(g.clone()),
                RouteAttribute::Oif(i) => oif = names.get(i).cloned(),
                _ => {}
            }
        }
        match (gw, oif) {
            (Some(RouteAddress::Inet(g)), Some(dev)) => d4.push((g, dev)),
            (Some(RouteAddress::Inet6(g)), Some(dev)) => d6.push((g, dev)),
            _ => {}
        }
    }
    (d4, d6)
}

/// Index -> name of every link in a dump.
pub(crate) fn names(all: &[LinkMessage]) -> HashMap<u32, String> {
    all.iter()
        .filter_map(|m| link_name(m).map(|n| (m.header.index, n.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use rtnetlink::{LinkBridge, LinkMessageBuilder};

    use super::*;

    fn bridge(
        build: impl FnOnce(LinkMessageBuilder<LinkBridge>) -> LinkMessageBuilder<LinkBridge>,
    ) -> LinkKind {
        let msg = build(LinkMessageBuilder::<LinkBridge>::new("sfbr1000")).build();
        parse_link(&msg, &HashMap::new()).kind
    }

    #[test]
    fn a_bridge_carries_its_netfilter_switches_and_snooping() {
        let br = |ipt, ip6t, snooping| LinkKind::Bridge {
            nf_call_iptables: ipt,
            nf_call_ip6tables: ip6t,
            mcast_snooping: snooping,
        };
        let kind = bridge(|b| b.nf_call_iptables(true).nf_call_ip6tables(false));
        assert_eq!(kind, br(true, false, true));
        let kind = bridge(|b| b.nf_call_ip6tables(true).nf_call_iptables(true));
        assert_eq!(kind, br(true, true, true));
        assert_eq!(bridge(|b| b.mcast_snooping(false)), br(false, false, false));
        // A kernel without CONFIG_BRIDGE_NETFILTER reports neither: both off; snooping not
        // reported is the kernel's default, on.
        assert_eq!(bridge(|b| b.vlan_filtering(false)), br(false, false, true));
        assert_eq!(bridge(|b| b), br(false, false, true));
    }

    #[test]
    fn link_data_before_its_kind_is_kept() {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::NfCallIpTables(true),
                InfoBridge::NfCallIp6Tables(true),
            ])),
            LinkInfo::Kind(InfoKind::Bridge),
        ]));
        assert_eq!(
            parse_link(&msg, &HashMap::new()).kind,
            LinkKind::Bridge {
                nf_call_iptables: true,
                nf_call_ip6tables: true,
                mcast_snooping: true,
            }
        );
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(7),
                InfoVxlan::Learning(false),
            ])),
            LinkInfo::Kind(InfoKind::Vxlan),
        ]));
        assert!(matches!(
            parse_link(&msg, &HashMap::new()).kind,
            LinkKind::Vxlan {
                vni: 7,
                learning: false,
                ..
            }
        ));
    }
}
