//! The rule lines of the policy table: per-policy chains, dispatch, isolation drops, consent
//! and the fixed chains around them (pure; driven by [`super::compile`]).

use std::net::IpAddr;

use ipnet::IpNet;

use super::compile::{MARK_CONSENT, MARK_EGRESS, MARK_INGRESS, MARK_TRACK};
use super::table::{Chain, Set, SetKind, Table};
use crate::model::{Action, Direction, Policy, Proto, Rule};

/// The two families a rule is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn ip(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn suffix(self, nets: bool) -> &'static str {
        match (self, nets) {
            (Family::V4, false) => "a4",
            (Family::V6, false) => "a6",
            (Family::V4, true) => "n4",
            (Family::V6, true) => "n6",
        }
    }

    fn kind(self, nets: bool) -> SetKind {
        match (self, nets) {
            (Family::V4, false) => SetKind::Addr4,
            (Family::V6, false) => SetKind::Addr6,
            (Family::V4, true) => SetKind::Net4,
            (Family::V6, true) => SetKind::Net6,
        }
    }

    fn has(self, a: &IpAddr) -> bool {
        matches!(
            (self, a),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }
}

/// A set of addresses or prefixes: what a selection or a peer names.
pub(super) struct Members {
    /// Prefixes (interval set) rather than addresses.
    pub nets: bool,
    /// The members.
    pub items: Vec<IpNet>,
}

/// What a selection or a peer is in each family (in the builder's family order): an address
/// operand (`@set`, a prefix, or `{ prefix, .. }`), or `None` when it has no member there.
pub(super) type Operands = Vec<Option<String>>;

/// Collects the table while the policies are walked.
#[derive(Default)]
pub(super) struct Builder {
    /// The table so far.
    pub table: Table,
    /// Dispatch to per-policy chains and isolation drops, per direction, and to the consent
    /// chains.
    egress_dispatch: Vec<String>,
    egress_isolation: Vec<String>,
    ingress_dispatch: Vec<String>,
    ingress_isolation: Vec<String>,
    consent: Vec<String>,
    /// The families rules are written for: IPv6 only when some network has it.
    families: Vec<Family>,
}

impl Builder {
    /// A builder for IPv4, and IPv6 too when `v6`.
    pub fn new(v6: bool) -> Builder {
        let mut families = vec![Family::V4];
        if v6 {
            families.push(Family::V6);
        }
        Builder {
            families,
            ..Builder::default()
        }
    }

    /// Adds a set of `m` under `base` per family; returns their operands.
    pub fn sets(&mut self, base: &str, m: Members) -> Operands {
        let families = self.families.clone();
        families
            .into_iter()
            .map(|f| {
                let name = format!("{base}_{}", f.suffix(m.nets));
                let elements = m
                    .items
                    .iter()
                    .filter(|n| f.has(&n.addr()))
                    .map(|n| {
                        if m.nets {
                            n.trunc().to_string()
                        } else {
                            n.addr().to_string()
                        }
                    })
                    .collect();
                self.table.sets.insert(
                    name.clone(),
                    Set {
                        kind: f.kind(m.nets),
                        elements,
                    },
                );
                Some(format!("@{name}"))
            })
            .collect()
    }

    /// The operands of the address sets under `base` when an earlier rule made them (a peer
    /// several rules name is one set), else makes them from `members()`.
    pub fn shared_sets(&mut self, base: &str, members: impl FnOnce() -> Vec<IpNet>) -> Operands {
        let name = |f: &Family| format!("{base}_{}", f.suffix(false));
        if self
            .families
            .iter()
            .all(|f| self.table.sets.contains_key(&name(f)))
        {
            return self
                .families
                .iter()
                .map(|f| Some(format!("@{}", name(f))))
                .collect();
        }
        let items = members();
        self.sets(base, Members { nets: false, items })
    }

    /// Fixed prefixes (a network's subnets, a CIDR) written into the rules themselves: no set,
    /// so the kernel and nft have fewer objects to look through on every change.
    pub fn inline(&self, nets: &[IpNet]) -> Operands {
        self.families
            .iter()
            .map(|f| {
                let mine: Vec<String> = nets
                    .iter()
                    .filter(|n| f.has(&n.addr()))
                    .map(|n| n.trunc().to_string())
                    .collect();
                match mine.len() {
                    0 => None,
                    1 => mine.into_iter().next(),
                    _ => Some(format!("{{ {} }}", mine.join(", "))),
                }
            })
            .collect()
    }

    /// The lines of one rule of policy `id`, in its direction's chain, plus (an allow-ingress
    /// rule) its line in the policy's consent chain, so a changed policy refills only its own
    /// chains.
    pub fn rule(
        &mut self,
        id: &str,
        sel: &Operands,
        r: &Rule,
        peer: Option<&Operands>,
        counter: &str,
    ) {
        let (chain, other, mark) = match r.direction {
            Direction::Egress => (format!("{id}_eg"), "daddr", MARK_EGRESS),
            Direction::Ingress => (format!("{id}_in"), "saddr", MARK_INGRESS),
        };
        let verdict = match r.action {
            Action::Deny => "drop".to_string(),
            Action::Allow => format!("meta mark set meta mark or {mark:#010x}"),
        };
        for (i, f) in self.families.clone().iter().enumerate() {
            let l4 = l4(r, *f);
            let addr = match peer.map(|p| p[i].as_ref()) {
                // Nothing of this family to match (an IPv6 CIDR on IPv4): no line.
                Some(None) => continue,
                Some(Some(p)) => format!("{} {other} {p} ", f.ip()),
                None => format!("meta nfproto {} ", nfproto(*f)),
            };
            self.table
                .chains
                .entry(chain.clone())
                .or_default()
                .rules
                .push(format!("{addr}{l4}counter name \"{counter}\" {verdict}"));
            if r.direction == Direction::Ingress && r.action == Action::Allow {
                let consent = format!("{id}_cs");
                self.table
                    .chains
                    .entry(consent.clone())
                    .or_default()
                    .rules
                    .push(format!(
                        "{addr}{l4}meta mark set meta mark or {MARK_CONSENT:#010x}"
                    ));
                for (j, g) in self.families.clone().iter().enumerate() {
                    let Some(sel) = &sel[j] else { continue };
                    let line = format!("{} daddr {sel} jump {consent}", g.ip());
                    if !self.consent.contains(&line) {
                        self.consent.push(line);
                    }
                }
            }
        }
        // The chain exists even when no family has a line (an IPv6 CIDR on an IPv4-only
        // cluster): the dispatch below jumps to it.
        self.table.chains.entry(chain.clone()).or_default();
        let (dispatch, side) = match r.direction {
            Direction::Egress => (&mut self.egress_dispatch, "saddr"),
            Direction::Ingress => (&mut self.ingress_dispatch, "daddr"),
        };
        for (i, f) in self.families.clone().iter().enumerate() {
            let Some(sel) = &sel[i] else { continue };
            let line = format!("{} {side} {sel} jump {chain}", f.ip());
            if !dispatch.contains(&line) {
                dispatch.push(line);
            }
        }
    }

    /// Isolation drops of policy `id`: in each direction it has allow rules, what no allow
    /// rule marked is dropped (after every policy's rules ran).
    pub fn isolation(&mut self, sel: &Operands, p: &Policy, counter: &str) {
        let allows = |d| {
            p.rules
                .iter()
                .any(|r| r.direction == d && r.action == Action::Allow)
        };
        for (dir, side, mark) in [
            (Direction::Egress, "saddr", MARK_EGRESS),
            (Direction::Ingress, "daddr", MARK_INGRESS),
        ] {
            if !allows(dir) {
                continue;
            }
            let out = match dir {
                Direction::Egress => &mut self.egress_isolation,
                Direction::Ingress => &mut self.ingress_isolation,
            };
            for (f, sel) in self.families.iter().zip(sel) {
                let Some(sel) = sel else { continue };
                out.push(format!(
                    "{} {side} {sel} meta mark and {mark:#010x} == 0 counter name \"{counter}\" drop",
                    f.ip()
                ));
            }
        }
    }

    /// The fixed chains around the per-policy ones.
    pub fn finish(&mut self) {
        let chains = &mut self.table.chains;
        let keep = !(MARK_EGRESS | MARK_INGRESS | MARK_CONSENT);
        chains.insert(
            "sf_prerouting".into(),
            Chain {
                hook: Some("type filter hook prerouting priority raw - 10; policy accept;".into()),
                rules: self
                    .families
                    .iter()
                    .map(|f| {
                        format!(
                            "{} saddr @tracked_{} meta mark set meta mark or {MARK_TRACK:#010x}",
                            f.ip(),
                            f.suffix(true)
                        )
                    })
                    .collect(),
            },
        );
        let mut forward = Vec::new();
        for side in ["saddr", "daddr"] {
            for f in self.families.clone() {
                forward.push(format!(
                    "{} {side} @tracked_{} goto sf_policy",
                    f.ip(),
                    f.suffix(true)
                ));
            }
        }
        chains.insert(
            "sf_forward".into(),
            Chain {
                hook: Some("type filter hook forward priority filter - 10; policy accept;".into()),
                rules: forward,
            },
        );
        let mut policy = vec![
            format!("ct state established,related meta mark set meta mark or {MARK_CONSENT:#010x} accept"),
            format!("meta mark set meta mark and {keep:#010x}"),
        ];
        for f in self.families.clone() {
            policy.push(format!(
                "{} saddr @local_{} jump sf_egress",
                f.ip(),
                f.suffix(false)
            ));
        }
        for f in self.families.clone() {
            policy.push(format!(
                "{} daddr @local_{} goto sf_ingress",
                f.ip(),
                f.suffix(false)
            ));
        }
        policy.push("goto sf_consent".into());
        chains.insert(
            "sf_policy".into(),
            Chain {
                hook: None,
                rules: policy,
            },
        );
        let egress = [
            std::mem::take(&mut self.egress_dispatch),
            std::mem::take(&mut self.egress_isolation),
        ]
        .concat();
        chains.insert(
            "sf_egress".into(),
            Chain {
                hook: None,
                rules: egress,
            },
        );
        let mut ingress = [
            std::mem::take(&mut self.ingress_dispatch),
            std::mem::take(&mut self.ingress_isolation),
        ]
        .concat();
        ingress.push(format!(
            "meta mark and {MARK_INGRESS:#010x} != 0 meta mark set meta mark or {MARK_CONSENT:#010x}"
        ));
        chains.insert(
            "sf_ingress".into(),
            Chain {
                hook: None,
                rules: ingress,
            },
        );
        chains.insert(
            "sf_consent".into(),
            Chain {
                hook: None,
                rules: std::mem::take(&mut self.consent),
            },
        );
    }
}

/// `nfproto` of a family.
fn nfproto(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// The transport match of a rule in family `f` (with a trailing space; empty for any).
fn l4(r: &Rule, f: Family) -> String {
    let ports = || {
        let list: Vec<String> = r.ports.iter().map(|p| p.to_string()).collect();
        format!("{{ {} }}", list.join(", "))
    };
    match (r.proto, r.ports.is_empty()) {
        (Proto::Tcp, false) => format!("tcp dport {} ", ports()),
        (Proto::Udp, false) => format!("udp dport {} ", ports()),
        (Proto::Any, false) => format!("meta l4proto {{ tcp, udp }} th dport {} ", ports()),
        (Proto::Tcp, true) => "meta l4proto tcp ".into(),
        (Proto::Udp, true) => "meta l4proto udp ".into(),
        (Proto::Icmp, _) => match f {
            Family::V4 => "meta l4proto icmp ".into(),
            Family::V6 => "meta l4proto ipv6-icmp ".into(),
        },
        (Proto::Any, true) => String::new(),
    }
}
