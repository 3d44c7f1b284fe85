//! The nft-subset interpreter itself, on hand-written tables.

use super::*;
use crate::policy::{Chain, Set};

fn table(chains: &[(&str, Option<&str>, &[&str])]) -> Table {
    let mut t = Table::default();
    let set = |kind, items: &[&str]| Set {
        kind,
        elements: items.iter().map(|s| s.to_string()).collect(),
    };
    t.sets
        .insert("web_a4".into(), set(SetKind::Addr4, &["10.0.0.2"]));
    t.sets
        .insert("nets_n6".into(), set(SetKind::Net6, &["fd00::/64"]));
    t.counters.insert("c0".into());
    for (name, hook, rules) in chains {
        t.chains.insert(
            name.to_string(),
            Chain {
                hook: hook.map(str::to_string),
                rules: rules.iter().map(|r| r.to_string()).collect(),
            },
        );
    }
    t
}

const FORWARD: &str = "type filter hook forward priority filter - 10; policy accept;";

fn tcp(src: &str, dst: &str, port: u16) -> Packet {
    let a = |s: &str| s.parse().expect("address");
    Packet::new(a(src), a(dst), FlowProto::Tcp, port)
}

#[test]
fn jump_returns_goto_does_not_and_the_base_policy_ends_a_goto() {
    let t = table(&[
        (
            "base",
            Some(FORWARD),
            &[
                "jump mark",
                "ip saddr @web_a4 goto mark",
                "counter name \"c0\" drop",
            ],
        ),
        ("mark", None, &["meta mark set meta mark or 0x00000001"]),
    ]);
    let nft = Nft::load(&t);
    let mut fx = Effects::default();
    let mut p = tcp("10.0.0.2", "10.0.0.3", 80);
    assert_eq!(nft.run_hook("forward", &mut p, &mut fx), Decision::Accept);
    assert_eq!(p.mark, 1);
    assert!(fx.counters.is_empty(), "goto did not come back");
    let mut p = tcp("10.0.0.9", "10.0.0.3", 80);
    assert_eq!(nft.run_hook("forward", &mut p, &mut fx), Decision::Drop);
    assert_eq!(fx.counters["c0"], 1);
    assert_eq!(nft.base("forward").map(|(_, h)| h.priority), Some(-10));
}

#[test]
fn families_ports_and_marks_match_as_nft_does() {
    let rules: &[&str] = &[
        "ip6 daddr @nets_n6 meta l4proto { tcp, udp } th dport { 80, 8000-8100 } drop",
        "meta nfproto ipv6 meta mark and 0x00000002 != 0 drop",
        "ip saddr @web_a4 udp dport { 53 } drop",
    ];
    let nft = Nft::load(&table(&[("base", Some(FORWARD), rules)]));
    let run = |mut p: Packet| nft.run_hook("forward", &mut p, &mut Effects::default());
    assert_eq!(run(tcp("fd01::1", "fd00::2", 8050)), Decision::Drop);
    assert_eq!(run(tcp("fd01::1", "fd00::2", 8101)), Decision::Accept);
    let mut marked = tcp("fd01::1", "fd01::2", 1);
    marked.mark = 2;
    assert_eq!(run(marked), Decision::Drop);
    assert_eq!(run(tcp("10.0.0.2", "10.0.0.3", 53)), Decision::Accept);
    let udp = Packet::new(
        "10.0.0.2".parse().expect("v4"),
        "10.0.0.3".parse().expect("v4"),
        FlowProto::Udp,
        53,
    );
    assert_eq!(run(udp.clone()), Decision::Drop);
    let reply = Packet {
        established: true,
        ..udp
    };
    let nft = Nft::load(&table(&[(
        "base",
        Some("type filter hook forward priority 5; policy drop;"),
        &["ct state established,related accept"],
    )]));
    let mut fx = Effects::default();
    assert_eq!(
        nft.run_hook("forward", &mut reply.clone(), &mut fx),
        Decision::Accept
    );
    let mut new = Packet {
        established: false,
        ..reply
    };
    assert_eq!(
        nft.run_hook("forward", &mut new, &mut fx),
        Decision::Drop,
        "policy drop"
    );
    assert_eq!(nft.base("forward").map(|(_, h)| h.priority), Some(5));
}

#[test]
fn prefixes_written_in_rules_match_as_sets_do() {
    let rules: &[&str] = &[
        "ip saddr 10.9.0.0/16 tcp dport { 22 } drop",
        "ip6 daddr { fd02::/64, fd03::1 } drop",
    ];
    let nft = Nft::load(&table(&[("base", Some(FORWARD), rules)]));
    let run = |p: Packet| nft.run_hook("forward", &mut p.clone(), &mut Effects::default());
    assert_eq!(run(tcp("10.9.3.4", "10.0.0.2", 22)), Decision::Drop);
    assert_eq!(run(tcp("10.8.3.4", "10.0.0.2", 22)), Decision::Accept);
    assert_eq!(run(tcp("fd00::1", "fd02::9", 1)), Decision::Drop);
    assert_eq!(run(tcp("fd00::1", "fd03::1", 1)), Decision::Drop);
    assert_eq!(run(tcp("fd00::1", "fd03::2", 1)), Decision::Accept);
}

#[test]
#[should_panic(expected = "unsupported nft syntax")]
fn a_prefix_with_host_bits_panics() {
    Nft::load(&table(&[(
        "base",
        Some(FORWARD),
        &["ip saddr 10.9.0.1/16 drop"],
    )]));
}

#[test]
#[should_panic(expected = "of the other family")]
fn a_prefix_of_the_other_family_panics() {
    Nft::load(&table(&[(
        "base",
        Some(FORWARD),
        &["ip saddr fd00::/64 drop"],
    )]));
}

#[test]
#[should_panic(expected = "unsupported nft syntax")]
fn unknown_syntax_panics() {
    Nft::load(&table(&[(
        "base",
        Some(FORWARD),
        &["ip saddr 10.0.0.1 reject"],
    )]));
}

#[test]
#[should_panic(expected = "of the other family")]
fn a_set_of_the_other_family_panics() {
    Nft::load(&table(&[(
        "base",
        Some(FORWARD),
        &["ip saddr @nets_n6 drop"],
    )]));
}

#[test]
#[should_panic(expected = "does not exist")]
fn an_unknown_counter_panics() {
    Nft::load(&table(&[(
        "base",
        Some(FORWARD),
        &["counter name \"c9\" drop"],
    )]));
}
