//! Reads the kernel state the plan compares against: shibafu links in the host namespace with
//! their addresses, VXLAN and bridge FDB entries, permanent neighbours, forwarding switches, and
//! the named interfaces and default routes inside container namespaces.
//!
//! The kernel runs one dump at a time per netlink socket, so the dumps of a namespace run in
//! sequence; container namespaces (each with its own socket) are read several at a time. The
//! container sockets are handed back with the observation, so applying the plan right after
//! does not open them again.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

use super::conn::{connect, dump_links, get_link, link_name, Conn};
use super::parse::{attach_addresses, default_routes, fdb_entries, names, neighbours, parse_link};
use super::{sysctl, NetlinkError};
use crate::plan::{is_owned, DesiredHost, ObservedContainer, ObservedHost, ObservedLink};

/// Container namespaces read at the same time (each costs a thread while it is entered).
const CONTAINER_PARALLELISM: usize = 8;

/// The open connections of the container namespaces an observation read.
pub(crate) type ContainerConns = Vec<(PathBuf, Conn)>;

/// Reads the container namespaces `netns`; keeps their connections when `keep` (a scoped
/// observation: a few namespaces), else closes each after reading (a full one: one socket per
/// container would otherwise stay open until the plan is applied).
async fn observe_containers(
    netns: &[&Path],
    keep: bool,
) -> (Vec<ObservedContainer>, ContainerConns) {
    let owned: Vec<PathBuf> = netns.iter().map(|p| p.to_path_buf()).collect();
    let read: Vec<_> = futures::stream::iter(owned)
        .map(|p| async move {
            let (c, conn) = observe_container(p).await;
            (c, conn.filter(|_| keep))
        })
        .buffered(CONTAINER_PARALLELISM)
        .collect()
        .await;
    let mut conns = Vec::new();
    let containers = read
        .into_iter()
        .map(|(c, conn)| {
            conns.extend(conn.map(|conn| (c.netns.clone(), conn)));
            c
        })
        .collect();
    (containers, conns)
}

fn dump_err(what: &str) -> impl Fn(rtnetlink::Error) -> NetlinkError + '_ {
    move |source| NetlinkError::Netlink {
        what: format!("dump {what}"),
        source,
    }
}

async fn dump_addresses(handle: &Handle) -> Result<Vec<AddressMessage>, NetlinkError> {
    handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(dump_err("addresses"))
}

async fn dump_neighbours(
    handle: &Handle,
    family: AddressFamily,
) -> Result<Vec<NeighbourMessage>, NetlinkError> {
    let req = handle.neighbours().get().set_address_family(family);
    req.execute()
        .try_collect()
        .await
        .map_err(dump_err("neighbours"))
}

async fn dump_routes(
    handle: &Handle,
    req: RouteMessage,
) -> Result<Vec<RouteMessage>, NetlinkError> {
    handle
        .route()
        .get(req)
        .execute()
        .try_collect()
        .await
        .map_err(dump_err("routes"))
}

/// Observes the host namespace reached by `handle` and the container namespaces `netns`
/// (keeping their connections when `keep`).
pub(crate) async fn observe(
    handle: &Handle,
    host_netns: Option<&Path>,
    netns: &[&Path],
    keep: bool,
) -> Result<(ObservedHost, ContainerConns), NetlinkError> {
    let host = async {
        let all = dump_links(handle).await?;
        let addrs = dump_addresses(handle).await?;
        let fdb = dump_neighbours(handle, AddressFamily::Bridge).await?;
        let mut neigh = dump_neighbours(handle, AddressFamily::Inet).await?;
        neigh.extend(dump_neighbours(handle, AddressFamily::Inet6).await?);
        Ok::<_, NetlinkError>((all, addrs, fdb, neigh))
    };
    let [brnf4, brnf6, brnf_arp] = sysctl::BRIDGE_NETFILTER;
    let keys = [
        sysctl::FORWARD_V4,
        sysctl::FORWARD_V6,
        brnf4,
        brnf6,
        brnf_arp,
    ];
    let flags = sysctl::read_flags(host_netns, keys);
    let (host, flags, (containers, conns)) =
        futures::join!(host, flags, observe_containers(netns, keep));
    let (all, addrs, fdb_msgs, neighbour_msgs) = host?;
    let [forwarding4, forwarding6, brnf @ ..] = flags?;

    let index_names = names(&all);
    let mut links: Vec<ObservedLink> = all
        .iter()
        .filter(|m| link_name(m).is_some_and(is_owned))
        .map(|m| parse_link(m, &index_names))
        .collect();
    attach_addresses(&mut links, &addrs);
    let by_index = links.iter().map(|l| (l.index, l)).collect();
    let (fdb, port_fdb) = fdb_entries(&fdb_msgs, &by_index);
    let neighbours = neighbours(&neighbour_msgs, &by_index);
    let observed = ObservedHost {
        forwarding4,
        forwarding6,
        bridge_netfilter: brnf.contains(&true),
        links,
        fdb,
        port_fdb,
        neighbours,
        containers,
    };
    Ok((observed, conns))
}

/// Observes only the workloads in `netns`: their namespaces and, on the host, their veth ends
/// (looked up by name, with their bridges to name the master). Nothing else of the host is read:
/// the caller knows the host side is as the last reconcile left it, so the cost does not grow
/// with the number of containers. Host veth addresses are not read (shibafu puts none there; the
/// full resync checks them).
pub(crate) async fn observe_workloads(
    handle: &Handle,
    desired: &DesiredHost,
    netns: &[&Path],
) -> Result<(ObservedHost, ContainerConns), NetlinkError> {
    let eps: Vec<_> = netns.iter().flat_map(|n| desired.endpoints_in(n)).collect();
    let mut wanted: Vec<&str> = eps
        .iter()
        .flat_map(|e| [e.host_ifname.as_str(), e.bridge.as_str()])
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let host = async {
        let mut msgs = Vec::new();
        for name in wanted {
            msgs.extend(get_link(handle, name).await?);
        }
        Ok::<_, NetlinkError>(msgs)
    };
    let (msgs, (containers, conns)) = futures::join!(host, observe_containers(netns, true));
    let msgs = msgs?;
    let index_names = names(&msgs);
    let links = msgs
        .iter()
        .filter(|m| link_name(m).is_some_and(|n| eps.iter().any(|e| e.host_ifname == n)))
        .map(|m| parse_link(m, &index_names))
        .collect();
    let observed = ObservedHost {
        forwarding4: true,
        forwarding6: true,
        bridge_netfilter: false,
        links,
        fdb: Vec::new(),
        port_fdb: Vec::new(),
        neighbours: Vec::new(),
        containers,
    };
    Ok((observed, conns))
}

/// Looks into one container namespace (and keeps its connection); a namespace that cannot be
/// entered is `reachable: false`.
async fn observe_container(netns: PathBuf) -> (ObservedContainer, Option<Conn>) {
    let netns = netns.as_path();
    let res = async {
        let conn = connect(Some(netns)).await?;
        let h = &conn.handle;
        let all = dump_links(h).await?;
        let addrs = dump_addresses(h).await?;
        let r4 = dump_routes(h, RouteMessageBuilder::<Ipv4Addr>::new().build()).await?;
        let r6 = dump_routes(h, RouteMessageBuilder::<Ipv6Addr>::new().build()).await?;
        Ok::<_, NetlinkError>((conn, all, addrs, r4, r6))
    }
    .await;
    match res {
        Ok((conn, all, addrs, mut routes, r6)) => {
            let index_names = names(&all);
            let mut links: Vec<ObservedLink> =
                all.iter().map(|m| parse_link(m, &index_names)).collect();
            attach_addresses(&mut links, &addrs);
            routes.extend(r6);
            let (default4, default6) = default_routes(&routes, &index_names);
            let observed = ObservedContainer {
                netns: netns.to_path_buf(),
                reachable: true,
                links,
                default4,
                default6,
            };
            (observed, Some(conn))
        }
        Err(e) => {
            tracing::warn!(netns = %netns.display(), error = %e, "cannot observe container namespace");
            let observed = ObservedContainer {
                netns: netns.to_path_buf(),
                reachable: false,
                links: Vec::new(),
                default4: Vec::new(),
                default6: Vec::new(),
            };
            (observed, None)
        }
    }
}
