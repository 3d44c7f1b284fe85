//! Composing the sections of an authoritative answer: CNAME chains, NODATA vs NXDOMAIN,
//! minimal ANY, additional addresses for SRV/MX/NS targets.
//!
//! A chain may lead into another zone; the caller decides at each such step whether it goes on
//! (views). Stopping there leaves the CNAMEs written so far, exactly as for an out-of-zone target.

use super::{AnswerOrder, Node, RrSet, Snapshot};
use crate::dns::encode::{Rd, Writer};
use crate::dns::wire::{rcode, rtype};

/// Longest CNAME chain followed inside the zones.
const MAX_CHAIN: usize = 8;
/// Most rotations prebuilt for one rrset (each holds the whole rrset).
const MAX_ROTATIONS: usize = 64;
/// Most records of an rrset answered one per answer (each variant holds one record).
const MAX_ONE_PER_ANSWER: usize = 1024;

/// What [`compose`] wrote, for the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Composed {
    /// NOERROR or NXDOMAIN.
    pub(crate) rcode: u16,
    /// Answer records.
    pub(crate) an: u16,
    /// Authority records.
    pub(crate) ns: u16,
    /// Additional records (the OPT record is not counted).
    pub(crate) ar: u16,
    /// Where the additional section starts (offset in the buffer written, or, in a prebuilt
    /// answer, in its bytes): cutting there drops it without touching the answer.
    pub(crate) additional_at: usize,
    /// How many rotations the answered rrset has under its order (1 when fixed).
    pub(crate) rotations: usize,
}

/// A step where a CNAME chain enters another zone: the answer cut here holds the chain so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    /// The zone entered.
    pub(crate) zone: u16,
    /// Where the records from that zone start (right after the CNAME pointing into it).
    pub(crate) at: usize,
    /// Answer records before that point.
    pub(crate) an: u16,
}

impl Cut {
    /// The header facts of the answer cut here: NOERROR and the CNAMEs only, as for a target
    /// outside our zones.
    pub(crate) fn meta(&self) -> Composed {
        Composed {
            an: self.an,
            additional_at: self.at,
            rotations: 1,
            ..Composed::default()
        }
    }
}

/// Writes the answer, authority and additional sections for `qname`/`qtype` after the question
/// already in `w`, using rotation `variant` of the answered rrset's order. Where the CNAME chain
/// enters another zone, `enter` says whether to go on; if not, the answer ends before it.
pub(crate) fn compose(
    snap: &Snapshot,
    qname: &[u8],
    qtype: u16,
    variant: usize,
    w: &mut Writer<'_>,
    mut enter: impl FnMut(Cut) -> bool,
) -> Composed {
    let mut c = Composed {
        rotations: 1,
        ..Composed::default()
    };
    let mut visited: [&[u8]; MAX_CHAIN] = [&[]; MAX_CHAIN];
    let mut current = qname;
    let mut previous_zone = None;
    for hop in 0..MAX_CHAIN {
        if visited[..hop].contains(&current) {
            break;
        }
        visited[hop] = current;
        let found = snap.nodes.get(current);
        let Some(zone) = found.map(|n| n.zone).or_else(|| snap.zone_of(current)) else {
            break;
        };
        let at = w.len();
        if previous_zone.is_some_and(|p| p != zone) && !enter(Cut { zone, at, an: c.an }) {
            break;
        }
        previous_zone = Some(zone);
        let Some(node) = found else {
            c.rcode = rcode::NXDOMAIN;
            negative(snap, zone, w, &mut c);
            break;
        };
        let wanted = if qtype == rtype::ANY {
            any_rrset(node)
        } else {
            node.rrset(qtype)
        };
        if let Some(set) = wanted {
            c.an += write_rrset(w, current, set, &node.order, variant);
            c.rotations = rotations(&node.order, set.rdatas.len());
            c.additional_at = w.len();
            c.ar = additional(snap, node, set, w);
            return c;
        }
        if qtype != rtype::CNAME {
            if let Some(set) = node.rrset(rtype::CNAME) {
                c.an += write_rrset(w, current, set, &AnswerOrder::Fixed, 0);
                if let Some(Rd::Name(target)) = set.rdatas.first() {
                    current = target;
                    continue;
                }
            }
        }
        negative(snap, node.zone, w, &mut c);
        break;
    }
    c.additional_at = w.len();
    c
}

/// RFC 8482: one rrset stands for all (the CNAME, else the addresses, else the first).
fn any_rrset(node: &Node) -> Option<&RrSet> {
    node.rrset(rtype::CNAME)
        .or_else(|| node.rrset(rtype::A))
        .or_else(|| node.rrsets.first())
}

/// The zone's SOA in the authority section, with the negative TTL.
fn negative(snap: &Snapshot, zone: u16, w: &mut Writer<'_>, c: &mut Composed) {
    if let Some(z) = snap.zones.get(usize::from(zone)) {
        w.record(&z.apex, rtype::SOA, z.negative_ttl, &z.soa);
        c.ns += 1;
    }
}

/// Number of distinct rotations of an rrset of `n` records under `order`.
pub(crate) fn rotations(order: &AnswerOrder, n: usize) -> usize {
    match order {
        AnswerOrder::Fixed => 1,
        AnswerOrder::RoundRobin => n.clamp(1, MAX_ROTATIONS),
        AnswerOrder::Sequence(seq) => seq.len().clamp(1, MAX_ROTATIONS),
        AnswerOrder::OnePerAnswer(_) => n.clamp(1, MAX_ONE_PER_ANSWER),
    }
}

/// Writes `set` in rotation `variant` of `order` (for one record per answer: record `variant`);
/// returns the record count.
fn write_rrset(
    w: &mut Writer<'_>,
    owner: &[u8],
    set: &RrSet,
    order: &AnswerOrder,
    variant: usize,
) -> u16 {
    let n = set.rdatas.len();
    let mut put = |i: usize| w.record(owner, set.rtype, set.ttl, &set.rdatas[i]);
    match order {
        AnswerOrder::RoundRobin if n > 1 => {
            let start = variant % rotations(order, n) * n / rotations(order, n);
            (0..n).for_each(|i| put((start + i) % n));
        }
        AnswerOrder::OnePerAnswer(_) if n > 0 => {
            put(variant % n);
            return 1;
        }
        AnswerOrder::Sequence(seqs) if !seqs.is_empty() => {
            let seq = &seqs[variant % seqs.len()];
            let listed = |i: usize, upto: usize| seq[..upto].contains(&i);
            for (pos, &i) in seq.iter().enumerate() {
                if i < n && !listed(i, pos) {
                    put(i);
                }
            }
            (0..n).filter(|&i| !listed(i, seq.len())).for_each(&mut put);
        }
        _ => (0..n).for_each(put),
    }
    n as u16
}

/// Addresses of SRV, MX and NS targets held in the same zone; returns the record count.
fn additional(snap: &Snapshot, node: &Node, set: &RrSet, w: &mut Writer<'_>) -> u16 {
    let mut count = 0;
    for (i, rd) in set.rdatas.iter().enumerate() {
        let target: &[u8] = match (set.rtype, rd) {
            (rtype::SRV, Rd::Srv(_, t)) | (rtype::MX, Rd::Mx(_, t)) | (rtype::NS, Rd::Name(t)) => t,
            _ => continue,
        };
        let seen = set.rdatas[..i].iter().any(|prev| match prev {
            Rd::Srv(_, t) | Rd::Mx(_, t) | Rd::Name(t) => &t[..] == target,
            _ => false,
        });
        let Some(tnode) = snap.nodes.get(target).filter(|t| t.zone == node.zone) else {
            continue;
        };
        if seen {
            continue;
        }
        for ty in [rtype::A, rtype::AAAA] {
            if let Some(addrs) = tnode.rrset(ty) {
                count += write_rrset(w, target, addrs, &AnswerOrder::Fixed, 0);
            }
        }
    }
    count
}
