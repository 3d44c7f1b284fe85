//! An interpreter of exactly the nft subset the policy table is written in, so the compiled rule
//! texts (not the model they came from) can be run against packets without a kernel.
//!
//! Loading checks what `nft -f` would refuse (unknown sets, chains or counters, a set of the other
//! family, overlapping intervals) and panics on any syntax it does not know, so a new construct in
//! `rules.rs` cannot pass untested: it has to be taught here first. The cluster-wide packet path
//! and the comparison with the oracle are in `interp_cluster_tests.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::{FlowProto, SetKind, Table};

#[path = "interp_cluster_tests.rs"]
mod cluster;

/// One packet as the hooks see it (the first packet of a connection unless `established`).
#[derive(Debug, Clone)]
struct Packet {
    src: IpAddr,
    dst: IpAddr,
    proto: FlowProto,
    /// Destination port (TCP and UDP only).
    port: u16,
    mark: u32,
    /// conntrack state established (or related) rather than new.
    established: bool,
}

impl Packet {
    fn new(src: IpAddr, dst: IpAddr, proto: FlowProto, port: u16) -> Packet {
        assert_eq!(src.is_ipv6(), dst.is_ipv6(), "one family per packet");
        Packet {
            src,
            dst,
            proto,
            port,
            mark: 0,
            established: false,
        }
    }

    /// `meta l4proto` as nft names it.
    fn l4proto(&self) -> &'static str {
        match (self.proto, self.src.is_ipv6()) {
            (FlowProto::Tcp, _) => "tcp",
            (FlowProto::Udp, _) => "udp",
            (FlowProto::Icmp, false) => "icmp",
            (FlowProto::Icmp, true) => "ipv6-icmp",
        }
    }
}

/// What a base chain decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Accept,
    Drop,
}

/// One match or statement of a rule.
#[derive(Debug, Clone)]
enum Expr {
    /// `ip|ip6 saddr|daddr @set`, `.. PREFIX` or `.. { PREFIX, .. }`.
    Addr {
        v6: bool,
        daddr: bool,
        from: Operand,
    },
    /// `meta nfproto ipv4|ipv6`.
    NfProto { v6: bool },
    /// `meta l4proto NAME` or `meta l4proto { NAME, .. }`.
    L4proto(Vec<String>),
    /// `tcp|udp dport { .. }` (`proto`), or `th dport { .. }` (`None`).
    Dport {
        proto: Option<&'static str>,
        ports: Vec<(u16, u16)>,
    },
    /// `meta mark and MASK == 0` (`zero`) or `!= 0`.
    MarkTest { mask: u32, zero: bool },
    /// `ct state established,related`.
    Established,
    /// `counter name "NAME"`.
    Counter(String),
    /// `meta mark set meta mark or V`.
    MarkOr(u32),
    /// `meta mark set meta mark and V`.
    MarkAnd(u32),
}

/// What an address is looked up in.
#[derive(Debug, Clone)]
enum Operand {
    /// A named set.
    Set(String),
    /// Prefixes written in the rule.
    Nets(Vec<IpNet>),
}

/// How a rule ends.
#[derive(Debug, Clone)]
enum Verdict {
    Accept,
    Drop,
    Jump(String),
    Goto(String),
}

#[derive(Debug, Clone)]
struct Line {
    text: String,
    exprs: Vec<Expr>,
    verdict: Option<Verdict>,
}

/// A base chain's hook: its name, priority (a number) and policy.
#[derive(Debug, Clone)]
struct Hook {
    name: String,
    priority: i32,
    policy: Decision,
}

#[derive(Debug, Clone)]
struct ParsedChain {
    hook: Option<Hook>,
    lines: Vec<Line>,
}

/// A set's members, read per its kind.
#[derive(Debug, Clone)]
struct Elements {
    v6: bool,
    nets: Vec<IpNet>,
}

/// A loaded table: what nft would hold after `render_full`.
#[derive(Debug, Clone)]
struct Nft {
    sets: BTreeMap<String, Elements>,
    chains: BTreeMap<String, ParsedChain>,
}

/// Counter values by name, and the rules that matched (for failure messages).
#[derive(Debug, Clone, Default)]
struct Effects {
    counters: BTreeMap<String, u64>,
    trace: Vec<String>,
}

/// nft's largest jump stack (`NFT_JUMP_STACK_SIZE`).
const MAX_DEPTH: usize = 16;

impl Nft {
    /// Loads `t` as `nft -f` would, panicking where nft would refuse it.
    fn load(t: &Table) -> Nft {
        let sets = t
            .sets
            .iter()
            .map(|(name, s)| (name.clone(), read_set(name, s.kind, &s.elements)))
            .collect();
        let chains = t
            .chains
            .iter()
            .map(|(name, c)| {
                let hook = c.hook.as_deref().map(|h| parse_hook(name, h));
                let lines = c.rules.iter().map(|r| parse_rule(r)).collect();
                (name.clone(), ParsedChain { hook, lines })
            })
            .collect();
        let nft = Nft { sets, chains };
        for (name, chain) in &nft.chains {
            for line in &chain.lines {
                nft.check_refs(name, line, &t.counters);
            }
        }
        nft
    }

    fn check_refs(&self, chain: &str, line: &Line, counters: &BTreeSet<String>) {
        let text = &line.text;
        for e in &line.exprs {
            match e {
                Expr::Addr {
                    v6,
                    from: Operand::Set(set),
                    ..
                } => {
                    let s = self.sets.get(set).unwrap_or_else(|| {
                        panic!("{chain}: {text:?} names set {set:?}, which does not exist")
                    });
                    assert_eq!(
                        s.v6, *v6,
                        "{chain}: {text:?}: set {set:?} is of the other family"
                    );
                }
                Expr::Addr {
                    v6,
                    from: Operand::Nets(nets),
                    ..
                } => assert!(
                    nets.iter().all(|n| n.addr().is_ipv6() == *v6),
                    "{chain}: {text:?}: a prefix is of the other family"
                ),
                Expr::Counter(c) => assert!(
                    counters.contains(c),
                    "{chain}: {text:?} names counter {c:?}, which does not exist"
                ),
                _ => {}
            }
        }
        if let Some(Verdict::Jump(to) | Verdict::Goto(to)) = &line.verdict {
            let target = self.chains.get(to).unwrap_or_else(|| {
                panic!("{chain}: {text:?} jumps to chain {to:?}, which does not exist")
            });
            assert!(
                target.hook.is_none(),
                "{chain}: {text:?}: cannot jump to base chain {to:?}"
            );
        }
    }

    /// The base chain on `hook`, if the table has one (then its priority).
    fn base(&self, hook: &str) -> Option<(&str, &Hook)> {
        let mut found = self
            .chains
            .iter()
            .filter_map(|(n, c)| c.hook.as_ref().map(|h| (n.as_str(), h)))
            .filter(|(_, h)| h.name == hook);
        let first = found.next();
        assert!(found.next().is_none(), "two base chains on hook {hook}");
        first
    }

    /// Runs the base chain on `hook` over `p` (accept when the table has none).
    fn run_hook(&self, hook: &str, p: &mut Packet, fx: &mut Effects) -> Decision {
        let Some((name, h)) = self.base(hook) else {
            return Decision::Accept;
        };
        self.run(name, p, fx, 0).unwrap_or(h.policy)
    }

    /// Runs `chain`: `Some` when a rule decided, `None` when it ran off its end (back to the
    /// caller of the last `jump`, or the base chain's policy).
    fn run(&self, chain: &str, p: &mut Packet, fx: &mut Effects, depth: usize) -> Option<Decision> {
        assert!(depth < MAX_DEPTH, "jump stack overflow in {chain}");
        for line in &self.chains[chain].lines {
            if !self.matches(line, p, fx) {
                continue;
            }
            fx.trace.push(format!("{chain}: {}", line.text));
            match &line.verdict {
                None => {}
                Some(Verdict::Accept) => return Some(Decision::Accept),
                Some(Verdict::Drop) => return Some(Decision::Drop),
                Some(Verdict::Jump(to)) => {
                    if let Some(d) = self.run(to, p, fx, depth + 1) {
                        return Some(d);
                    }
                }
                // `goto` does not come back here: running off `to` returns to our caller.
                Some(Verdict::Goto(to)) => return self.run(to, p, fx, depth + 1),
            }
        }
        None
    }

    /// Evaluates `line`'s expressions left to right (statements act as they are reached);
    /// true when every match held.
    fn matches(&self, line: &Line, p: &mut Packet, fx: &mut Effects) -> bool {
        for e in &line.exprs {
            let ok = match e {
                Expr::Addr { v6, daddr, from } => {
                    let a = if *daddr { p.dst } else { p.src };
                    let nets = match from {
                        Operand::Set(set) => &self.sets[set].nets,
                        Operand::Nets(nets) => nets,
                    };
                    a.is_ipv6() == *v6 && nets.iter().any(|n| n.contains(&a))
                }
                Expr::NfProto { v6 } => p.src.is_ipv6() == *v6,
                Expr::L4proto(names) => names.iter().any(|n| n == p.l4proto()),
                Expr::Dport { proto, ports } => {
                    let has_ports = matches!(p.proto, FlowProto::Tcp | FlowProto::Udp);
                    let proto_ok = match proto {
                        Some(want) => *want == p.l4proto(),
                        // `th dport` reads bytes 2-3 of any transport header (an ICMP checksum).
                        None => {
                            assert!(
                                has_ports,
                                "{:?}: th dport without an l4proto guard",
                                line.text
                            );
                            true
                        }
                    };
                    proto_ok && ports.iter().any(|(a, b)| (*a..=*b).contains(&p.port))
                }
                Expr::MarkTest { mask, zero } => (p.mark & mask == 0) == *zero,
                Expr::Established => p.established,
                Expr::Counter(c) => {
                    *fx.counters.entry(c.clone()).or_default() += 1;
                    true
                }
                Expr::MarkOr(v) => {
                    p.mark |= v;
                    true
                }
                Expr::MarkAnd(v) => {
                    p.mark &= v;
                    true
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Reads a set's elements as nft does (prefixes truncated), refusing what it would refuse.
fn read_set(name: &str, kind: SetKind, elements: &BTreeSet<String>) -> Elements {
    let (v6, interval) = match kind {
        SetKind::Addr4 => (false, false),
        SetKind::Addr6 => (true, false),
        SetKind::Net4 => (false, true),
        SetKind::Net6 => (true, true),
    };
    let nets: Vec<IpNet> = elements
        .iter()
        .map(|e| {
            let net = match (interval, e.parse::<IpNet>()) {
                (true, Ok(n)) => n.trunc(),
                _ => IpNet::from(e.parse::<IpAddr>().unwrap_or_else(|_| {
                    panic!("set {name} ({kind:?}): {e:?} is not an element of its type")
                })),
            };
            assert_eq!(net.addr().is_ipv6(), v6, "set {name} ({kind:?}): {e:?}");
            net
        })
        .collect();
    for (i, a) in nets.iter().enumerate() {
        for b in &nets[i + 1..] {
            assert!(
                !a.contains(b) && !b.contains(a),
                "set {name}: nft refuses the conflicting intervals {a} and {b}"
            );
        }
    }
    Elements { v6, nets }
}

/// `type filter hook H priority P; policy accept|drop;`.
fn parse_hook(chain: &str, text: &str) -> Hook {
    let bad = || -> ! { panic!("chain {chain}: hook line {text:?} is not understood") };
    let rest = text
        .strip_prefix("type filter hook ")
        .unwrap_or_else(|| bad());
    let (name, rest) = rest.split_once(" priority ").unwrap_or_else(|| bad());
    let (prio, rest) = rest.split_once("; policy ").unwrap_or_else(|| bad());
    let policy = match rest {
        "accept;" => Decision::Accept,
        "drop;" => Decision::Drop,
        _ => bad(),
    };
    let named = |n: &str| match n {
        "raw" => Some(-300),
        "mangle" => Some(-150),
        "filter" => Some(0),
        "security" => Some(50),
        n => n.parse::<i32>().ok(),
    };
    let words: Vec<&str> = prio.split(' ').collect();
    let priority = match words[..] {
        [n] => named(n),
        [n, "-", d] => named(n).zip(d.parse::<i32>().ok()).map(|(n, d)| n - d),
        [n, "+", d] => named(n).zip(d.parse::<i32>().ok()).map(|(n, d)| n + d),
        _ => None,
    }
    .unwrap_or_else(|| bad());
    Hook {
        name: name.to_string(),
        priority,
        policy,
    }
}

/// Parses one rule text, panicking on anything outside the subset.
fn parse_rule(text: &str) -> Line {
    let toks: Vec<&str> = text.split_whitespace().collect();
    let bad = |at: &[&str]| -> ! { unsupported(text, at) };
    let hex = |s: &str, at: &[&str]| -> u32 {
        s.strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .unwrap_or_else(|| bad(at))
    };
    let mut exprs = Vec::new();
    let mut verdict = None;
    let mut rest = &toks[..];
    while !rest.is_empty() {
        let at = rest;
        let (e, used) = match rest {
            [fam @ ("ip" | "ip6"), dir @ ("saddr" | "daddr"), what, ..] => {
                let (from, used) = match what.strip_prefix('@') {
                    Some(set) => (Operand::Set(set.to_string()), 3),
                    None if *what == "{" => {
                        let (items, used) = brace_list(&rest[2..], text, at);
                        let nets = items.iter().map(|i| prefix(i, text, at)).collect();
                        (Operand::Nets(nets), 2 + used)
                    }
                    None => (Operand::Nets(vec![prefix(what, text, at)]), 3),
                };
                let e = Expr::Addr {
                    v6: *fam == "ip6",
                    daddr: *dir == "daddr",
                    from,
                };
                (Some(e), used)
            }
            ["meta", "nfproto", fam @ ("ipv4" | "ipv6"), ..] => {
                (Some(Expr::NfProto { v6: *fam == "ipv6" }), 3)
            }
            ["meta", "l4proto", "{", ..] => {
                let (items, used) = brace_list(&rest[2..], text, at);
                for i in &items {
                    l4name(i, text, at);
                }
                (Some(Expr::L4proto(items)), 2 + used)
            }
            ["meta", "l4proto", name, ..] => {
                (Some(Expr::L4proto(vec![l4name(name, text, at).into()])), 3)
            }
            [l4 @ ("tcp" | "udp" | "th"), "dport", "{", ..] => {
                let (items, used) = brace_list(&rest[2..], text, at);
                let ports = items.iter().map(|i| port_range(i, text, at)).collect();
                let proto = match *l4 {
                    "tcp" => Some("tcp"),
                    "udp" => Some("udp"),
                    _ => None,
                };
                (Some(Expr::Dport { proto, ports }), 2 + used)
            }
            ["meta", "mark", "set", "meta", "mark", op @ ("or" | "and"), v, ..] => {
                let v = hex(v, at);
                let e = if *op == "or" {
                    Expr::MarkOr(v)
                } else {
                    Expr::MarkAnd(v)
                };
                (Some(e), 7)
            }
            ["meta", "mark", "and", mask, op @ ("==" | "!="), "0", ..] => {
                let e = Expr::MarkTest {
                    mask: hex(mask, at),
                    zero: *op == "==",
                };
                (Some(e), 6)
            }
            ["ct", "state", "established,related", ..] => (Some(Expr::Established), 3),
            ["counter", "name", name, ..] => {
                let name = name
                    .strip_prefix('"')
                    .and_then(|n| n.strip_suffix('"'))
                    .filter(|n| !n.is_empty() && !n.contains('"'))
                    .unwrap_or_else(|| bad(at));
                (Some(Expr::Counter(name.to_string())), 3)
            }
            ["accept"] => {
                verdict = Some(Verdict::Accept);
                (None, 1)
            }
            ["drop"] => {
                verdict = Some(Verdict::Drop);
                (None, 1)
            }
            ["jump", to] => {
                verdict = Some(Verdict::Jump(to.to_string()));
                (None, 2)
            }
            ["goto", to] => {
                verdict = Some(Verdict::Goto(to.to_string()));
                (None, 2)
            }
            _ => bad(at),
        };
        exprs.extend(e);
        rest = &rest[used..];
    }
    assert!(
        !exprs.is_empty() || verdict.is_some(),
        "empty rule {text:?}"
    );
    Line {
        text: text.to_string(),
        exprs,
        verdict,
    }
}

fn unsupported(text: &str, at: &[&str]) -> ! {
    panic!(
        "unsupported nft syntax at {:?} in rule {text:?}",
        at.join(" ")
    )
}

/// `{ a, b, c }` at the start of `toks`: the items and how many tokens they took.
fn brace_list(toks: &[&str], text: &str, at: &[&str]) -> (Vec<String>, usize) {
    let end = toks
        .iter()
        .position(|t| *t == "}")
        .unwrap_or_else(|| unsupported(text, at));
    let inner = toks[1..end].join(" ");
    let items: Vec<String> = inner.split(',').map(|i| i.trim().to_string()).collect();
    if items.iter().any(|i| i.is_empty() || i.contains(' ')) {
        unsupported(text, at)
    }
    (items, end + 1)
}

/// A prefix as nft takes it in a rule: an address or `ADDR/LEN` without host bits.
fn prefix(item: &str, text: &str, at: &[&str]) -> IpNet {
    match item.parse::<IpNet>() {
        Ok(n) if n == n.trunc() => n,
        Ok(_) => unsupported(text, at),
        Err(_) => item
            .parse::<IpAddr>()
            .map(IpNet::from)
            .unwrap_or_else(|_| unsupported(text, at)),
    }
}

fn l4name<'a>(name: &'a str, text: &str, at: &[&str]) -> &'a str {
    match name {
        "tcp" | "udp" | "icmp" | "ipv6-icmp" => name,
        _ => unsupported(text, at),
    }
}

fn port_range(item: &str, text: &str, at: &[&str]) -> (u16, u16) {
    let port = |s: &str| s.parse::<u16>().unwrap_or_else(|_| unsupported(text, at));
    let (a, b) = match item.split_once('-') {
        Some((a, b)) => (port(a), port(b)),
        None => (port(item), port(item)),
    };
    if b < a {
        unsupported(text, at)
    }
    (a, b)
}

/// The interpreter itself, on hand-written tables.
#[path = "interp_self_tests.rs"]
mod interpreter;
