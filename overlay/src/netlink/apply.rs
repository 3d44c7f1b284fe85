//! Executes plan ops with rtnetlink. Each op is idempotent at the kernel boundary: adding what
//! exists (EEXIST) or deleting what is gone (ENOENT, ENODEV, EADDRNOTAVAIL) counts as done.

use std::collections::HashMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressHeaderFlags;
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{
    AddressMessageBuilder, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    LinkVxlan, RouteMessageBuilder,
};

use super::conn::{connect, errno, link_index, Conn};
use super::{sysctl, NetlinkError};
use crate::plan::{IpFamily, LinkRef, MacAddr, Op};

const NUD_PERMANENT: u16 = 0x80;
const NUD_NOARP: u16 = 0x40;

/// The connections one apply uses: the host namespace and each container namespace touched.
/// Dropped at the end of the apply, so no socket pins a container namespace. Link indexes
/// looked up are remembered until a link is created or deleted.
pub(crate) struct Session<'a> {
    host_netns: Option<&'a Path>,
    host: Conn,
    containers: HashMap<PathBuf, Conn>,
    indexes: HashMap<LinkRef, u32>,
}

impl<'a> Session<'a> {
    /// Opens the host connection.
    pub(crate) async fn open(host_netns: Option<&'a Path>) -> Result<Session<'a>, NetlinkError> {
        Ok(Session {
            host_netns,
            host: connect(host_netns).await?,
            containers: HashMap::new(),
            indexes: HashMap::new(),
        })
    }

    /// The host connection's request handle.
    pub(crate) fn host_handle(&self) -> &rtnetlink::Handle {
        &self.host.handle
    }

    /// Takes an already open connection into a container namespace (from an observation).
    pub(crate) fn adopt(&mut self, netns: PathBuf, conn: Conn) {
        self.containers.insert(netns, conn);
    }

    async fn conn_for(&mut self, link: &LinkRef) -> Result<(&Conn, String), NetlinkError> {
        match link {
            LinkRef::Host(name) => Ok((&self.host, name.clone())),
            LinkRef::Container { netns, name } => {
                if !self.containers.contains_key(netns) {
                    let c = connect(Some(netns)).await?;
                    self.containers.insert(netns.clone(), c);
                }
                let conn = self
                    .containers
                    .get(netns)
                    .ok_or_else(|| NetlinkError::NoSuchLink(link.to_string()))?;
                Ok((conn, name.clone()))
            }
        }
    }

    async fn index(&mut self, link: &LinkRef) -> Result<(&Conn, u32), NetlinkError> {
        let cached = self.indexes.get(link).copied();
        let (conn, name) = self.conn_for(link).await?;
        let idx = match cached {
            Some(i) => i,
            None => link_index(&conn.handle, &name).await.map_err(|e| match e {
                NetlinkError::NoSuchLink(_) => NetlinkError::NoSuchLink(link.to_string()),
                e => e,
            })?,
        };
        self.indexes.insert(link.clone(), idx);
        let conn = match link {
            LinkRef::Host(_) => &self.host,
            LinkRef::Container { netns, .. } => self
                .containers
                .get(netns)
                .ok_or_else(|| NetlinkError::NoSuchLink(link.to_string()))?,
        };
        Ok((conn, idx))
    }

    async fn host_index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        Ok(self.index(&LinkRef::Host(name.to_string())).await?.1)
    }

    /// Applies one op.
    pub(crate) async fn apply(&mut self, op: &Op) -> Result<(), NetlinkError> {
        if matches!(
            op,
            Op::DeleteLink(_)
                | Op::CreateBridge { .. }
                | Op::CreateVxlan { .. }
                | Op::CreateVeth { .. }
        ) {
            self.indexes.clear();
        }
        let what = || op.to_string();
        let kernel = |source: rtnetlink::Error| NetlinkError::Netlink {
            what: what(),
            source,
        };
        // Tolerate "already so" replies: EEXIST for adds, gone-already for deletes.
        let ok_if = |codes: &[i32], r: Result<(), rtnetlink::Error>| match r {
            Err(e) if errno(&e).is_some_and(|c| codes.contains(&c)) => Ok(()),
            r => r.map_err(kernel),
        };
        let h = self.host.handle.clone();
        match op {
            Op::EnableForwarding(fam) => {
                let key = match fam {
                    IpFamily::V4 => sysctl::FORWARD_V4,
                    IpFamily::V6 => sysctl::FORWARD_V6,
                };
                sysctl::enable_flag(self.host_netns, key).await
            }
            Op::DisableBridgeNetfilter => {
                sysctl::disable_flags(self.host_netns, &sysctl::BRIDGE_NETFILTER).await
            }
            Op::DeleteLink(name) => match self.host_index(name).await {
                Err(NetlinkError::NoSuchLink(_)) => Ok(()),
                Err(e) => Err(e),
                Ok(idx) => ok_if(&[libc::ENODEV], h.link().del(idx).execute().await),
            },
            Op::CreateBridge { name, mac, mtu } => {
                let msg = LinkMessageBuilder::<LinkBridge>::new(name)
                    .address(mac.octets().to_vec())
                    .mcast_snooping(false)
                    .build();
                h.link().add(msg).execute().await.map_err(kernel)?;
                // The MTU is set as a change after creation: only an MTU changed that way sticks
                // when the bridge's last port leaves (otherwise it falls back to 1500).
                let idx = self.host_index(name).await?;
                let msg = LinkUnspec::new_with_index(idx).mtu(*mtu).build();
                h.link().set(msg).execute().await.map_err(kernel)
            }
            Op::CreateVxlan {
                name,
                vni,
                local,
                port,
                mtu,
            } => {
                let b = LinkVxlan::new(name, *vni)
                    .port(*port)
                    .learning(false)
                    .mtu(*mtu);
                let b = match local {
                    Some(IpAddr::V4(a)) => b.local(*a),
                    Some(IpAddr::V6(a)) => b.local6(*a),
                    None => b,
                };
                h.link().add(b.build()).execute().await.map_err(kernel)
            }
            Op::CreateVeth {
                host,
                netns,
                peer,
                peer_mac,
                host_mac,
                mtu,
                peer_ipv6,
            } => {
                let ns = File::open(netns).map_err(|source| {
                    NetlinkError::Netns(crate::netns::NetnsError::Open {
                        path: netns.clone(),
                        source,
                    })
                })?;
                let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
                    .name(peer.clone())
                    .mtu(*mtu)
                    .address(peer_mac.octets().to_vec())
                    .setns_by_fd(ns.as_raw_fd())
                    .build();
                let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                    .name(host.clone())
                    .mtu(*mtu)
                    .address(host_mac.octets().to_vec())
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
                    .build();
                let res = h.link().add(msg).execute().await.map_err(kernel);
                drop(ns);
                res?;
                // Before either end is up: see `no_link_local`. The host end, a bridge port,
                // takes no part in IPv6 at all where /proc/sys allows: with a link-local left
                // out the kernel still gives it a multicast route (ff00::/8) in the host's
                // table, which each new one's route insert and every link change walk.
                // A kernel without IPv6 has no link-locals to leave out.
                let v6 = [libc::EAFNOSUPPORT];
                if !sysctl::disable_ipv6(self.host_netns, host).await? {
                    let (c, idx) = self.index(&LinkRef::Host(host.clone())).await?;
                    ok_if(&v6, c.handle.link().set(no_link_local(idx)).execute().await)?;
                }
                if !peer_ipv6 {
                    let inner = LinkRef::Container {
                        netns: netns.clone(),
                        name: peer.clone(),
                    };
                    let (c, idx) = self.index(&inner).await?;
                    ok_if(&v6, c.handle.link().set(no_link_local(idx)).execute().await)?;
                }
                Ok(())
            }
            Op::SetBridgeNetfilter { name, on } => {
                // RTM_NEWLINK on the existing bridge (`ip link set NAME type bridge ...`):
                // only the two options change.
                let idx = self.host_index(name).await?;
                let msg = LinkMessageBuilder::<LinkBridge>::new_with_info_kind(InfoKind::Bridge)
                    .index(idx)
                    .nf_call_iptables(*on)
                    .nf_call_ip6tables(*on)
                    .build();
                h.link().change(msg).execute().await.map_err(kernel)
            }
            Op::DisableMulticastSnooping { name } => {
                let idx = self.host_index(name).await?;
                let msg = LinkMessageBuilder::<LinkBridge>::new_with_info_kind(InfoKind::Bridge)
                    .index(idx)
                    .mcast_snooping(false)
                    .build();
                h.link().change(msg).execute().await.map_err(kernel)
            }
            Op::SetMtu { link, mtu } => {
                let (c, idx) = self.index(link).await?;
                let msg = LinkUnspec::new_with_index(idx).mtu(*mtu).build();
                c.handle.link().set(msg).execute().await.map_err(kernel)
            }
            Op::SetMac { link, mac } => {
                let (c, idx) = self.index(link).await?;
                let msg = LinkUnspec::new_with_index(idx)
                    .address(mac.octets().to_vec())
                    .build();
                c.handle.link().set(msg).execute().await.map_err(kernel)
            }
            Op::SetUp(link) => {
                let (c, idx) = self.index(link).await?;
                let msg = LinkUnspec::new_with_index(idx).up().build();
                c.handle.link().set(msg).execute().await.map_err(kernel)
            }
            Op::SetMaster { name, master } => {
                let idx = self.host_index(name).await?;
                let m = self.host_index(master).await?;
                let msg = LinkUnspec::new_with_index(idx).controller(m).build();
                match h.link().set(msg).execute().await {
                    Err(e) if errno(&e) == Some(libc::EXFULL) => Err(NetlinkError::BridgeFull {
                        bridge: master.clone(),
                        port: name.clone(),
                    }),
                    r => r.map_err(kernel),
                }
            }
            Op::SetPortFlags {
                name,
                neigh_suppress,
                learning,
            } => {
                let idx = self.host_index(name).await?;
                let msg = LinkBridgePort::new(idx)
                    .neigh_suppress(*neigh_suppress)
                    .learning(*learning)
                    .build();
                h.link().set_port(msg).execute().await.map_err(kernel)
            }
            Op::AddAddress { link, addr } => {
                let (c, idx) = self.index(link).await?;
                let mut req = c.handle.address().add(idx, addr.addr(), addr.prefix_len());
                if addr.addr().is_ipv6() {
                    // The gateway and container addresses are unique by IPAM: skip DAD so they
                    // are usable at once.
                    req.message_mut().header.flags = AddressHeaderFlags::Nodad;
                }
                ok_if(&[libc::EEXIST], req.execute().await)
            }
            Op::DelAddress { link, addr } => {
                let (c, idx) = self.index(link).await?;
                let msg = address_message(idx, addr);
                ok_if(
                    &[libc::EADDRNOTAVAIL, libc::ENOENT],
                    c.handle.address().del(msg).execute().await,
                )
            }
            Op::SetDefaultRoute { link, gateway } => {
                let (c, idx) = self.index(link).await?;
                let msg = match gateway {
                    IpAddr::V4(g) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                        .gateway(*g)
                        .output_interface(idx)
                        .build(),
                    IpAddr::V6(g) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                        .gateway(*g)
                        .output_interface(idx)
                        .build(),
                };
                c.handle
                    .route()
                    .add(msg)
                    .replace()
                    .execute()
                    .await
                    .map_err(kernel)
            }
            Op::AddFdb { vxlan, mac, vtep } => {
                let idx = self.host_index(vxlan).await?;
                let req = h
                    .neighbours()
                    .add_bridge(idx, &mac.octets())
                    .flags(NeighbourFlags::Own)
                    .state(NeighbourState::Other(NUD_PERMANENT | NUD_NOARP))
                    .destination(*vtep);
                ok_if(&[libc::EEXIST], req.execute().await)
            }
            Op::DelFdb { vxlan, mac, vtep } => {
                let idx = self.host_index(vxlan).await?;
                let mut msg = fdb_message(idx, *mac, NeighbourFlags::Own);
                msg.attributes
                    .push(NeighbourAttribute::Destination(neigh_addr(*vtep)));
                ok_if(&[libc::ENOENT], h.neighbours().del(msg).execute().await)
            }
            Op::AddPortFdb { port, mac } => {
                let idx = self.host_index(port).await?;
                let req = h
                    .neighbours()
                    .add_bridge(idx, &mac.octets())
                    .flags(NeighbourFlags::Controller)
                    .state(NeighbourState::Noarp)
                    .replace();
                req.execute().await.map_err(kernel)
            }
            Op::DelPortFdb { port, mac } => {
                let idx = self.host_index(port).await?;
                let msg = fdb_message(idx, *mac, NeighbourFlags::Controller);
                ok_if(&[libc::ENOENT], h.neighbours().del(msg).execute().await)
            }
            Op::SetNeigh { bridge, ip, mac } => {
                let idx = self.host_index(bridge).await?;
                let req = h
                    .neighbours()
                    .add(idx, *ip)
                    .link_layer_address(&mac.octets())
                    .state(NeighbourState::Permanent)
                    .replace();
                req.execute().await.map_err(kernel)
            }
            Op::DelNeigh { bridge, ip } => {
                let idx = self.host_index(bridge).await?;
                let mut msg = NeighbourMessage::default();
                msg.header.family = if ip.is_ipv4() {
                    AddressFamily::Inet
                } else {
                    AddressFamily::Inet6
                };
                msg.header.ifindex = idx;
                msg.attributes
                    .push(NeighbourAttribute::Destination(neigh_addr(*ip)));
                ok_if(&[libc::ENOENT], h.neighbours().del(msg).execute().await)
            }
        }
    }
}

/// A link change giving link `idx` no IPv6 link-local address (`addrgenmode none`; set before
/// the link is up, as the kernel takes it only then). A container on an IPv4-only network needs
/// none, and a bridge port none either (this is its fallback where IPv6 cannot be turned off on
/// it: `sysctl::disable_ipv6`); each one costs, as a container comes up, duplicate address
/// detection, MLD reports and router solicitations flooded to every port of the bridge: with
/// 1,000 containers on a bridge that made each attach slower than the one before.
fn no_link_local(idx: u32) -> LinkMessage {
    let mut msg = LinkUnspec::new_with_index(idx).build();
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    msg
}

fn address_message(idx: u32, addr: &IpNet) -> rtnetlink::packet_route::address::AddressMessage {
    match addr {
        IpNet::V4(a) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(idx)
            .address(a.addr(), a.prefix_len())
            .build(),
        IpNet::V6(a) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(idx)
            .address(a.addr(), a.prefix_len())
            .build(),
    }
}

fn fdb_message(idx: u32, mac: MacAddr, flags: NeighbourFlags) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = idx;
    msg.header.flags = flags;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
    msg
}

fn neigh_addr(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}
