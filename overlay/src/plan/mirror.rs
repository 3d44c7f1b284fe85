//! The host side as the kernel holds it, kept in memory between observations: the host part of
//! the last full observation, with the FDB and neighbour ops applied since taken in. A cluster
//! change for remote endpoints (their FDB and neighbour entries) then plans against memory
//! instead of dumping every link, FDB and neighbour entry of the host, so its cost does not grow
//! with the networks' size.
//!
//! The mirror only holds what it can be sure of: any other op (a link created, an address, a
//! port), a failed op, or the kernel reporting damage ends it until the next full observation
//! (the caller's repair and periodic resync observe whole). Changes made behind the agent's back
//! that the kernel does not report as damage (an entry added by hand, say) are the resync's job,
//! as they already are for a change that leaves the desired state as it was.

use std::net::IpAddr;

use super::observed::{ObservedFdb, ObservedHost, ObservedNeigh, ObservedPortFdb};
use super::{MacAddr, Op};

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMirror {
    host: Option<ObservedHost>,
}

impl HostMirror {
    /// Keeps the host part of `observed`, a fresh observation of the whole host side (its
    /// container namespaces are dropped: a pass planned against the mirror looks into none).
    pub fn refresh(&mut self, mut observed: ObservedHost) {
        observed.containers.clear();
        observed.fdb.sort_unstable();
        observed.fdb.dedup();
        observed.port_fdb.sort_unstable();
        observed.port_fdb.dedup();
        observed.neighbours.sort_unstable();
        observed.neighbours.dedup();
        self.host = Some(observed);
    }

    /// Forgets the host side: the next pass must observe the kernel.
    pub fn forget(&mut self) {
        self.host = None;
    }

    /// The host side as the kernel holds it, when known.
    pub fn host(&self) -> Option<&ObservedHost> {
        self.host.as_ref()
    }

    /// Takes in `ops`, every one of them applied without error. An op other than an FDB or
    /// neighbour entry's forgets the host side.
    pub fn record(&mut self, ops: &[Op]) {
        if let Some(host) = &mut self.host {
            if !ops.iter().all(|op| take_in(host, op)) {
                self.host = None;
            }
        }
    }
}

/// Applies an entry op to `host` as the kernel does (the netlink backend's semantics); false
/// for any other op.
fn take_in(host: &mut ObservedHost, op: &Op) -> bool {
    match op {
        Op::AddFdb { vxlan, mac, vtep } => insert(&mut host.fdb, fdb(vxlan, *mac, *vtep)),
        Op::DelFdb { vxlan, mac, vtep } => remove(&mut host.fdb, &fdb(vxlan, *mac, *vtep)),
        Op::AddPortFdb { port, mac } => insert(&mut host.port_fdb, port_fdb(port, *mac)),
        Op::DelPortFdb { port, mac } => remove(&mut host.port_fdb, &port_fdb(port, *mac)),
        Op::SetNeigh { bridge, ip, mac } => {
            drop_neigh(&mut host.neighbours, bridge, *ip);
            insert(
                &mut host.neighbours,
                ObservedNeigh {
                    bridge: bridge.clone(),
                    ip: *ip,
                    mac: *mac,
                },
            );
        }
        Op::DelNeigh { bridge, ip } => drop_neigh(&mut host.neighbours, bridge, *ip),
        _ => return false,
    }
    true
}

fn fdb(vxlan: &str, mac: MacAddr, vtep: IpAddr) -> ObservedFdb {
    ObservedFdb {
        vxlan: vxlan.to_string(),
        mac,
        vtep,
    }
}

fn port_fdb(port: &str, mac: MacAddr) -> ObservedPortFdb {
    ObservedPortFdb {
        port: port.to_string(),
        mac,
    }
}

fn insert<T: Ord>(sorted: &mut Vec<T>, item: T) {
    if let Err(at) = sorted.binary_search(&item) {
        sorted.insert(at, item);
    }
}

fn remove<T: Ord>(sorted: &mut Vec<T>, item: &T) {
    if let Ok(at) = sorted.binary_search(item) {
        sorted.remove(at);
    }
}

/// Removes the neighbour entry of `ip` on `bridge` (the kernel keeps one per address and
/// device); the entries sort by bridge, then address, so it is a range.
fn drop_neigh(sorted: &mut Vec<ObservedNeigh>, bridge: &str, ip: IpAddr) {
    let from = sorted.partition_point(|n| (n.bridge.as_str(), n.ip) < (bridge, ip));
    let to = from + sorted[from..].partition_point(|n| n.bridge == bridge && n.ip == ip);
    sorted.drain(from..to);
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
