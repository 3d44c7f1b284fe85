//! Read-only views for diagnosis: everything in one namespace (links, addresses, main-table
//! routes, neighbours) and the host's shibafu links with their FDB and neighbour entries.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

use super::conn::{connect, dump_links};
use super::parse::{attach_addresses, names, parse_link, route_table};
use super::{Dataplane, NetlinkDataplane, NetlinkError, Scope};
use crate::api::{NamespaceNet, NeighbourEntry, RouteEntry};
use crate::plan::{DesiredHost, MacAddr, ObservedHost, ObservedLink};

fn dump_err(what: &'static str) -> impl Fn(rtnetlink::Error) -> NetlinkError {
    move |source| NetlinkError::Netlink {
        what: format!("dump {what}"),
        source,
    }
}

/// Reads the namespace at `netns` (`None`: the caller's own): every link with its addresses
/// (IPv6 link-local left out), the main table's unicast routes and every neighbour entry.
pub async fn inspect_namespace(netns: Option<&Path>) -> Result<NamespaceNet, NetlinkError> {
    let conn = connect(netns).await?;
    let h = &conn.handle;
    let all = dump_links(h).await?;
    let addrs: Vec<_> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(dump_err("addresses"))?;
    let mut routes: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(dump_err("routes"))?;
    let r6: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(dump_err("routes"))?;
    routes.extend(r6);
    let mut neigh: Vec<NeighbourMessage> = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let part: Vec<NeighbourMessage> = h
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(dump_err("neighbours"))?;
        neigh.extend(part);
    }
    let index_names = names(&all);
    let mut links: Vec<ObservedLink> = all.iter().map(|m| parse_link(m, &index_names)).collect();
    attach_addresses(&mut links, &addrs);
    Ok(NamespaceNet {
        links,
        routes: main_routes(&routes, &index_names),
        neighbours: neighbour_entries(&neigh, &index_names),
    })
}

/// The host side as the dataplane observes it (no container namespaces entered).
pub async fn inspect_host(dp: &NetlinkDataplane) -> Result<ObservedHost, NetlinkError> {
    dp.observe(&DesiredHost::default(), &Scope::Only(Vec::new()))
        .await
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Unicast routes of the main table (IPv6 multicast and link-local prefixes left out).
fn main_routes(msgs: &[RouteMessage], names: &HashMap<u32, String>) -> Vec<RouteEntry> {
    let mut out = Vec::new();
    for m in msgs {
        let table = route_table(m);
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) || m.header.kind != RouteType::Unicast {
            continue;
        }
        let mut e = RouteEntry {
            dst: None,
            gateway: None,
            dev: None,
        };
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => {
                    e.dst = route_ip(d)
                        .and_then(|ip| IpNet::new(ip, m.header.destination_prefix_length).ok());
                }
                RouteAttribute::Gateway(g) => e.gateway = route_ip(g),
                RouteAttribute::Oif(i) => e.dev = names.get(i).cloned(),
                _ => {}
            }
        }
        let link_local =
            matches!(e.dst, Some(IpNet::V6(n)) if n.addr().segments()[0] & 0xffc0 == 0xfe80);
        if !link_local {
            out.push(e);
        }
    }
    out
}

/// The kernel's name of a neighbour state.
fn state_name(s: NeighbourState) -> String {
    match s {
        NeighbourState::Incomplete => "incomplete".into(),
        NeighbourState::Reachable => "reachable".into(),
        NeighbourState::Stale => "stale".into(),
        NeighbourState::Delay => "delay".into(),
        NeighbourState::Probe => "probe".into(),
        NeighbourState::Failed => "failed".into(),
        NeighbourState::Noarp => "noarp".into(),
        NeighbourState::Permanent => "permanent".into(),
        NeighbourState::None => "none".into(),
        NeighbourState::Other(n) => format!("0x{n:x}"),
        _ => "unknown".into(),
    }
}

/// Every neighbour entry with an address, sorted.
fn neighbour_entries(
    msgs: &[NeighbourMessage],
    names: &HashMap<u32, String>,
) -> Vec<NeighbourEntry> {
    let mut out: Vec<NeighbourEntry> = msgs
        .iter()
        .filter_map(|m| {
            let mut ip = None;
            let mut mac = None;
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::Destination(d) => ip = super::parse::neigh_ip(d),
                    NeighbourAttribute::LinkLayerAddress(b) => mac = MacAddr::from_slice(b),
                    _ => {}
                }
            }
            Some(NeighbourEntry {
                dev: names.get(&m.header.ifindex).cloned().unwrap_or_default(),
                ip: ip?,
                mac,
                state: state_name(m.header.state),
            })
        })
        .collect();
    out.sort();
    out
}
