//! The WireGuard device's link in the caller's namespace: create one of kind `wireguard`
//! (where the kernel has the module), read its kind, and bring it to its MTU, address and up.

use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo};
use rtnetlink::{LinkMessageBuilder, LinkUnspec};

use futures::TryStreamExt;

use super::conn::{connect, errno, get_link};
use super::NetlinkError;

/// What a link named as the device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelLink {
    /// None exists.
    Missing,
    /// A kernel WireGuard device.
    Kernel,
    /// Anything else (a userspace implementation's TUN device).
    Other(String),
}

fn kernel(what: &str) -> impl FnOnce(rtnetlink::Error) -> NetlinkError + '_ {
    move |source| NetlinkError::Netlink {
        what: what.to_string(),
        source,
    }
}

/// What the link `name` is.
pub async fn tunnel_link(name: &str) -> Result<TunnelLink, NetlinkError> {
    let c = connect(None).await?;
    let Some(m) = get_link(&c.handle, name).await? else {
        return Ok(TunnelLink::Missing);
    };
    let kind = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.clone()),
            _ => None,
        }),
        _ => None,
    });
    Ok(match kind {
        Some(InfoKind::Wireguard) => TunnelLink::Kernel,
        Some(k) => TunnelLink::Other(k.to_string()),
        None => TunnelLink::Other("unknown".into()),
    })
}

/// Creates a kernel WireGuard link `name`; the kernel's refusal (no module: EOPNOTSUPP) is the
/// error.
pub async fn create_wireguard(name: &str) -> Result<(), NetlinkError> {
    let c = connect(None).await?;
    let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Wireguard)
        .name(name.to_string())
        .build();
    c.handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(kernel("create a wireguard link"))
}

/// Deletes link `name` if it exists.
pub async fn delete_link(name: &str) -> Result<(), NetlinkError> {
    let c = connect(None).await?;
    let Some(m) = get_link(&c.handle, name).await? else {
        return Ok(());
    };
    match c.handle.link().del(m.header.index).execute().await {
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        r => r.map_err(kernel("delete the tunnel link")),
    }
}

/// Gives link `name` MTU `mtu` and address `addr` (its other IPv4 addresses removed) and brings
/// it up, changing only what differs.
pub async fn configure_tunnel_link(
    name: &str,
    mtu: u32,
    addr: Ipv4Net,
) -> Result<(), NetlinkError> {
    let c = connect(None).await?;
    let h = &c.handle;
    let m = get_link(h, name)
        .await?
        .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))?;
    let index = m.header.index;
    let have_mtu = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(v) => Some(*v),
        _ => None,
    });
    if have_mtu != Some(mtu) {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        h.link()
            .set(msg)
            .execute()
            .await
            .map_err(kernel("set the tunnel MTU"))?;
    }
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(kernel("list the tunnel addresses"))?;
    let mut present = false;
    for a in addrs {
        let v4 = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(std::net::IpAddr::V4(v)) => Some(*v),
            _ => None,
        });
        let Some(v4) = v4 else { continue };
        if v4 == addr.addr() && a.header.prefix_len == addr.prefix_len() {
            present = true;
        } else {
            h.address()
                .del(a)
                .execute()
                .await
                .map_err(kernel("remove a stale tunnel address"))?;
        }
    }
    if !present {
        let req = h
            .address()
            .add(index, addr.addr().into(), addr.prefix_len());
        match req.execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            r => r.map_err(kernel("add the tunnel address"))?,
        }
    }
    if !m.header.flags.contains(LinkFlags::Up) {
        let msg = LinkUnspec::new_with_index(index).up().build();
        h.link()
            .set(msg)
            .execute()
            .await
            .map_err(kernel("bring the tunnel up"))?;
    }
    Ok(())
}
