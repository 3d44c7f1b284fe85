//! The rendered ruleset: sets, chains, rule comments, and `nft -c` where nft is installed.

use super::*;
use crate::firewall::FirewallSpec;
use crate::model::{Link, Network};

fn net(name: &str, subnet: &str, vni: u32, internal: bool) -> Network {
    Network {
        internal,
        ..Network::new(name, subnet.parse().expect("subnet"), vni)
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
        s.starts_with("table inet shibafu {}\ndelete table inet shibafu\ntable inet shibafu {\n"),
        "{s}"
    );
    let tables: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with("table") || l.starts_with("delete"))
        .collect();
    assert!(
        tables
            .iter()
            .all(|l| l.contains("inet shibafu") || l.contains("bridge shibafu")),
        "{tables:?}"
    );
    assert!(!s.contains("flush ruleset"));
    assert_eq!(
        render_removal(),
        "table inet shibafu {}\ndelete table inet shibafu\ntable bridge shibafu {}\ndelete table bridge shibafu\n"
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
        pos("iifname . oifname @allowed accept") < pos("iifname @bridges oifname @bridges drop")
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
    // The raw chains are there (fixed rules), their sets empty.
    assert_eq!(
        block(&s, "\tset intra4 {"),
        "\tset intra4 {\n\t\ttype ipv4_addr . ipv4_addr\n\t\tflags interval\n\t}\n"
    );
    assert_eq!(
        block(&s, "\tset intra6 {"),
        "\tset intra6 {\n\t\ttype ipv6_addr . ipv6_addr\n\t\tflags interval\n\t}\n"
    );
    assert_eq!(block(&s, "\tchain prerouting {"), PREROUTING_CHAIN);
    assert_eq!(block(&s, "\tchain output {"), OUTPUT_CHAIN);
}

/// From the line starting with `header` to the end of that set or chain.
fn block<'a>(s: &'a str, header: &str) -> &'a str {
    let start = s
        .find(header)
        .unwrap_or_else(|| panic!("no {header:?} in\n{s}"));
    let len = s[start..].find("\n\t}\n").expect("block end") + "\n\t}\n".len();
    &s[start..start + len]
}

#[test]
fn a_container_port_outside_its_bridge_goes_no_further_than_the_ip_layer() {
    let text = render_ruleset(&spec(&[], Some("eth0")));
    for chain in ["chain forward", "chain input"] {
        let rules = block(&text, chain);
        let first = rules.lines().find(|l| l.contains("comment"));
        assert_eq!(
            first.map(str::trim),
            Some("iifname \"sfe*\" drop comment \"sf: a container port outside its bridge\""),
            "{rules}"
        );
    }
    assert!(rule_comments().contains(&"sf: a container port outside its bridge".to_string()));
}

const PREROUTING_CHAIN: &str = "\tchain prerouting {
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tudp dport 4789 iifname != @bridges notrack accept comment \"sf: untracked: VXLAN packets received\"
\t\tmeta mark and 0x01000000 == 0 ip saddr . ip daddr @intra4 notrack comment \"sf: untracked: same network, not its gateway\"
\t\tmeta mark and 0x01000000 == 0 ip6 saddr . ip6 daddr @intra6 notrack comment \"sf: untracked: same network, not its gateway (v6)\"
\t}
";

const OUTPUT_CHAIN: &str = "\tchain output {
\t\ttype filter hook output priority raw; policy accept;
\t\tudp dport 4789 oifname != @bridges notrack comment \"sf: untracked: VXLAN packets sent\"
\t}
";

#[test]
fn dual_stack_same_network_traffic_is_untracked_except_the_gateway() {
    let s = render_ruleset(&spec(&[Link::new("fe", "be")], None));
    // Each network's subnet paired with itself, minus the gateway (.1 / ::1) on either side;
    // no pair of different networks, linked or not (routed traffic stays tracked).
    let fe = "172.21.0.0 . 172.21.0.0, 172.21.0.0 . 172.21.0.2-172.21.0.255, \
                  172.21.0.2-172.21.0.255 . 172.21.0.0, 172.21.0.2-172.21.0.255 . 172.21.0.2-172.21.0.255";
    let be = "172.22.0.0 . 172.22.0.0, 172.22.0.0 . 172.22.0.2-172.22.0.255, \
                  172.22.0.2-172.22.0.255 . 172.22.0.0, 172.22.0.2-172.22.0.255 . 172.22.0.2-172.22.0.255";
    // The internal network too: its host-facing rules concern the gateway only.
    let db = "172.23.0.0 . 172.23.0.0, 172.23.0.0 . 172.23.0.2-172.23.0.255, \
                  172.23.0.2-172.23.0.255 . 172.23.0.0, 172.23.0.2-172.23.0.255 . 172.23.0.2-172.23.0.255";
    assert_eq!(
        block(&s, "\tset intra4 {"),
        format!(
            "\tset intra4 {{\n\t\ttype ipv4_addr . ipv4_addr\n\t\tflags interval\n\
                 \t\telements = {{ {fe}, {be}, {db} }}\n\t}}\n"
        )
    );
    let hi = "fd00:21::ffff:ffff:ffff:ffff";
    assert_eq!(
        block(&s, "\tset intra6 {"),
        format!(
            "\tset intra6 {{\n\t\ttype ipv6_addr . ipv6_addr\n\t\tflags interval\n\
                 \t\telements = {{ fd00:21:: . fd00:21::, fd00:21:: . fd00:21::2-{hi}, \
                 fd00:21::2-{hi} . fd00:21::, fd00:21::2-{hi} . fd00:21::2-{hi} }}\n\t}}\n"
        )
    );
    assert_eq!(block(&s, "\tchain prerouting {"), PREROUTING_CHAIN);
    assert_eq!(block(&s, "\tchain output {"), OUTPUT_CHAIN);
    assert!(PREROUTING_CHAIN.contains(&format!("udp dport {VXLAN_PORT} ")));
    // Untracked traffic is judged by interface pairs before any ct rule.
    let pos = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("missing {needle}"));
    assert!(pos("chain prerouting") < pos("chain forward"));
    assert!(pos("iifname . oifname @allowed accept") < pos("ct state established,related"));
}

#[test]
fn v4_only_networks_leave_intra6_empty() {
    let nets = [net("a", "10.1.0.0/16", 1, false)];
    let s = render_ruleset(&FirewallSpec::from_model(&nets, &[], None).expect("spec"));
    assert!(block(&s, "\tset intra4 {").contains(
        "elements = { 10.1.0.0 . 10.1.0.0, 10.1.0.0 . 10.1.0.2-10.1.255.255, \
             10.1.0.2-10.1.255.255 . 10.1.0.0, 10.1.0.2-10.1.255.255 . 10.1.0.2-10.1.255.255 }"
    ));
    assert!(!block(&s, "\tset intra6 {").contains("elements"), "{s}");
}

/// Parses `a[-b] . c[-d]` back into two numeric ranges.
fn parse_pair(e: &str) -> ((u128, u128), (u128, u128)) {
    let range = |r: &str| {
        let v4 = |a: &str| u128::from(u32::from(a.parse::<Ipv4Addr>().expect("addr")));
        match r.split_once('-') {
            Some((a, b)) => (v4(a), v4(b)),
            None => (v4(r), v4(r)),
        }
    };
    let (a, b) = e.split_once(" . ").expect("pair");
    (range(a), range(b))
}

#[test]
fn intra_holds_exactly_the_pairs_without_the_gateway() {
    let v4 = |a: &str| u128::from(u32::from(a.parse::<Ipv4Addr>().expect("addr")));
    let fmt = |a: u128| Ipv4Addr::from(a as u32).to_string();
    let (first, last) = (v4("10.0.0.0"), v4("10.0.0.7"));
    // Gateway first host, last address, outside the range, absent.
    for gw in [
        Some(first + 1),
        Some(last),
        Some(first),
        Some(last + 9),
        None,
    ] {
        let elements = intra([(first, last, gw)].into_iter(), fmt);
        let pairs: Vec<_> = elements.iter().map(|e| parse_pair(e)).collect();
        for src in first..=last {
            for dst in first..=last {
                let inside = |a: u128, (lo, hi): (u128, u128)| lo <= a && a <= hi;
                let hits = pairs
                    .iter()
                    .filter(|(r, s)| inside(src, *r) && inside(dst, *s))
                    .count();
                let untracked = Some(src) != gw && Some(dst) != gw;
                assert_eq!(
                    hits,
                    usize::from(untracked),
                    "{gw:?} {src} {dst} {elements:?}"
                );
            }
        }
    }
    // A one-address subnet that is its own gateway has nothing to untrack.
    assert!(intra([(first, first, Some(first))].into_iter(), fmt).is_empty());
}

#[test]
fn overlapping_subnets_stay_tracked_instead_of_breaking_the_ruleset() {
    let v4 = |a: &str| u128::from(u32::from(a.parse::<Ipv4Addr>().expect("addr")));
    let fmt = |a: u128| Ipv4Addr::from(a as u32).to_string();
    let net = |a: &str, b: &str| (v4(a), v4(b), None);
    let elements = intra(
        [
            net("10.50.0.0", "10.50.255.255"),
            net("10.9.0.0", "10.9.0.255"),
            net("10.50.1.0", "10.50.1.255"),
            net("10.60.0.0", "10.60.0.255"),
            net("10.60.0.0", "10.60.0.255"),
            net("10.70.0.0", "10.70.0.255"),
        ]
        .into_iter(),
        fmt,
    );
    // The kernel refuses overlapping concatenated elements: nested and equal subnets are out.
    assert_eq!(
        elements,
        [
            "10.9.0.0-10.9.0.255 . 10.9.0.0-10.9.0.255",
            "10.70.0.0-10.70.0.255 . 10.70.0.0-10.70.0.255"
        ]
    );
}

#[test]
fn every_rule_comment_is_unique() {
    let c = rule_comments();
    let mut sorted = c.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), c.len(), "{c:?}");
    assert!(c.iter().any(|c| c.contains("VXLAN packets sent")));
}

#[test]
fn the_main_table_honours_the_policy_marks() {
    let consent = format!(
        "meta mark and {:#010x} != 0 accept",
        crate::policy::MARK_CONSENT
    );
    assert_eq!(
        FORWARD[0].0, consent,
        "a consented connection passes before the link rules"
    );
    let s = render_ruleset(&FirewallSpec::default());
    let track = format!(
        "meta mark and {:#010x} == 0 ip saddr . ip daddr @intra4 notrack",
        crate::policy::MARK_TRACK
    );
    assert!(s.contains(&track), "{s}");
}

#[test]
fn encrypted_networks_take_vxlan_only_from_the_tunnel_first_in_prerouting() {
    let mut s = spec(&[], None);
    assert!(!render_ruleset(&s).contains("@th,96,24"));
    s.sealed_vnis = vec![4096, 4100];
    s.tunnel_if = Some("wg-shibafu".into());
    let text = render_ruleset(&s);
    let pre = block(&text, "chain prerouting");
    let first = pre
        .lines()
        .find(|l| l.contains("udp dport"))
        .expect("a VXLAN rule");
    assert!(
        first.contains("udp dport 4789 @th,96,24 { 4096, 4100 } iifname != \"wg-shibafu\" drop"),
        "{first}"
    );
    // VXLAN for tunnel addresses leaves only through the device.
    assert!(!text.contains("100.64.0.0/10"));
    s.tunnel_range = Some("100.64.0.0/10".parse().expect("net"));
    let text = render_ruleset(&s);
    let out = block(&text, "chain output");
    assert!(
        out.contains("ip daddr 100.64.0.0/10 udp dport 4789 oifname != \"wg-shibafu\" drop"),
        "{out}"
    );
    // Nothing is forwarded into or out of the tunnels, first in the forward chain after the
    // container ports outside their bridge.
    let fwd = block(&text, "chain forward");
    let first: Vec<&str> = fwd
        .lines()
        .filter(|l| l.contains("comment"))
        .take(3)
        .collect();
    assert!(first[0].contains("iifname \"sfe*\" drop"), "{fwd}");
    assert!(first[1].contains("ip daddr 100.64.0.0/10 drop"), "{fwd}");
    assert!(first[2].contains("ip saddr 100.64.0.0/10 drop"), "{fwd}");
    // Without the device up, clear packets of those networks are dropped all the same, and
    // none leave for the tunnel range.
    s.tunnel_if = None;
    let text = render_ruleset(&s);
    assert!(text.contains("@th,96,24 { 4096, 4100 } drop"), "{text}");
    assert!(
        text.contains("ip daddr 100.64.0.0/10 udp dport 4789 drop"),
        "{text}"
    );
}
