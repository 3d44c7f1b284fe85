//! Renders a [`FirewallSpec`] as one nft script (pure).
//!
//! The script starts with `table inet shibafu {}` + `delete table inet shibafu`, so `nft -f`
//! replaces exactly our table in one transaction (creating it first makes the delete valid on a
//! fresh host). Per-network facts live in named sets, so the rules are a fixed handful whatever
//! the number of networks, and each lookup is one hash or interval match.

use std::fmt::Write as _;

use super::FirewallSpec;

/// The table shibafu owns (family and name).
pub const TABLE: &str = "inet shibafu";

/// The rules, each with the comment that identifies it; `{uplink}` is filled in.
const FORWARD: &[(&str, &str)] = &[
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

/// Comments of every rule the ruleset has; all present in a listing = the table is intact.
pub fn rule_comments() -> Vec<String> {
    let mut out: Vec<String> = FORWARD
        .iter()
        .chain(INPUT)
        .map(|(_, c)| format!("sf: {c}"))
        .collect();
    out.push("sf: masquerade outbound".into());
    out.push("sf: masquerade outbound (v6)".into());
    out
}

/// The script that removes shibafu's table (and nothing else); valid whether it exists or not.
pub fn render_removal() -> String {
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n")
}

/// The script that replaces shibafu's table with the ruleset of `spec`.
pub fn render_ruleset(spec: &FirewallSpec) -> String {
    let mut s = render_removal();
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

    let _ = writeln!(s, "table {TABLE} {{");
    set(&mut s, "bridges", "ifname", false, &bridges);
    set(&mut s, "internal", "ifname", false, &internal);
    set(&mut s, "allowed", "ifname . ifname", false, &allowed);
    set(&mut s, "subnets4", "ipv4_addr", true, &subnets4);
    set(&mut s, "subnets6", "ipv6_addr", true, &subnets6);
    set(&mut s, "masq4", "ipv4_addr", true, &masq4);
    set(&mut s, "masq6", "ipv6_addr", true, &masq6);
    set(&mut s, "dns4", "ifname . ipv4_addr", false, &dns4);
    set(&mut s, "dns6", "ifname . ipv6_addr", false, &dns6);

    chain(
        &mut s,
        "forward",
        "type filter hook forward priority filter; policy accept;",
        FORWARD,
    );
    chain(
        &mut s,
        "input",
        "type filter hook input priority filter; policy accept;",
        INPUT,
    );
    let out = match &spec.uplink {
        Some(u) => format!("oifname \"{u}\""),
        None => "oifname != @bridges".to_string(),
    };
    let masq = [
        (
            format!("ip saddr @masq4 ip daddr != @subnets4 {out} masquerade"),
            "masquerade outbound",
        ),
        (
            format!("ip6 saddr @masq6 ip6 daddr != @subnets6 {out} masquerade"),
            "masquerade outbound (v6)",
        ),
    ];
    let masq: Vec<(&str, &str)> = masq.iter().map(|(r, c)| (r.as_str(), *c)).collect();
    chain(
        &mut s,
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
        &masq,
    );
    s.push_str("}\n");
    s
}

fn set(s: &mut String, name: &str, ty: &str, interval: bool, elements: &[String]) {
    let _ = write!(s, "\tset {name} {{\n\t\ttype {ty}\n");
    if interval {
        s.push_str("\t\tflags interval\n\t\tauto-merge\n");
    }
    if !elements.is_empty() {
        let _ = writeln!(s, "\t\telements = {{ {} }}", elements.join(", "));
    }
    s.push_str("\t}\n");
}

fn chain(s: &mut String, name: &str, hook: &str, rules: &[(&str, &str)]) {
    let _ = write!(s, "\tchain {name} {{\n\t\t{hook}\n");
    for (rule, comment) in rules {
        let _ = writeln!(s, "\t\t{rule} comment \"sf: {comment}\"");
    }
    s.push_str("\t}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::FirewallSpec;
    use crate::model::{Link, Network, SCHEMA_VERSION};

    fn net(name: &str, subnet: &str, vni: u32, internal: bool) -> Network {
        Network {
            schema: SCHEMA_VERSION,
            name: name.into(),
            subnet: subnet.parse().expect("subnet"),
            subnet6: None,
            vni,
            zone: format!("{name}.local"),
            mtu: None,
            internal,
            forwarders: vec![],
        }
    }

    fn spec(links: &[Link], uplink: Option<&str>) -> FirewallSpec {
        let mut fe = net("fe", "172.21.0.0/24", 4096, false);
        fe.subnet6 = Some("fd00:21::/64".parse().expect("v6"));
        let nets = [
            fe,
            net("be", "172.22.0.0/24", 4097, false),
            net("db", "172.23.0.0/24", 4098, true),
        ];
        FirewallSpec::from_model(&nets, links, uplink).expect("spec")
    }

    fn line_with<'a>(s: &'a str, needle: &str) -> &'a str {
        s.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{s}"))
    }

    #[test]
    fn replaces_only_our_table_atomically() {
        let s = render_ruleset(&spec(&[], None));
        assert!(
            s.starts_with(
                "table inet shibafu {}\ndelete table inet shibafu\ntable inet shibafu {\n"
            ),
            "{s}"
        );
        let tables: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("table") || l.starts_with("delete"))
            .collect();
        assert!(
            tables.iter().all(|l| l.contains("inet shibafu")),
            "{tables:?}"
        );
        assert!(!s.contains("flush ruleset"));
        assert_eq!(
            render_removal(),
            "table inet shibafu {}\ndelete table inet shibafu\n"
        );
    }

    #[test]
    fn sets_carry_the_networks() {
        let s = render_ruleset(&spec(&[], None));
        assert!(line_with(
            &s,
            "elements = { \"sfbr1000\", \"sfbr1001\", \"sfbr1002\" }"
        )
        .contains("elements"));
        // Only db is internal.
        let internal = s
            .split("set internal")
            .nth(1)
            .and_then(|x| x.split('}').next())
            .expect("internal set");
        assert!(
            internal.contains("\"sfbr1002\"") && !internal.contains("sfbr1000"),
            "{internal}"
        );
        // Every network may talk to itself; nothing else is allowed without links.
        let allowed = s
            .split("set allowed")
            .nth(1)
            .and_then(|x| x.split("\t}").next())
            .expect("allowed set");
        assert!(allowed.contains("\"sfbr1000\" . \"sfbr1000\""));
        assert!(
            !allowed.contains("\"sfbr1000\" . \"sfbr1001\""),
            "{allowed}"
        );
        // Masquerade sources exclude the internal network; destinations exclude all shibafu subnets.
        let masq4 = s
            .split("set masq4")
            .nth(1)
            .and_then(|x| x.split("\t}").next())
            .expect("masq4");
        assert!(
            masq4.contains("172.21.0.0/24")
                && masq4.contains("172.22.0.0/24")
                && !masq4.contains("172.23"),
            "{masq4}"
        );
        let subnets4 = s
            .split("set subnets4")
            .nth(1)
            .and_then(|x| x.split("\t}").next())
            .expect("subnets4");
        assert!(subnets4.contains("172.23.0.0/24"));
        assert!(line_with(&s, "set masq6").contains("masq6"));
        assert!(
            s.contains("\"sfbr1000\" . 172.21.0.1"),
            "DNS on each gateway"
        );
        assert!(s.contains("\"sfbr1000\" . fd00:21::1"));
    }

    #[test]
    fn links_allow_both_directions_and_unknown_links_are_ignored() {
        let s = render_ruleset(&spec(
            &[Link::new("fe", "be"), Link::new("fe", "nope")],
            None,
        ));
        assert!(s.contains("\"sfbr1000\" . \"sfbr1001\""));
        assert!(s.contains("\"sfbr1001\" . \"sfbr1000\""));
        assert_eq!(
            spec(&[Link::new("fe", "be"), Link::new("be", "fe")], None)
                .links
                .len(),
            1
        );
    }

    #[test]
    fn rule_order_accepts_links_before_isolation_drops() {
        let s = render_ruleset(&spec(&[], None));
        let pos = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("missing {needle}"));
        assert!(
            pos("iifname . oifname @allowed accept")
                < pos("iifname @bridges oifname @bridges drop")
        );
        assert!(
            pos("\t\toifname @bridges drop")
                > pos("oifname @bridges ct state established,related accept")
        );
        assert!(
            pos("iifname @internal drop") > pos("iifname . oifname @allowed accept"),
            "internal may still reach linked networks"
        );
        assert!(
            line_with(&s, "hook forward").contains("policy accept"),
            "never drop other traffic of the host"
        );
        assert!(line_with(&s, "hook postrouting").contains("type nat"));
        for c in rule_comments() {
            assert!(s.contains(&format!("comment \"{c}\"")), "missing rule {c}");
        }
    }

    #[test]
    fn masquerade_goes_out_of_the_uplink_when_known() {
        let any = render_ruleset(&spec(&[], None));
        assert!(line_with(&any, "masquerade outbound\"")
            .contains("ip daddr != @subnets4 oifname != @bridges masquerade"));
        let up = render_ruleset(&spec(&[], Some("eth0")));
        assert!(line_with(&up, "masquerade outbound\"").contains("oifname \"eth0\" masquerade"));
    }

    #[test]
    fn rejects_uplink_names_that_could_break_the_script() {
        for bad in ["", "eth0\"; flush ruleset", "a b", "0123456789abcdef"] {
            assert!(
                FirewallSpec::from_model(&[], &[], Some(bad)).is_err(),
                "{bad:?}"
            );
        }
        assert!(FirewallSpec::from_model(&[], &[], Some("enp0s3.100")).is_ok());
    }

    #[test]
    fn empty_spec_renders_valid_empty_sets() {
        let s = render_ruleset(&FirewallSpec::default());
        assert!(!s.contains("elements = {  }"));
        assert!(s.contains("set bridges {\n\t\ttype ifname\n\t}"), "{s}");
    }
}
