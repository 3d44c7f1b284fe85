//! Renders a [`FirewallSpec`] as one nft script (pure).
//!
//! The script starts with `table inet shibafu {}` + `delete table inet shibafu`, so `nft -f`
//! replaces exactly our table in one transaction (creating it first makes the delete valid on a
//! fresh host). Per-network facts live in named sets, so the rules are a fixed handful whatever
//! the number of networks, and each lookup is one hash or interval match.
//!
//! Two raw-priority chains keep traffic that no rule needs to track out of conntrack (and so out
//! of NAT): same-network traffic that does not involve the gateway, and VXLAN's underlay packets.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::conditional::{control_rules, sealed_rule, tunnel_forward, tunnel_guard};
use super::guard::{render_guard, render_guard_removal};
use super::intra::intra;
use super::FirewallSpec;
use crate::plan::{VETH_PREFIX, VXLAN_PORT};
use crate::policy::MARK_TRACK;

/// The table shibafu owns (family and name).
pub const TABLE: &str = "inet shibafu";

/// The rules, each with the comment that identifies it; `{uplink}` is filled in.
const FORWARD: &[(&str, &str)] = &[
    (
        "meta mark and 0x08000000 != 0 accept",
        "a policy allows (table inet shibafu-policy)",
    ),
    (
        "iifname . oifname @allowed accept",
        "same network or linked networks",
    ),
    (
        "iifname @bridges oifname @bridges drop",
        "networks that are not linked",
    ),
    (
        "iifname @bridges ip daddr @subnets4 drop",
        "other shibafu subnets by any other path",
    ),
    (
        "iifname @bridges ip6 daddr @subnets6 drop",
        "other shibafu subnets by any other path (v6)",
    ),
    (
        "iifname @internal drop",
        "internal networks have no way out",
    ),
    (
        "oifname @internal drop",
        "nothing enters an internal network from outside",
    ),
    (
        "oifname @bridges ct state established,related accept",
        "replies to outbound flows",
    ),
    (
        "oifname @bridges drop",
        "no inbound connections from outside",
    ),
];

const INPUT: &[(&str, &str)] = &[
    (
        "iifname != @internal accept",
        "only internal networks are limited towards the host",
    ),
    (
        "ct state established,related accept",
        "internal: replies to host-initiated flows",
    ),
    (
        "meta l4proto { tcp, udp } th dport 53 iifname . ip daddr @dns4 accept",
        "internal: DNS on its own gateway",
    ),
    (
        "meta l4proto { tcp, udp } th dport 53 iifname . ip6 daddr @dns6 accept",
        "internal: DNS on its own gateway (v6)",
    ),
    (
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
        "internal: neighbour discovery",
    ),
    ("drop", "internal: nothing else reaches the host"),
];

/// First in the forward and input chains. Bridged traffic reaches the host's IP layer with its
/// bridge as input (through `br_netfilter` too), so a container port is the input only once its
/// bridge has let it go (deleted by hand, until the repair): then its frames to the gateway's
/// MAC, which the port carries, would be routed and delivered from there, past every rule keyed
/// on bridges. Nothing of it goes further.
fn unbridged_rule() -> (String, &'static str) {
    (
        format!("iifname \"{VETH_PREFIX}*\" drop"),
        "a container port outside its bridge",
    )
}

/// Rules of the raw-priority `prerouting` chain. `intra4`/`intra6` hold `subnet . subnet` of
/// every network without its gateway, so container-to-container traffic of one network (bridged,
/// locally or to/from the VXLAN device) skips conntrack, while traffic to or from the gateway
/// (DNS, host-initiated flows of internal networks), routed traffic between networks and
/// outbound (masqueraded) traffic stay tracked. Outer VXLAN packets arriving on the underlay skip
/// it too; the policy table marks traffic of policed networks (`MARK_TRACK`, at a priority
/// before this chain) so it stays tracked and replies of a passed connection pass;
/// `iifname != @bridges` keeps a container's own traffic to some UDP port 4789 outside
/// tracked, so it is still masqueraded.
fn prerouting_rules() -> [(String, &'static str); 3] {
    let unpoliced = format!("meta mark and {MARK_TRACK:#010x} == 0");
    [
        // First, and done with this chain: the bulk of the traffic a node receives skips the
        // concatenated-set lookups below (an interval-set lookup a packet, ~13% of cross-node
        // throughput on a 15 Gbit/s path).
        (
            format!("udp dport {VXLAN_PORT} iifname != @bridges notrack accept"),
            "untracked: VXLAN packets received",
        ),
        (
            format!("{unpoliced} ip saddr . ip daddr @intra4 notrack"),
            "untracked: same network, not its gateway",
        ),
        (
            format!("{unpoliced} ip6 saddr . ip6 daddr @intra6 notrack"),
            "untracked: same network, not its gateway (v6)",
        ),
    ]
}

/// Rules of the raw-priority `output` chain: the VXLAN packets this host sends (the VXLAN
/// devices encapsulate through the local output path), but not the host's traffic into its
/// bridges.
fn output_rules() -> [(String, &'static str); 1] {
    [(
        format!("udp dport {VXLAN_PORT} oifname != @bridges notrack"),
        "untracked: VXLAN packets sent",
    )]
}

/// Rules of the `postrouting` NAT chain, `out` selecting the uplink. A flow from a container's
/// UDP port 4789 is given another source port: its replies would come back to the VXLAN port,
/// which the raw chain leaves untracked, and so would never be translated back.
fn masquerade_rules(out: &str) -> [(String, &'static str); 4] {
    let (v4, v6) = (
        format!("ip saddr @masq4 ip daddr != @subnets4 {out}"),
        format!("ip6 saddr @masq6 ip6 daddr != @subnets6 {out}"),
    );
    let away = format!(
        "udp sport {VXLAN_PORT} masquerade to :{}-65535",
        VXLAN_PORT + 1
    );
    [
        (
            format!("{v4} {away}"),
            "masquerade outbound from the VXLAN port",
        ),
        (
            format!("{v6} {away}"),
            "masquerade outbound from the VXLAN port (v6)",
        ),
        (format!("{v4} masquerade"), "masquerade outbound"),
        (format!("{v6} masquerade"), "masquerade outbound (v6)"),
    ]
}

/// Comments of every rule the ruleset has; all present in a listing = the table is intact.
pub fn rule_comments() -> Vec<String> {
    let mut out: Vec<String> = FORWARD
        .iter()
        .chain(INPUT)
        .map(|(_, c)| format!("sf: {c}"))
        .collect();
    out.push(format!("sf: {}", unbridged_rule().1));
    out.extend(masquerade_rules("").iter().map(|(_, c)| format!("sf: {c}")));
    out.extend(
        prerouting_rules()
            .iter()
            .chain(output_rules().iter())
            .map(|(_, c)| format!("sf: {c}")),
    );
    out
}

/// The script that removes shibafu's tables (and nothing else); valid whether they exist or
/// not.
pub fn render_removal() -> String {
    format!(
        "table {TABLE} {{}}\ndelete table {TABLE}\n{}",
        render_guard_removal()
    )
}

/// The script that replaces shibafu's tables with the ruleset of `spec`: the main table, then
/// the source guard's.
pub fn render_ruleset(spec: &FirewallSpec) -> String {
    let mut s = render_main(spec);
    s.push_str(&render_guard(&spec.ports));
    s
}

fn render_main(spec: &FirewallSpec) -> String {
    let mut s = format!("table {TABLE} {{}}\ndelete table {TABLE}\n");
    let quoted = |b: &str| format!("\"{b}\"");
    let bridges: Vec<String> = spec.networks.iter().map(|n| quoted(&n.bridge)).collect();
    let internal: Vec<String> = spec
        .networks
        .iter()
        .filter(|n| n.internal)
        .map(|n| quoted(&n.bridge))
        .collect();
    let mut allowed: Vec<String> = spec
        .networks
        .iter()
        .map(|n| format!("{0} . {0}", quoted(&n.bridge)))
        .collect();
    for (a, b) in &spec.links {
        allowed.push(format!("{} . {}", quoted(a), quoted(b)));
        allowed.push(format!("{} . {}", quoted(b), quoted(a)));
    }
    let subnets4: Vec<String> = spec.networks.iter().map(|n| n.subnet.to_string()).collect();
    let subnets6: Vec<String> = spec
        .networks
        .iter()
        .filter_map(|n| n.subnet6.map(|s| s.to_string()))
        .collect();
    let masq4: Vec<String> = spec
        .networks
        .iter()
        .filter(|n| !n.internal)
        .map(|n| n.subnet.to_string())
        .collect();
    let masq6: Vec<String> = spec
        .networks
        .iter()
        .filter(|n| !n.internal)
        .filter_map(|n| n.subnet6.map(|s| s.to_string()))
        .collect();
    let dns4: Vec<String> = spec
        .networks
        .iter()
        .map(|n| format!("{} . {}", quoted(&n.bridge), n.gateway))
        .collect();
    let dns6: Vec<String> = spec
        .networks
        .iter()
        .filter_map(|n| n.gateway6.map(|g| format!("{} . {g}", quoted(&n.bridge))))
        .collect();

    let intra4 = intra(
        spec.networks.iter().map(|n| {
            let (net, gw) = (&n.subnet, n.gateway);
            let (first, last) = (u32::from(net.network()), u32::from(net.broadcast()));
            (first.into(), last.into(), Some(u32::from(gw).into()))
        }),
        // Every value comes from a u32 above.
        |a| Ipv4Addr::from(a as u32).to_string(),
    );
    let intra6 = intra(
        spec.networks.iter().filter_map(|n| {
            let net = n.subnet6.as_ref()?;
            let (first, last) = (u128::from(net.network()), u128::from(net.broadcast()));
            Some((first, last, n.gateway6.map(u128::from)))
        }),
        |a| Ipv6Addr::from(a).to_string(),
    );

    let _ = writeln!(s, "table {TABLE} {{");
    set(&mut s, "bridges", "ifname", Flags::None, &bridges);
    set(&mut s, "internal", "ifname", Flags::None, &internal);
    set(&mut s, "allowed", "ifname . ifname", Flags::None, &allowed);
    set(&mut s, "subnets4", "ipv4_addr", Flags::Merge, &subnets4);
    set(&mut s, "subnets6", "ipv6_addr", Flags::Merge, &subnets6);
    set(&mut s, "masq4", "ipv4_addr", Flags::Merge, &masq4);
    set(&mut s, "masq6", "ipv6_addr", Flags::Merge, &masq6);
    set(&mut s, "dns4", "ifname . ipv4_addr", Flags::None, &dns4);
    set(&mut s, "dns6", "ifname . ipv6_addr", Flags::None, &dns6);
    let concat = Flags::Interval;
    set(&mut s, "intra4", "ipv4_addr . ipv4_addr", concat, &intra4);
    set(&mut s, "intra6", "ipv6_addr . ipv6_addr", concat, &intra6);
    let hosts = |v4: bool| -> Vec<String> {
        let hosts = spec.control.hosts.iter().filter(|h| h.is_ipv4() == v4);
        hosts.map(ToString::to_string).collect()
    };
    let ports: Vec<String> = spec.control.ports.iter().map(u16::to_string).collect();
    set(&mut s, "control4", "ipv4_addr", Flags::None, &hosts(true));
    set(&mut s, "control6", "ipv6_addr", Flags::None, &hosts(false));
    set(&mut s, "control_ports", "inet_service", Flags::None, &ports);
    let [control_forward, control_input] = control_rules(spec);

    let mut pre: Vec<(String, &str)> = sealed_rule(spec).into_iter().collect();
    pre.extend(prerouting_rules());
    chain(
        &mut s,
        "prerouting",
        "type filter hook prerouting priority raw; policy accept;",
        &pre,
    );
    let mut out: Vec<(String, &str)> = tunnel_guard(spec).into_iter().collect();
    out.extend(output_rules());
    chain(
        &mut s,
        "output",
        "type filter hook output priority raw; policy accept;",
        &out,
    );
    let mut forward = vec![unbridged_rule()];
    forward.extend(tunnel_forward(spec));
    let (policy, rest) = FORWARD.split_at(1);
    forward.extend(policy.iter().map(|(r, c)| (r.to_string(), *c)));
    forward.extend(control_forward);
    forward.extend(rest.iter().map(|(r, c)| (r.to_string(), *c)));
    chain(
        &mut s,
        "forward",
        "type filter hook forward priority filter; policy accept;",
        &forward,
    );
    let mut input = vec![unbridged_rule()];
    input.extend(control_input);
    input.extend(INPUT.iter().map(|(r, c)| (r.to_string(), *c)));
    chain(
        &mut s,
        "input",
        "type filter hook input priority filter; policy accept;",
        &input,
    );
    let out = match &spec.uplink {
        Some(u) => format!("oifname \"{u}\""),
        None => "oifname != @bridges".to_string(),
    };
    let masq = masquerade_rules(&out);
    chain(
        &mut s,
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
        &masq,
    );
    s.push_str("}\n");
    s
}

/// Flags of a set.
#[derive(Debug, Clone, Copy)]
enum Flags {
    /// Exact elements (hash).
    None,
    /// Intervals, overlapping ones merged (one-field sets).
    Merge,
    /// Intervals without merging (concatenations: the render keeps their elements disjoint).
    Interval,
}

fn set(s: &mut String, name: &str, ty: &str, flags: Flags, elements: &[String]) {
    let _ = write!(s, "\tset {name} {{\n\t\ttype {ty}\n");
    match flags {
        Flags::None => {}
        Flags::Merge => s.push_str("\t\tflags interval\n\t\tauto-merge\n"),
        Flags::Interval => s.push_str("\t\tflags interval\n"),
    }
    if !elements.is_empty() {
        let _ = writeln!(s, "\t\telements = {{ {} }}", elements.join(", "));
    }
    s.push_str("\t}\n");
}

fn chain<R: AsRef<str>>(s: &mut String, name: &str, hook: &str, rules: &[(R, &str)]) {
    let _ = write!(s, "\tchain {name} {{\n\t\t{hook}\n");
    for (rule, comment) in rules {
        let rule = rule.as_ref();
        let _ = writeln!(s, "\t\t{rule} comment \"sf: {comment}\"");
    }
    s.push_str("\t}\n");
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "render_control_tests.rs"]
mod control_tests;
