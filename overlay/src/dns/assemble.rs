//! Assembling a snapshot from the networks' parts: every zone with its authority, what each
//! part holds at each owner name, and the members' views.

use std::collections::{BTreeMap, BTreeSet};

use super::audience::Audience;
use super::authority::Authority;
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
    let mut b = builder_of(parts.clone(), authority, None);
    if view == View::Members {
        let zones: BTreeMap<&str, &[String]> = parts
            .clone()
            .into_iter()
            .map(|p| (p.network.as_str(), &p.zones[..]))
            .collect();
        Audience::of(parts).add_views(&mut b, None, |n| zones.get(n).copied());
    }
    b.build()
}

/// A builder with the zones of `parts`, their authority and what the parts hold at every owner
/// name, or only at those in `only`; no views.
pub(super) fn builder_of<'a>(
    parts: impl IntoIterator<Item = &'a NetworkZones> + Clone,
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
