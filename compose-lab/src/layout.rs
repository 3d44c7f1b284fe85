//! Everything a lab's name determines: namespace names, underlay addresses, ports, state paths.
//!
//! Pure: two labs with different names never share a namespace, a state directory or an
//! underlay subnet, so they run side by side.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Longest accepted lab name (namespace names stay short and readable).
pub const MAX_LAB_NAME: usize = 16;
/// Names a node may not take: they name the lab's own components.
pub const RESERVED_NAMES: [&str; 5] = ["sw", "ctl", "etcd", "coordinator", "dns"];
/// Most nodes one lab holds (addresses .11 to .210 of the underlay /24).
pub const MAX_NODES: usize = 200;
/// Most coordinators one lab holds (addresses .3 to .10 of the underlay /24).
pub const MAX_COORDINATORS: usize = 8;
/// Component and host name of every coordinator: `coordinator1`, `coordinator2`, ...
pub const COORDINATOR_PREFIX: &str = "coordinator";

/// Port of etcd's client API on the control host.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// Port of etcd's peer API (loopback of the control host only).
pub const ETCD_PEER_PORT: u16 = 2380;
/// etcd's plain-HTTP `/health` and `/metrics` (loopback of the control host), first member.
pub const ETCD_METRICS_PORT: u16 = 2381;
/// Port of every coordinator's HTTP API on its host.
pub const COORDINATOR_PORT: u16 = 7480;
/// Port of every agent's and coordinator's `/metrics` on its host's underlay address.
pub const METRICS_PORT: u16 = 9480;
/// Port of the lab's upstream DNS server on the control host, and of every coordinator's DNS.
pub const DNS_PORT: u16 = 53;

/// Errors in a lab or node name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// The lab name is empty, too long or has other characters than `a-z0-9`.
    #[error("invalid lab name {0:?}: use 1-16 lowercase letters or digits (no '-': it separates namespace name parts)")]
    InvalidLabName(String),
    /// A node name that is not a DNS label or is reserved.
    #[error("invalid node name {0:?}: use a DNS label (lowercase letters, digits, '-') other than sw, ctl, etcd, coordinator, coordinatorN, dns")]
    InvalidNodeName(String),
    /// Too many or no nodes.
    #[error("a lab holds 1 to 200 nodes, not {0}")]
    NodeCount(usize),
    /// Too many or no coordinators.
    #[error("a lab holds 1 to 8 coordinators, not {0}")]
    CoordinatorCount(usize),
}

/// The WireGuard device name of the node whose namespace is `ns` (see [`Layout::wg_ifname`]).
pub fn wg_ifname_of_ns(ns: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in ns.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("wg{h:08x}")
}

/// Checks a lab name.
pub fn validate_lab_name(name: &str) -> Result<(), LayoutError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LAB_NAME
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LayoutError::InvalidLabName(name.to_string()))
    }
}

/// Checks a node name.
pub fn validate_node_name(name: &str) -> Result<(), LayoutError> {
    let b = name.as_bytes();
    let label = !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if label && !RESERVED_NAMES.contains(&name) && !is_coordinator_name(name) {
        Ok(())
    } else {
        Err(LayoutError::InvalidNodeName(name.to_string()))
    }
}

/// Is `name` the name of a coordinator (`coordinator` followed by digits)?
pub fn is_coordinator_name(name: &str) -> bool {
    name.strip_prefix(COORDINATOR_PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
}

/// The name of the coordinator with 0-based index `i`: `coordinator<i+1>`.
pub fn coordinator_name(i: usize) -> String {
    format!("{COORDINATOR_PREFIX}{}", i + 1)
}

/// The derived layout of one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Lab name.
    pub name: String,
    /// State directory of this lab.
    pub dir: PathBuf,
    /// First three octets of the underlay /24.
    net: [u8; 3],
    /// Members of the etcd cluster (all on the control host, ports 2379/2380 + 10 a member).
    pub etcd_members: usize,
    /// TLS with client certificates for etcd and the coordinators (`up`'s default).
    pub secure: bool,
}

impl Layout {
    /// The layout of lab `name` with its state directory under `root`.
    pub fn new(name: &str, root: &Path) -> Result<Layout, LayoutError> {
        validate_lab_name(name)?;
        let h = fnv1a(name.as_bytes());
        // 10.64.0.0 - 10.127.255.0: a private range unlikely to meet anything else, though the
        // lab's namespaces never route anywhere outside the lab anyway.
        let net = [10, 64 + (h % 64) as u8, (h >> 8) as u8];
        Ok(Layout {
            name: name.to_string(),
            dir: root.join(name),
            net,
            etcd_members: 1,
            secure: false,
        })
    }

    /// Prefix of every namespace of this lab (lab names have no '-', so prefixes never nest).
    pub fn prefix(&self) -> String {
        format!("sf-{}-", self.name)
    }

    /// The switch namespace (holds the underlay bridge).
    pub fn switch_ns(&self) -> String {
        format!("{}sw", self.prefix())
    }

    /// The control host namespace (etcd, upstream DNS).
    pub fn ctl_ns(&self) -> String {
        format!("{}ctl", self.prefix())
    }

    /// The namespace of a node or a coordinator (each a host of its own).
    pub fn node_ns(&self, node: &str) -> String {
        format!("{}{node}", self.prefix())
    }

    /// The underlay subnet, `10.x.y.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}/24", self.addr(0))
    }

    /// Underlay address of the control host.
    pub fn ctl_addr(&self) -> Ipv4Addr {
        self.addr(2)
    }

    /// Underlay address of the node with 0-based index `i`.
    pub fn node_addr(&self, i: usize) -> Ipv4Addr {
        // MAX_NODES keeps 11 + i within one octet.
        self.addr(11 + (i % MAX_NODES) as u8)
    }

    /// Underlay address of the coordinator with 0-based index `i`.
    pub fn coordinator_addr(&self, i: usize) -> Ipv4Addr {
        // MAX_COORDINATORS keeps 3 + i below the first node's address.
        self.addr(3 + (i % MAX_COORDINATORS) as u8)
    }

    /// etcd client URL as seen from inside the lab.
    pub fn etcd_url(&self) -> String {
        self.etcd_member_url(0)
    }

    /// `https` in a secure lab, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }

    /// Client URL of etcd member `i` (0-based).
    pub fn etcd_member_url(&self, i: usize) -> String {
        format!(
            "{}://{}:{}",
            self.scheme(),
            self.ctl_addr(),
            etcd_port(ETCD_CLIENT_PORT, i)
        )
    }

    /// Every member's client URL, comma-separated: what agents and coordinators are given.
    pub fn etcd_endpoints(&self) -> String {
        let urls: Vec<String> = (0..self.etcd_members)
            .map(|i| self.etcd_member_url(i))
            .collect();
        urls.join(",")
    }

    /// API URL of the coordinator with 0-based index `i`, as seen from inside the lab.
    pub fn coordinator_url(&self, i: usize) -> String {
        format!(
            "{}://{}:{COORDINATOR_PORT}",
            self.scheme(),
            self.coordinator_addr(i)
        )
    }

    /// DNS address (`ip:port`) of the coordinator with 0-based index `i`.
    pub fn coordinator_dns(&self, i: usize) -> String {
        format!("{}:{DNS_PORT}", self.coordinator_addr(i))
    }

    /// The upstream DNS server as `ip:port`.
    pub fn dns_addr(&self) -> String {
        format!("{}:{DNS_PORT}", self.ctl_addr())
    }

    /// State directory of one node's agent.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    /// The WireGuard device name of one node: `wg` and a hash of its namespace name, since
    /// userspace devices are configured through `/var/run/wireguard/<name>.sock`, which every
    /// lab on the machine shares.
    pub fn wg_ifname(&self, node: &str) -> String {
        wg_ifname_of_ns(&self.node_ns(node))
    }

    /// The agent API socket of one node.
    pub fn api_socket(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("agent.sock")
    }

    /// The lab's CA and certificates (a secure lab).
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// The lab's state file.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("lab.json")
    }

    /// Log file of a component.
    pub fn log_file(&self, component: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{component}.log"))
    }

    /// Lock file serialising lab commands (beside the state directory, removed by `down`).
    pub fn lock_file(&self) -> PathBuf {
        let mut p = self.dir.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Value of the `SHIBAFU_LAB_MARK` variable every lab process carries.
    pub fn mark(&self) -> String {
        format!("SHIBAFU_LAB_MARK={}", self.name)
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }
}

/// Port `base` (2379 or 2380) of etcd member `i`: members 10 ports apart.
pub fn etcd_port(base: u16, i: usize) -> u16 {
    base + 10 * i as u16
}

/// The component name of etcd member `i` of `members`: `etcd` alone, else `etcd1`..`etcdN`.
pub fn etcd_name(i: usize, members: usize) -> String {
    if members == 1 {
        "etcd".into()
    } else {
        format!("etcd{}", i + 1)
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(name: &str) -> Layout {
        Layout::new(name, Path::new("/run/shibafu-lab")).expect("layout")
    }

    #[test]
    fn names_derive_from_the_lab_name() {
        let l = layout("lab");
        assert_eq!(l.switch_ns(), "sf-lab-sw");
        assert_eq!(l.ctl_ns(), "sf-lab-ctl");
        assert_eq!(l.node_ns("node1"), "sf-lab-node1");
        assert_eq!(l.dir, Path::new("/run/shibafu-lab/lab"));
        assert_eq!(l.lock_file(), Path::new("/run/shibafu-lab/lab.lock"));
        assert_eq!(
            l.api_socket("node2"),
            Path::new("/run/shibafu-lab/lab/nodes/node2/agent.sock")
        );
        assert!(l.subnet().starts_with("10.") && l.subnet().ends_with(".0/24"));
        assert_eq!(l.etcd_url(), format!("http://{}:2379", l.ctl_addr()));
        assert_eq!(l.etcd_endpoints(), l.etcd_url(), "one member by default");
    }

    #[test]
    fn etcd_members_are_ten_ports_apart_and_named_from_one() {
        let mut l = layout("lab");
        l.etcd_members = 3;
        let ctl = l.ctl_addr();
        assert_eq!(
            l.etcd_endpoints(),
            format!("http://{ctl}:2379,http://{ctl}:2389,http://{ctl}:2399")
        );
        assert_eq!(etcd_port(ETCD_PEER_PORT, 2), 2400);
        assert_eq!(
            (etcd_name(0, 1), etcd_name(2, 3)),
            ("etcd".into(), "etcd3".into())
        );
        assert!(crate::up::is_etcd("etcd") && crate::up::is_etcd("etcd2"));
        assert!(!crate::up::is_etcd("etcdx") && !crate::up::is_etcd("node1"));
    }

    #[test]
    fn different_labs_get_different_subnets_and_prefixes() {
        let (a, b) = (layout("a"), layout("b"));
        assert_ne!(a.subnet(), b.subnet());
        assert!(!b.node_ns("x").starts_with(&a.prefix()));
        // WireGuard device names fit IFNAMSIZ and differ between labs and nodes.
        let w = a.wg_ifname("node1");
        assert_eq!(w.len(), 10);
        assert_ne!(w, b.wg_ifname("node1"));
        assert_ne!(w, a.wg_ifname("node2"));
    }

    #[test]
    fn node_addresses_are_distinct_and_in_the_subnet() {
        let l = layout("lab");
        let addrs: std::collections::BTreeSet<_> = (0..MAX_NODES).map(|i| l.node_addr(i)).collect();
        assert_eq!(addrs.len(), MAX_NODES);
        assert!(!addrs.contains(&l.ctl_addr()));
        for i in 0..MAX_COORDINATORS {
            assert!(!addrs.contains(&l.coordinator_addr(i)));
            assert_ne!(l.coordinator_addr(i), l.ctl_addr());
        }
        assert_eq!(
            l.coordinator_url(1),
            format!("http://{}:7480", l.coordinator_addr(1))
        );
        assert_eq!(
            l.coordinator_dns(0),
            format!("{}:53", l.coordinator_addr(0))
        );
        let mut secure = l.clone();
        secure.secure = true;
        assert_eq!(
            secure.coordinator_url(1),
            format!("https://{}:7480", l.coordinator_addr(1))
        );
        assert_eq!(secure.etcd_url(), format!("https://{}:2379", l.ctl_addr()));
        let base = l.subnet().trim_end_matches("0/24").to_string();
        assert!(addrs.iter().all(|a| a.to_string().starts_with(&base)));
    }

    #[test]
    fn rejects_bad_names() {
        assert!(validate_lab_name("lab2").is_ok());
        for bad in ["", "Lab", "a-b", "a_b", &"x".repeat(17)] {
            assert_eq!(
                validate_lab_name(bad),
                Err(LayoutError::InvalidLabName(bad.to_string()))
            );
        }
        assert!(validate_node_name("node-1").is_ok());
        assert!(validate_node_name("ctl").is_err());
        assert!(validate_node_name("coordinator2").is_err());
        assert!(validate_node_name("coordinators").is_ok());
        assert_eq!(coordinator_name(0), "coordinator1");
        assert!(validate_node_name("Node").is_err());
    }
}
