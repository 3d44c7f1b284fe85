//! Isolation and NAT of shibafu networks with nftables, in shibafu's own table only.
//!
//! [`FirewallSpec`] is plain data built from the model (networks, links, the node's uplink),
//! composed from its owners' parts by [`Composer`];
//! [`render_ruleset`] turns it into one nft script that replaces `table inet shibafu` atomically
//! and touches no other table; [`NftFirewall`] applies it with `nft -f -` and remembers the last
//! spec so [`Firewall::ensure`] can put it back after someone flushed the ruleset.

mod compose;
mod conditional;
mod guard;
mod intra;
mod nfset;
mod nft;
mod render;
mod session;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use compose::{Composer, Part};
pub use conditional::comments as conditional_comments;
pub use guard::{
    guard_comments, planned_ports, render_guard, render_guard_change, render_guard_removal,
    GuardPorts, PortBinding, GUARD_TABLE,
};
pub use nfset::{change_elements, ElementChange, ElementOp};
pub use nft::NftFirewall;
pub use render::{render_removal, render_ruleset, rule_comments, TABLE};

use crate::model::{Link, Network};

/// Errors of building or applying the ruleset.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The uplink name cannot be an interface name.
    #[error("invalid uplink interface name {0:?}: use 1-15 letters, digits, '.', '_', '-' or '@'")]
    InvalidUplink(String),
    /// `nft` could not be started.
    #[error("cannot run {}: {source}; is nftables installed?", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `nft` refused the script.
    #[error("nft {action} failed ({status}): {stderr}")]
    Nft {
        /// What was attempted.
        action: String,
        /// Exit status.
        status: String,
        /// Its error output.
        stderr: String,
    },
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    /// The kernel refused a set element change: nothing of its batch was applied.
    #[error(
        "{} element {} of set inet {table} {} (change #{index} of the batch) failed: {source}{}",
        change.op, change.addr, change.set, nfset::hint(source)
    )]
    SetElement {
        /// The table.
        table: String,
        /// The change the kernel pointed at.
        change: ElementChange,
        /// Its index in the batch's changes.
        index: usize,
        /// The kernel's errno.
        source: std::io::Error,
    },
    /// Talking to nf_tables over netlink failed.
    #[error("nf_tables netlink: {what}: {source}")]
    Netlink {
        /// What was attempted.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A table or set name nftables cannot hold.
    #[error("invalid nftables {what} name {name:?}: use 1-255 bytes without NUL")]
    InvalidName {
        /// "table" or "set".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The blocking helper task failed.
    #[error("firewall helper task failed: {0}")]
    Task(String),
}

/// One network as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallNetwork {
    /// Network name.
    pub name: String,
    /// Its bridge.
    pub bridge: String,
    /// IPv4 subnet.
    pub subnet: Ipv4Net,
    /// IPv6 subnet.
    pub subnet6: Option<Ipv6Net>,
    /// IPv4 gateway (DNS server).
    pub gateway: Ipv4Addr,
    /// IPv6 gateway (DNS server).
    pub gateway6: Option<Ipv6Addr>,
    /// No way out of the cluster.
    pub internal: bool,
}

/// Everything the ruleset is rendered from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallSpec {
    /// Networks, sorted by bridge.
    pub networks: Vec<FirewallNetwork>,
    /// Linked network pairs as bridge names (each pair once, sorted).
    pub links: Vec<(String, String)>,
    /// Interface outbound traffic is masqueraded on; `None` = any non-shibafu interface.
    pub uplink: Option<String>,
    /// Inbound VXLAN traffic of these VNIs is taken only from the WireGuard device: a packet
    /// for an encrypted network arriving in clear is dropped (sorted).
    pub sealed_vnis: Vec<u32>,
    /// The WireGuard device, when it is up.
    pub tunnel_if: Option<String>,
    /// The tunnel range, when VXLAN runs inside the tunnels here: VXLAN packets to it leave only
    /// through the WireGuard device (were the device gone, they would follow the default route
    /// onto the underlay in clear).
    pub tunnel_range: Option<ipnet::Ipv4Net>,
    /// The cluster's control plane, which containers never reach.
    pub control: ControlPlane,
    /// This node's container ports and what each was given: the source guard. A persistent
    /// set: the spec is cloned, compared and diffed on its way to nft once per attach, which
    /// costs the changed port, not the 1,000 others.
    pub ports: GuardPorts,
}

impl FirewallSpec {
    /// Is everything but the ports the same in `other` (so only the guard's elements differ)?
    pub fn same_but_ports(&self, other: &FirewallSpec) -> bool {
        let FirewallSpec {
            networks,
            links,
            uplink,
            sealed_vnis,
            tunnel_if,
            tunnel_range,
            control,
            ports: _,
        } = self;
        *networks == other.networks
            && *links == other.links
            && *uplink == other.uplink
            && *sealed_vnis == other.sealed_vnis
            && *tunnel_if == other.tunnel_if
            && *tunnel_range == other.tunnel_range
            && *control == other.control
    }
}

/// Where the control plane listens: etcd, the coordinators' API and the metrics endpoints.
/// Containers reach none of these ports on these hosts (forwarded), nor these ports on their
/// own node (input). Both lists sorted and without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlane {
    /// Addresses of the hosts: every node's underlay, the coordinators, etcd.
    pub hosts: Vec<std::net::IpAddr>,
    /// TCP ports of the services: etcd clients, coordinator APIs, metrics.
    pub ports: Vec<u16>,
}

impl ControlPlane {
    /// Nothing to guard (no port known).
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The guard of `hosts` and `ports`, sorted and without repeats.
    pub fn new(
        hosts: impl IntoIterator<Item = std::net::IpAddr>,
        ports: impl IntoIterator<Item = u16>,
    ) -> ControlPlane {
        let mut hosts: Vec<_> = hosts.into_iter().filter(|h| !h.is_unspecified()).collect();
        let mut ports: Vec<_> = ports.into_iter().filter(|p| *p != 0).collect();
        hosts.sort_unstable();
        hosts.dedup();
        ports.sort_unstable();
        ports.dedup();
        ControlPlane { hosts, ports }
    }

    /// The address of a service URL given with an IP (`http://10.0.0.2:2379`,
    /// `https://[fd00::2]:7480/`); `None` for a name or a URL without a port.
    pub fn url_addr(url: &str) -> Option<std::net::SocketAddr> {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        rest.split('/').next()?.parse().ok()
    }
}

impl FirewallSpec {
    /// Builds the spec from the model. Links naming unknown networks are ignored.
    pub fn from_model(
        networks: &[Network],
        links: &[Link],
        uplink: Option<&str>,
    ) -> Result<FirewallSpec, FirewallError> {
        if let Some(u) = uplink {
            let ok = !u.is_empty()
                && u.len() <= crate::plan::MAX_IFNAME
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
            if !ok {
                return Err(FirewallError::InvalidUplink(u.to_string()));
            }
        }
        let mut nets: Vec<FirewallNetwork> = networks
            .iter()
            .map(|n| FirewallNetwork {
                name: n.name.clone(),
                bridge: n.bridge_name(),
                subnet: n.subnet,
                subnet6: n.subnet6,
                gateway: n.gateway(),
                gateway6: n.gateway6(),
                internal: n.internal,
            })
            .collect();
        nets.sort_by(|a, b| a.bridge.cmp(&b.bridge));
        nets.dedup_by(|a, b| a.bridge == b.bridge);
        let bridge = |name: &str| {
            nets.iter()
                .find(|n| n.name == name)
                .map(|n| n.bridge.clone())
        };
        let mut pairs: Vec<(String, String)> = links
            .iter()
            .filter_map(|l| {
                let (a, b) = (bridge(&l.a)?, bridge(&l.b)?);
                (a != b).then(|| if a < b { (a, b) } else { (b, a) })
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        Ok(FirewallSpec {
            networks: nets,
            links: pairs,
            uplink: uplink.map(str::to_string),
            sealed_vnis: Vec::new(),
            tunnel_if: None,
            tunnel_range: None,
            control: ControlPlane::default(),
            ports: GuardPorts::default(),
        })
    }
}

/// Applies rulesets; the real one runs nft, the fake records.
#[async_trait]
pub trait Firewall: Send + Sync {
    /// Replaces shibafu's table with the ruleset of `spec` (atomically) and remembers `spec`.
    async fn apply(&self, spec: &FirewallSpec) -> Result<(), FirewallError>;
    /// Removes shibafu's table (and forgets the spec).
    async fn remove(&self) -> Result<(), FirewallError>;
    /// Re-applies the remembered spec if the table is gone or was altered; true if it did.
    async fn ensure(&self) -> Result<bool, FirewallError>;
}

/// A [`Firewall`] that only records what it was asked to apply.
#[derive(Debug, Default)]
pub struct FakeFirewall {
    applied: Mutex<Vec<FirewallSpec>>,
    current: Mutex<Option<FirewallSpec>>,
}

impl FakeFirewall {
    /// A fake with nothing applied.
    pub fn new() -> FakeFirewall {
        FakeFirewall::default()
    }

    /// The spec in force, if any.
    pub fn current(&self) -> Option<FirewallSpec> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every spec applied so far, in order.
    pub fn history(&self) -> Vec<FirewallSpec> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl Firewall for FakeFirewall {
    async fn apply(&self, spec: &FirewallSpec) -> Result<(), FirewallError> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(spec.clone());
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(spec.clone());
        Ok(())
    }

    async fn remove(&self) -> Result<(), FirewallError> {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    async fn ensure(&self) -> Result<bool, FirewallError> {
        Ok(false)
    }
}
