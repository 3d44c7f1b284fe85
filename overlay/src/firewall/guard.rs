//! The source guard (pure): every container port of a bridge sends only from what was handed
//! to it. A bridge-family table, `table bridge shibafu`, looks at each frame a container's veth
//! brings into its bridge (before it is bridged or routed, whatever `br_netfilter` says): the
//! source MAC must be the interface's, ARP must speak for its own IPv4 address, IPv4 must come
//! from that address and IPv6 from its own address (or link-local, or the unspecified address
//! of duplicate address detection); anything but IPv4, IPv6 and ARP is dropped. So a process
//! with `CAP_NET_RAW` (Docker's default set has it) can craft packets, but none with another
//! source leaves its veth: no impersonating a neighbour, no spoofed packets routed out. It fails
//! closed: a container port (`sfe*`) the guard does not list yet sends nothing at all (an
//! attach replies only once its port is listed); other ports of a bridge (its VXLAN device) pass.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use imbl::ordset::DiffItem;
use imbl::OrdSet;
use serde::{Deserialize, Serialize};

use crate::model::MacAddr;
use crate::plan::{DesiredEndpoint, DesiredHost};

/// The table of the guard (family and name).
pub const GUARD_TABLE: &str = "bridge shibafu";

/// One container port: the host end of its veth and what its container was given.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortBinding {
    /// Host end of the veth (the bridge port).
    pub port: String,
    /// MAC of the container's interface.
    pub mac: MacAddr,
    /// Its IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address, when the network has IPv6.
    pub ipv6: Option<Ipv6Addr>,
}

/// The guard's ports: a persistent sorted set, so an attach changes one entry of it and the
/// comparisons and diffs on its way to nft skip everything the old and new sets share.
pub type GuardPorts = OrdSet<PortBinding>;

impl PortBinding {
    /// The binding of one planned container interface.
    pub fn of(e: &DesiredEndpoint) -> PortBinding {
        PortBinding {
            port: e.host_ifname.clone(),
            mac: e.mac,
            ipv4: e.ipv4.addr(),
            ipv6: e.ipv6.map(|v| v.addr()),
        }
    }
}

/// The guard's ports for a host's plan: every container interface in it.
pub fn planned_ports(desired: &DesiredHost) -> GuardPorts {
    desired.endpoints.iter().map(PortBinding::of).collect()
}

/// The rules of the guard's chain, with their comments.
const RULES: &[(&str, &str)] = &[
    (
        "iifname \"sfe*\" iifname != @ports drop",
        "guard: container ports not listed yet",
    ),
    ("iifname != @ports accept", "guard: only container ports"),
    (
        "iifname . ether saddr != @macs drop",
        "guard: a container's own MAC only",
    ),
    (
        "ether type != { ip, ip6, arp } drop",
        "guard: IPv4, IPv6 and ARP only",
    ),
    (
        "ether type arp arp saddr ip 0.0.0.0 accept",
        "guard: ARP probes",
    ),
    (
        "ether type arp iifname . arp saddr ip != @addrs4 drop",
        "guard: ARP for its own address only",
    ),
    (
        "ether type ip iifname . ip saddr != @addrs4 drop",
        "guard: IPv4 from its own address only",
    ),
    (
        "ether type ip6 ip6 saddr { ::, fe80::/10 } accept",
        "guard: IPv6 link-local and address detection",
    ),
    (
        "ether type ip6 iifname . ip6 saddr != @addrs6 drop",
        "guard: IPv6 from its own address only",
    ),
];

/// Comments of the guard's rules; all present in a listing = the table is intact.
pub fn guard_comments() -> Vec<String> {
    RULES.iter().map(|(_, c)| format!("sf: {c}")).collect()
}

/// The script that removes the guard's table; valid whether it exists or not.
pub fn render_guard_removal() -> String {
    format!("table {GUARD_TABLE} {{}}\ndelete table {GUARD_TABLE}\n")
}

/// The script that replaces the guard's table with one for `ports` (in their order).
pub fn render_guard<'a>(ports: impl IntoIterator<Item = &'a PortBinding> + Copy) -> String {
    let mut s = render_guard_removal();
    let q = |p: &str| format!("\"{p}\"");
    let names: Vec<String> = ports.into_iter().map(|b| q(&b.port)).collect();
    let macs: Vec<String> = ports
        .into_iter()
        .map(|b| format!("{} . {}", q(&b.port), b.mac))
        .collect();
    let v4: Vec<String> = ports
        .into_iter()
        .map(|b| format!("{} . {}", q(&b.port), b.ipv4))
        .collect();
    let v6: Vec<String> = ports
        .into_iter()
        .filter_map(|b| b.ipv6.map(|a| format!("{} . {a}", q(&b.port))))
        .collect();
    let _ = writeln!(s, "table {GUARD_TABLE} {{");
    set(&mut s, "ports", "ifname", &names);
    set(&mut s, "macs", "ifname . ether_addr", &macs);
    set(&mut s, "addrs4", "ifname . ipv4_addr", &v4);
    set(&mut s, "addrs6", "ifname . ipv6_addr", &v6);
    s.push_str(
        "\tchain prerouting {\n\t\ttype filter hook prerouting priority filter; policy accept;\n",
    );
    for (rule, comment) in RULES {
        let _ = writeln!(s, "\t\t{rule} comment \"sf: {comment}\"");
    }
    s.push_str("\t}\n}\n");
    s
}

/// The element changes that turn the guard of `old` into the guard of `new`, one command a line
/// (one transaction when sent together): the bindings that went, then those that came, each
/// sorted; `None` when the ports are the same. An attach or a detach changes one port: its
/// elements, not a reload of the table; the diff visits only what the two sets do not share.
pub fn render_guard_change(old: &GuardPorts, new: &GuardPorts) -> Option<String> {
    let (mut gone, mut came) = (Vec::new(), Vec::new());
    for d in old.diff(new) {
        match d {
            DiffItem::Remove(b) => gone.push(b),
            DiffItem::Add(b) => came.push(b),
        }
    }
    if gone.is_empty() && came.is_empty() {
        return None;
    }
    let mut s = String::new();
    for (verb, bindings) in [("delete", gone), ("add", came)] {
        for b in bindings {
            let port = format!("\"{}\"", b.port);
            let mut line = |set: &str, element: String| {
                let _ = writeln!(s, "{verb} element {GUARD_TABLE} {set} {{ {element} }}");
            };
            line("ports", port.clone());
            line("macs", format!("{port} . {}", b.mac));
            line("addrs4", format!("{port} . {}", b.ipv4));
            if let Some(a) = b.ipv6 {
                line("addrs6", format!("{port} . {a}"));
            }
        }
    }
    Some(s)
}

fn set(s: &mut String, name: &str, ty: &str, elements: &[String]) {
    let _ = write!(s, "\tset {name} {{\n\t\ttype {ty}\n");
    if !elements.is_empty() {
        let _ = writeln!(s, "\t\telements = {{ {} }}", elements.join(", "));
    }
    s.push_str("\t}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(port: &str, last: u8, v6: bool) -> PortBinding {
        PortBinding {
            port: port.into(),
            mac: MacAddr([2, 0x42, 172, 21, 0, last]),
            ipv4: Ipv4Addr::new(172, 21, 0, last),
            ipv6: v6.then(|| format!("fd00:21::{last}").parse().expect("v6")),
        }
    }

    #[test]
    fn each_port_is_bound_to_its_mac_and_addresses() {
        let s = render_guard(&set(&[binding("sfe1", 2, true), binding("sfe2", 3, false)]));
        assert!(s.starts_with("table bridge shibafu {}\ndelete table bridge shibafu\n"));
        assert!(s.contains("elements = { \"sfe1\", \"sfe2\" }"), "{s}");
        assert!(
            s.contains("\"sfe1\" . 02:42:ac:15:00:02, \"sfe2\" . 02:42:ac:15:00:03"),
            "{s}"
        );
        assert!(
            s.contains("\"sfe1\" . 172.21.0.2, \"sfe2\" . 172.21.0.3"),
            "{s}"
        );
        assert!(s.contains("elements = { \"sfe1\" . fd00:21::2 }"), "{s}");
        for c in guard_comments() {
            assert!(s.contains(&format!("comment \"{c}\"")), "{c}");
        }
        let unlisted = s
            .find("iifname \"sfe*\" iifname != @ports drop")
            .expect("unlisted container ports dropped");
        let others = s
            .find("iifname != @ports accept")
            .expect("other ports pass");
        let drop4 = s.find("ip saddr != @addrs4 drop").expect("v4");
        assert!(unlisted < others && others < drop4, "{s}");
    }

    #[test]
    fn the_unlisted_ports_dropped_are_the_container_ports() {
        let (rule, _) = RULES[0];
        let pattern = format!("iifname \"{}*\"", crate::plan::VETH_PREFIX);
        assert!(rule.starts_with(&pattern), "{rule}");
    }

    fn set(ports: &[PortBinding]) -> GuardPorts {
        ports.iter().cloned().collect()
    }

    #[test]
    fn a_changed_port_is_its_elements_out_then_the_new_ones_in() {
        let (a, b) = (binding("sfe1", 2, true), binding("sfe2", 3, false));
        let one = set(std::slice::from_ref(&a));
        assert_eq!(render_guard_change(&one, &one), None);
        assert_eq!(
            render_guard_change(&one, &one.clone()),
            None,
            "a shared copy"
        );
        let s = render_guard_change(&one, &set(&[a.clone(), b.clone()])).expect("b added");
        assert_eq!(
            s,
            "add element bridge shibafu ports { \"sfe2\" }\n\
             add element bridge shibafu macs { \"sfe2\" . 02:42:ac:15:00:03 }\n\
             add element bridge shibafu addrs4 { \"sfe2\" . 172.21.0.3 }\n"
        );
        let moved = PortBinding {
            ipv4: Ipv4Addr::new(172, 21, 0, 9),
            ..a.clone()
        };
        let s = render_guard_change(&set(&[a, b]), &set(&[moved])).expect("changed");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4 + 3 + 4, "{s}");
        assert!(
            lines[..7].iter().all(|l| l.starts_with("delete element")),
            "{s}"
        );
        assert!(
            lines[7..].iter().all(|l| l.starts_with("add element")),
            "{s}"
        );
        assert!(s.contains("delete element bridge shibafu addrs6 { \"sfe1\" . fd00:21::2 }"));
        assert!(s.contains("add element bridge shibafu addrs4 { \"sfe1\" . 172.21.0.9 }"));
    }

    #[test]
    fn the_change_of_a_set_edited_in_place_is_its_edits_alone() {
        let ports: Vec<PortBinding> = (2..200)
            .map(|i| binding(&format!("sfe{i}"), i, i % 2 == 0))
            .collect();
        let old = set(&ports);
        let mut new = old.clone();
        new.remove(&ports[150]);
        new.insert(binding("sfe0", 1, false));
        let moved = PortBinding {
            ipv4: Ipv4Addr::new(172, 21, 1, 7),
            ..ports[7].clone()
        };
        new.remove(&ports[7]);
        new.insert(moved);
        let s = render_guard_change(&old, &new).expect("changed");
        // Out: sfe152 (v6: 4 lines) and sfe9 (3 lines); in: sfe0 (3) and sfe9 moved (3).
        assert_eq!(s.lines().count(), 4 + 3 + 3 + 3, "{s}");
        let deletes: Vec<&str> = s.lines().filter(|l| l.starts_with("delete")).collect();
        assert_eq!(deletes.len(), 7, "{s}");
        assert!(deletes[0].contains("\"sfe152\""), "sorted: {s}");
        assert!(s.contains("add element bridge shibafu addrs4 { \"sfe9\" . 172.21.1.7 }"));
        assert!(s.contains("add element bridge shibafu ports { \"sfe0\" }"));
        // The same sets built from scratch give the same script.
        let rebuilt: Vec<PortBinding> = new.iter().cloned().collect();
        assert_eq!(render_guard_change(&set(&ports), &set(&rebuilt)), Some(s));
    }

    #[test]
    fn no_ports_is_an_empty_guard_that_still_loads() {
        let s = render_guard(&GuardPorts::new());
        assert!(s.contains("set ports {\n\t\ttype ifname\n\t}"), "{s}");
        assert!(!s.contains("elements"), "{s}");
    }
}
