//! The first packet of a connection on its way through the cluster: every node it crosses runs
//! its own compiled policy table (interpreted from the rule texts) and then shibafu's main forward
//! chain (modelled here); it passes when no node drops it. `interp_oracle_tests.rs` compares
//! this with the oracle.
//!
//! The path: the source's node forwards the packet (it routes between networks; a source outside
//! the cluster enters at some node); when the destination lives on another node, that node
//! bridges it once more from the VXLAN device to the destination. Packet marks do not cross
//! nodes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use super::{Decision, Effects, Nft, Packet};
use crate::model::{Action, Direction, Endpoint, Isolation, Link, Network, Policy, Rule};
use crate::policy::{
    compile, policed_networks, selects, verdict, Flow, PolicyView, Table, Verdict, MARK_CONSENT,
    MARK_TRACK,
};

#[path = "interp_oracle_tests.rs"]
mod oracle;

/// A cluster: what the oracle reads, plus the nodes.
#[derive(Clone)]
struct World {
    networks: Vec<Network>,
    endpoints: Vec<Endpoint>,
    links: Vec<Link>,
    policies: Vec<Policy>,
    nodes: Vec<String>,
}

/// A change made to each compiled table before it is loaded.
type Mutation<'a> = &'a dyn Fn(&mut Table);

/// Which forward decision of the main table a node takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// The source's node (or where an outside source enters): today's rules.
    Origin,
    /// The destination's node bridging from the VXLAN device: same bridge.
    Bridged,
}

/// What one node did with the packet.
#[derive(Debug, Clone)]
struct NodeStep {
    node: String,
    policy: Decision,
    mark: u32,
    main: bool,
    effects: Effects,
}

/// The packet's path and its outcome.
#[derive(Debug, Clone)]
struct Path {
    verdict: Verdict,
    steps: Vec<NodeStep>,
}

impl Path {
    /// Counter `name` on `node`.
    fn count(&self, node: &str, name: &str) -> u64 {
        self.steps
            .iter()
            .filter(|s| s.node == node)
            .map(|s| s.effects.counters.get(name).copied().unwrap_or(0))
            .sum()
    }

    /// Every counter that moved, as `node:name=n`.
    fn counted(&self) -> Vec<String> {
        self.steps
            .iter()
            .flat_map(|s| {
                s.effects
                    .counters
                    .iter()
                    .map(move |(c, n)| format!("{}:{c}={n}", s.node))
            })
            .collect()
    }
}

impl World {
    fn endpoint(&self, a: IpAddr) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| IpAddr::V4(e.ipv4) == a || e.ipv6.map(IpAddr::V6) == Some(a))
    }

    fn network(&self, name: &str) -> &Network {
        self.networks
            .iter()
            .find(|n| n.name == name)
            .expect("endpoint on a known network")
    }

    fn linked(&self, a: &str, b: &str) -> bool {
        self.links
            .iter()
            .any(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
    }

    /// Each node's compiled table, loaded; checks it runs before the main table's chains.
    fn tables(&self) -> BTreeMap<String, Nft> {
        self.tables_with(&|_| {})
    }

    /// Each node's compiled table, changed by `mutate` before it is loaded (to check that the
    /// comparison notices broken tables).
    fn tables_with(&self, mutate: Mutation) -> BTreeMap<String, Nft> {
        let nets: Vec<&Network> = self.networks.iter().collect();
        let eps: Vec<&Endpoint> = self.endpoints.iter().collect();
        let pols: Vec<&Policy> = self.policies.iter().collect();
        self.nodes
            .iter()
            .map(|node| {
                let mut table = compile(&nets, &eps, &pols, node).table;
                mutate(&mut table);
                let nft = Nft::load(&table);
                // The main table: raw prerouting at -300, forward at filter (0).
                for (hook, main) in [("prerouting", -300), ("forward", 0)] {
                    if let Some((chain, h)) = nft.base(hook) {
                        assert!(h.priority < main, "{chain} runs after the main table");
                    }
                }
                (node.clone(), nft)
            })
            .collect()
    }

    /// The main table's forward decision at a node (after the policy table accepted).
    fn main_forward(
        &self,
        hop: Hop,
        s: Option<&Endpoint>,
        d: Option<&Endpoint>,
        mark: u32,
    ) -> bool {
        if mark & MARK_CONSENT != 0 {
            return true;
        }
        match (hop, s, d) {
            (Hop::Bridged, _, _) => true,
            (Hop::Origin, Some(s), Some(d)) => {
                s.network == d.network || self.linked(&s.network, &d.network)
            }
            (Hop::Origin, Some(s), None) => !self.network(&s.network).internal,
            (Hop::Origin, None, _) => false,
        }
    }

    /// Sends the first packet of `flow` from `src` to `dst`; `entry` is the node an outside
    /// source enters by.
    fn send(
        &self,
        tables: &BTreeMap<String, Nft>,
        src: IpAddr,
        dst: IpAddr,
        flow: Flow,
        entry: &str,
    ) -> Path {
        let (s, d) = (self.endpoint(src), self.endpoint(dst));
        let origin = s.map_or(entry, |s| s.node.as_str());
        let mut hops = vec![(origin, Hop::Origin)];
        if let Some(d) = d.filter(|d| d.node != origin) {
            hops.push((d.node.as_str(), Hop::Bridged));
        }
        let policed = policed_networks(&self.networks, &self.policies);
        let same_net = s
            .zip(d)
            .filter(|(s, d)| s.network == d.network)
            .map(|(s, _)| &s.network);
        let mut steps = Vec::new();
        for (node, hop) in hops {
            let nft = &tables[node];
            let mut p = Packet::new(src, dst, flow.proto, flow.port);
            let mut effects = Effects::default();
            let pre = nft.run_hook("prerouting", &mut p, &mut effects);
            assert_eq!(pre, Decision::Accept, "{node}: prerouting drops");
            // Same-network traffic is untracked unless marked: a policed one must be tracked
            // for its replies to be `established`.
            if let Some(net) = same_net.filter(|n| policed.contains(*n)) {
                assert!(
                    p.mark & MARK_TRACK != 0,
                    "{node}: {src} -> {dst} on policed {net} left untracked"
                );
            }
            let policy = nft.run_hook("forward", &mut p, &mut effects);
            // Bridged frames of networks nobody polices skip the inet hooks altogether (the
            // dataplane sets nf_call_iptables per policed bridge): the table must not matter.
            let bridged = hop == Hop::Bridged || same_net.is_some();
            if let Some(net) = d
                .map(|d| &d.network)
                .filter(|n| bridged && !policed.contains(*n))
            {
                assert!(
                    policy == Decision::Accept && effects.counters.is_empty(),
                    "{node}: the table acts on a bridged frame of unpoliced {net}: {:?}",
                    effects.trace
                );
            }
            let main = policy == Decision::Accept && self.main_forward(hop, s, d, p.mark);
            steps.push(NodeStep {
                node: node.to_string(),
                policy,
                mark: p.mark,
                main,
                effects,
            });
            if !main {
                return Path {
                    verdict: Verdict::Deny,
                    steps,
                };
            }
        }
        Path {
            verdict: Verdict::Allow,
            steps,
        }
    }

    /// Runs every connection between `addrs` (one family, not both outside, entering at every
    /// node when the source is outside) through the tables as `mutate` leaves them: the first
    /// disagreement with the oracle, or a counter that moved for a packet its rule does not
    /// match, moved twice, or a drop no counter recorded.
    fn disagreement(&self, addrs: &[IpAddr], flows: &[Flow], mutate: Mutation) -> Option<String> {
        let tables = self.tables_with(mutate);
        let view = PolicyView::new(&self.networks, &self.endpoints, &self.links, &self.policies);
        let probes = RuleProbes::new(self);
        for &src in addrs {
            for &dst in addrs {
                let outside = self.endpoint(src).is_none() && self.endpoint(dst).is_none();
                if src == dst || src.is_ipv6() != dst.is_ipv6() || outside {
                    continue;
                }
                let entries: Vec<&str> = match self.endpoint(src) {
                    Some(s) => vec![s.node.as_str()],
                    None => self.nodes.iter().map(String::as_str).collect(),
                };
                for &flow in flows {
                    let want = verdict(&view, src, dst, flow);
                    for entry in &entries {
                        let path = self.send(&tables, src, dst, flow, entry);
                        let what = format!("{src} -> {dst} {flow:?} (entering at {entry})");
                        let problem = if path.verdict != want {
                            Some(format!("oracle {want:?}, tables {:?}", path.verdict))
                        } else {
                            probes.miscounted(self, &path, src, dst, flow)
                        };
                        if let Some(p) = problem {
                            return Some(format!("{self}{what}: {p}\n{path}"));
                        }
                    }
                }
            }
        }
        None
    }

    /// Addresses of the endpoints (both families) and `outside`.
    fn addresses(&self, outside: &[IpAddr]) -> Vec<IpAddr> {
        self.endpoints
            .iter()
            .flat_map(|e| std::iter::once(IpAddr::V4(e.ipv4)).chain(e.ipv6.map(IpAddr::V6)))
            .chain(outside.iter().copied())
            .collect()
    }
}

/// Asks the oracle whether one rule of a stored policy matches a connection, in a copy of the
/// cluster where nothing else decides (every network linked, none internal or strict, the rule
/// alone): a deny-egress rule denies exactly what it matches, and an allow-ingress rule allows
/// exactly what it matches for a destination its policy selects.
struct RuleProbes {
    networks: Vec<Network>,
    links: Vec<Link>,
    /// Counter name -> the policy reduced to its rule, made deny-egress or allow-ingress.
    rules: BTreeMap<String, Policy>,
}

impl RuleProbes {
    fn new(w: &World) -> RuleProbes {
        let networks: Vec<Network> = w
            .networks
            .iter()
            .map(|n| Network {
                internal: false,
                isolation: Isolation::None,
                ..n.clone()
            })
            .collect();
        let links = networks
            .iter()
            .flat_map(|a| networks.iter().map(move |b| Link::new(&a.name, &b.name)))
            .collect();
        let nets: Vec<&Network> = w.networks.iter().collect();
        let eps: Vec<&Endpoint> = w.endpoints.iter().collect();
        let pols: Vec<&Policy> = w.policies.iter().collect();
        let mut rules = BTreeMap::new();
        for names in compile(&nets, &eps, &pols, &w.nodes[0]).counters {
            let p = w.policies.iter().find(|p| p.name == names.policy);
            let p = p.expect("counters of a stored policy");
            for (counter, r) in names.rules.into_iter().zip(&p.rules) {
                let action = match r.direction {
                    Direction::Egress => Action::Deny,
                    Direction::Ingress => Action::Allow,
                };
                let rule = Rule {
                    action,
                    ..r.clone()
                };
                rules.insert(
                    counter,
                    Policy {
                        rules: vec![rule],
                        ..p.clone()
                    },
                );
            }
        }
        RuleProbes {
            networks,
            links,
            rules,
        }
    }

    /// Does the rule counted by `counter` match? `None` for counters of no stored rule.
    fn matches(
        &self,
        w: &World,
        counter: &str,
        src: IpAddr,
        dst: IpAddr,
        flow: Flow,
    ) -> Option<bool> {
        let p = self.rules.get(counter)?;
        let view = PolicyView::new(&self.networks, &w.endpoints, &self.links, [p]);
        let answer = verdict(&view, src, dst, flow);
        Some(match p.rules[0].direction {
            Direction::Egress => {
                w.endpoint(src).is_some_and(|s| selects(p, s)) && answer == Verdict::Deny
            }
            Direction::Ingress => {
                w.endpoint(dst).is_some_and(|d| selects(p, d)) && answer == Verdict::Allow
            }
        })
    }

    /// What is wrong with the counters of `path`, if anything.
    fn miscounted(
        &self,
        w: &World,
        path: &Path,
        src: IpAddr,
        dst: IpAddr,
        flow: Flow,
    ) -> Option<String> {
        let mut total: BTreeMap<&str, u64> = BTreeMap::new();
        for step in &path.steps {
            for (c, n) in &step.effects.counters {
                *total.entry(c).or_default() += n;
            }
            let last = step.effects.trace.last();
            if step.policy == Decision::Drop && !last.is_some_and(|t| t.contains(" counter name "))
            {
                return Some(format!(
                    "{}: dropped by a rule without a counter",
                    step.node
                ));
            }
        }
        if let Some((c, _)) = total.iter().find(|(_, n)| **n > 1) {
            return Some(format!("counter {c} moved more than once"));
        }
        total
            .keys()
            .find(|c| self.matches(w, c, src, dst, flow) == Some(false))
            .map(|c| format!("counter {c} moved but its rule does not match"))
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "world (nodes {}):", self.nodes.join(", "))?;
        for n in &self.networks {
            let v6 = n.subnet6.map(|s| format!(" {s}")).unwrap_or_default();
            let internal = if n.internal { " internal" } else { "" };
            writeln!(
                f,
                "  network {} {}{v6}{internal} isolation {}",
                n.name, n.subnet, n.isolation
            )?;
        }
        for l in &self.links {
            writeln!(f, "  link {} <-> {}", l.a, l.b)?;
        }
        for e in &self.endpoints {
            let v6 = e.ipv6.map(|a| format!(" {a}")).unwrap_or_default();
            let svc = e
                .service
                .as_ref()
                .map(|s| format!(" service {s}"))
                .unwrap_or_default();
            writeln!(
                f,
                "  endpoint {} on {} at {}: {}{v6}{svc}",
                e.name, e.network, e.node, e.ipv4
            )?;
        }
        for p in &self.policies {
            let svc = p
                .service
                .as_ref()
                .map(|s| format!(" service {s}"))
                .unwrap_or_default();
            write!(f, "  policy {} on {}{svc}:", p.name, p.network)?;
            for r in &p.rules {
                write!(f, " {r}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Proptest prints failing inputs with `Debug`: the short form.
impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(
                f,
                "  {}: policy table {:?} (mark {:#010x}), main table {}",
                s.node,
                s.policy,
                s.mark,
                if s.main { "accept" } else { "drop" }
            )?;
            for t in &s.effects.trace {
                writeln!(f, "    {t}")?;
            }
        }
        Ok(())
    }
}
