//! Assembling a snapshot from the networks' parts: every zone with its authority, what each
//! part holds at each owner name, and the members' views.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::authority::Authority;
use super::hash::FastMap;
use super::projection::{NetworkZones, Owner, View};
use super::{DnsError, Snapshot, SnapshotBuilder};

/// Assembles the snapshot of `parts` (one per network) under `view`, with made-up SOA and NS.
pub fn assemble<'a>(
    parts: impl IntoIterator<Item = &'a NetworkZones> + Clone,
    view: View,
) -> Result<Snapshot, DnsError> {
    assemble_with(parts, view, &Authority::default())
}

/// Assembles the snapshot of `parts` under `view`, every zone's SOA and NS naming the name
/// servers of `authority` (made up when it has none).
pub fn assemble_with<'a>(
    parts: impl IntoIterator<Item = &'a NetworkZones> + Clone,
    view: View,
    authority: &Authority,
) -> Result<Snapshot, DnsError> {
    builder_of(parts, view, authority, None).build()
}

/// A builder with the zones of `parts`, their authority, the members' views under `view` and
/// what the parts hold at every owner name, or only at those in `only`.
pub(super) fn builder_of<'a>(
    parts: impl IntoIterator<Item = &'a NetworkZones> + Clone,
    view: View,
    authority: &Authority,
    only: Option<&BTreeSet<String>>,
) -> SnapshotBuilder {
    let mut b = SnapshotBuilder::new();
    let mut declared = BTreeSet::new();
    for p in parts.clone() {
        for z in &p.zones {
            b.zone(z);
            // A reverse zone two networks share gets its SOA and NS once.
            if declared.insert(z.as_str()) {
                authority.add(&mut b, z);
            }
        }
    }
    match only {
        None => {
            for p in parts.clone() {
                for (name, owner) in &p.owners {
                    put(&mut b, name, owner);
                }
            }
        }
        Some(names) => {
            for name in names {
                for p in parts.clone() {
                    if let Some(owner) = p.owners.get(name) {
                        put(&mut b, name, owner);
                    }
                }
            }
        }
    }
    if view == View::Members {
        add_views(&mut b, parts);
    }
    b
}

/// Adds what one part holds at `name`.
fn put(b: &mut SnapshotBuilder, name: &str, owner: &Owner) {
    for (ttl, rdata) in &owner.records {
        b.record(name, *ttl, rdata.clone());
    }
    if let Some(order) = &owner.order {
        b.order(name, order.clone());
    }
    if let Some(text) = &owner.note {
        b.note(name, text);
    }
}

/// A workload sees the zones of every network it is on, asking from any of its addresses: a
/// member of one network shares that network's list of zones, one of several gets the union.
fn add_views<'a>(
    b: &mut SnapshotBuilder,
    parts: impl IntoIterator<Item = &'a NetworkZones> + Clone,
) {
    let mut networks_of: FastMap<(&str, &str), u32> = FastMap::default();
    for p in parts.clone() {
        for m in &p.members {
            *networks_of.entry((&m.node, &m.name)).or_default() += 1;
        }
    }
    let mut several: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for p in parts.clone() {
        for m in p
            .members
            .iter()
            .filter(|m| networks_of[&(&*m.node, &*m.name)] > 1)
        {
            several
                .entry((&m.node, &m.name))
                .or_default()
                .extend(p.zones.iter().map(String::as_str));
        }
    }
    let several: BTreeMap<(&str, &str), Arc<[String]>> = several
        .into_iter()
        .map(|(m, zones)| (m, zones.into_iter().map(str::to_string).collect()))
        .collect();
    for p in parts {
        let own: Arc<[String]> = p.zones.iter().cloned().collect();
        for m in &p.members {
            let zones = several.get(&(&*m.node, &*m.name)).unwrap_or(&own);
            for ip in &m.addrs {
                b.view_shared(*ip, zones.clone());
            }
        }
    }
}
