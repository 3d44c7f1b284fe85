//! rtnetlink connections bound to a network namespace, and link-name resolution.

use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::Handle;
use tokio::task::JoinHandle;

use super::NetlinkError;
use crate::netns;

/// A netlink handle plus its connection task; dropping it closes the socket (a socket bound in a
/// container namespace would otherwise keep that namespace alive).
pub(crate) struct Conn {
    /// The request handle.
    pub(crate) handle: Handle,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a route-netlink connection in the namespace at `netns` (`None` = the caller's own).
/// The socket is created on a thread inside the namespace and stays bound to it.
pub(crate) async fn connect(netns: Option<&Path>) -> Result<Conn, NetlinkError> {
    let (connection, handle, _) = match netns {
        None => rtnetlink::new_connection().map_err(NetlinkError::Socket)?,
        Some(path) => {
            let rt = tokio::runtime::Handle::current();
            netns::run_in_async(path, move || {
                let _guard = rt.enter();
                rtnetlink::new_connection()
            })
            .await?
            .map_err(NetlinkError::Socket)?
        }
    };
    let task = tokio::spawn(connection);
    Ok(Conn { handle, task })
}

/// The positive errno of a netlink error reply, if it is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Dumps every link of the connection's namespace (without statistics, which nothing reads).
pub(crate) async fn dump_links(handle: &Handle) -> Result<Vec<LinkMessage>, NetlinkError> {
    handle
        .link()
        .get()
        .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
        .execute()
        .try_collect()
        .await
        .map_err(|source| NetlinkError::Netlink {
            what: "dump links".into(),
            source,
        })
}

/// The link named `name`, if it exists.
pub(crate) async fn get_link(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, NetlinkError> {
    let res = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match res {
        Ok(m) => Ok(m),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(source) => Err(NetlinkError::Netlink {
            what: format!("look up link {name}"),
            source,
        }),
    }
}

/// Index of the link named `name`.
pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<u32, NetlinkError> {
    get_link(handle, name)
        .await?
        .map(|m| m.header.index)
        .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))
}

/// The name attribute of a link message.
pub(crate) fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}
