//! Patching a snapshot: the names that changed get new nodes and newly composed answers; every
//! other name's node is shared with the previous snapshot, and so are its prebuilt answers but
//! for those in the answer table's shards a changed name falls in (copied as bytes). An update
//! then costs what changed (and the shards of the node map and views it touches), not an encoding
//! of every name.

use std::sync::Arc;

use super::builder::{ancestors, unbuilt, wire_of, Draft};
use super::prebuild::prebuild;
use super::{Node, Nodes, Readers, Snapshot, Zone};
use crate::dns::encode::Rd;
use crate::dns::hash::{FastMap, FastSet};
use crate::dns::wire::rtype;
use crate::dns::{DnsError, SnapshotBuilder};

impl SnapshotBuilder {
    /// The snapshot `previous` becomes when the names in `owners` hold exactly the records,
    /// orders and notes this builder gives them (none: the name goes, unless names below it keep
    /// it as an empty non-terminal) and the views are this builder's (or, after
    /// [`Self::revise_views`], the previous ones revised at the clients it names). Every other
    /// name keeps its node and answers from `previous`; this builder's records at other names
    /// are not read.
    ///
    /// `None` when a patch cannot express the change, and a whole build is needed: this
    /// builder's zones are not `previous`'s, an owner is a zone apex (its SOA and NS), or views
    /// appear or go (revised views: `previous` has none, or none is left).
    pub fn build_over<'a>(
        &self,
        previous: &Snapshot,
        owners: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Snapshot>, DnsError> {
        let apexes = self.zone_apexes()?;
        if !apexes.iter().eq(previous.zones.iter().map(|z| &z.apex)) {
            return Ok(None);
        }
        let mut wanted: FastSet<Box<[u8]>> = FastSet::default();
        for owner in owners {
            let wire = wire_of(owner)?;
            if previous.zone_ids.contains_key(&wire) {
                return Ok(None);
            }
            wanted.insert(wire);
        }
        let mut draft = Draft {
            zones: previous.zones.clone(),
            zone_ids: previous.zone_ids.clone(),
            nodes: FastMap::default(),
        };
        for (name, ttl, rdata) in &self.records {
            let owner = wire_of(name)?;
            if wanted.contains(&owner) {
                self.add_record(&mut draft, &owner, name, *ttl, rdata)?;
            }
        }
        self.shape(&mut draft.nodes)?;
        let views = match (&self.revised, &previous.views) {
            (Some(_), Some(before)) => {
                match self.revised_views(before, &draft.zone_ids, draft.zones.len())? {
                    Some(views) => Some(views),
                    None => return Ok(None),
                }
            }
            (Some(_), None) => return Ok(None),
            (None, _) => self.build_views(&draft.zone_ids, draft.zones.len())?,
        };
        if views.is_some() != previous.views.is_some() {
            return Ok(None);
        }
        let Draft {
            zones,
            zone_ids,
            nodes: drafted,
        } = draft;
        let mut nodes = previous.nodes.clone();
        let changed = replace(&zones, drafted, &mut nodes, wanted);
        let readers = readers_after(&previous.readers, &nodes, &changed);
        let dirty = with_dependents(&nodes, &readers, changed);
        let mut snap = unbuilt(zones, zone_ids, nodes, readers, views);
        let mut entries = Vec::new();
        for name in &dirty {
            if let Some(node) = snap.nodes.get(&name[..]) {
                prebuild(&snap, name, node, &mut entries);
            }
        }
        snap.prebuilt = previous.prebuilt.patched(&dirty, entries);
        snap.encoded = dirty.len();
        Ok(Some(snap))
    }
}

/// Puts the `drafted` nodes of the names in `wanted` into `nodes` (removing those not drafted),
/// adds and removes the empty non-terminals that changes, and returns every name whose node
/// changed.
fn replace(
    zones: &[Zone],
    mut drafted: FastMap<Box<[u8]>, Node>,
    nodes: &mut Nodes,
    wanted: FastSet<Box<[u8]>>,
) -> FastSet<Box<[u8]>> {
    let apex_len = |zone: u16| zones[usize::from(zone)].apex.len();
    let mut changed = FastSet::default();
    // Names that may have become empty non-terminals, or stopped being one, with their zone.
    let mut emptied: FastMap<Box<[u8]>, u16> = FastMap::default();
    for owner in wanted {
        let old = nodes.get(&owner[..]);
        match drafted.remove(&owner) {
            Some(new) if old.is_some_and(|o| **o == new) => continue,
            Some(new) => {
                let zone = new.zone;
                nodes.insert(Arc::from(&owner[..]), Arc::new(new));
                for above in ancestors(&owner, apex_len(zone)) {
                    if !nodes.contains_key(above) {
                        nodes.insert(Arc::from(above), Arc::new(Node::empty(zone)));
                        changed.insert(Box::from(above));
                    }
                }
            }
            None => {
                let Some(old) = nodes.remove(&owner[..]) else {
                    continue;
                };
                for above in ancestors(&owner, apex_len(old.zone)) {
                    emptied.insert(Box::from(above), old.zone);
                }
                emptied.insert(owner.clone(), old.zone);
            }
        }
        changed.insert(owner);
    }
    if emptied.is_empty() {
        return changed;
    }
    // A name stays (or becomes) an empty non-terminal while a name with records lies below it.
    let mut below: FastSet<&[u8]> = FastSet::default();
    for (name, node) in nodes.iter().filter(|(_, n)| !n.rrsets.is_empty()) {
        for above in ancestors(name, apex_len(node.zone)) {
            if let Some((key, _)) = emptied.get_key_value(above) {
                below.insert(key);
            }
        }
    }
    let below: FastSet<Box<[u8]>> = below.into_iter().map(Box::from).collect();
    for (name, zone) in emptied {
        let holds = nodes.get(&name[..]).map(|n| n.rrsets.is_empty());
        match (holds, below.contains(&name)) {
            (None, true) => {
                nodes.insert(Arc::from(&name[..]), Arc::new(Node::empty(zone)));
                changed.insert(name);
            }
            (Some(true), false) => {
                nodes.remove(&name[..]);
                changed.insert(name);
            }
            _ => {}
        }
    }
    changed
}

/// Do records of type `ty` make answers read another name (CNAME, SRV, MX, NS targets)?
fn reads_by_type(ty: u16) -> bool {
    matches!(ty, rtype::CNAME | rtype::SRV | rtype::MX | rtype::NS)
}

/// Does `node` hold records whose answers read another name's?
pub(super) fn reads_others(node: &Node) -> bool {
    node.rrsets.iter().any(|s| reads_by_type(s.rtype))
}

/// `changed` and every name whose answers read one of them: a CNAME pointing there (and so on
/// up the chain), an SRV, MX or NS whose target's addresses are added. Only the `readers`
/// (the names that [`reads_others`]) are looked at.
fn with_dependents(
    nodes: &Nodes,
    readers: &Readers,
    mut dirty: FastSet<Box<[u8]>>,
) -> FastSet<Box<[u8]>> {
    let readers: Vec<(&[u8], Vec<&[u8]>)> = readers
        .iter()
        .filter_map(|name| {
            let node = nodes.get(&name[..])?;
            let targets: Vec<&[u8]> = node
                .rrsets
                .iter()
                .filter(|s| reads_by_type(s.rtype))
                .flat_map(|s| s.rdatas.iter())
                .filter_map(|rd| match rd {
                    Rd::Name(t) | Rd::Srv(_, t) | Rd::Mx(_, t) => Some(&t[..]),
                    _ => None,
                })
                .collect();
            Some((&name[..], targets))
        })
        .collect();
    loop {
        let grown: Vec<&[u8]> = readers
            .iter()
            .filter(|(name, targets)| {
                !dirty.contains(*name) && targets.iter().any(|t| dirty.contains(*t))
            })
            .map(|(name, _)| *name)
            .collect();
        if grown.is_empty() {
            return dirty;
        }
        dirty.extend(grown.into_iter().map(Box::from));
    }
}

/// `readers` with the names in `changed` added or removed as their node in `nodes` now reads
/// other names or not.
fn readers_after(
    readers: &Arc<Readers>,
    nodes: &Nodes,
    changed: &FastSet<Box<[u8]>>,
) -> Arc<Readers> {
    let reads = |name: &[u8]| nodes.get(name).is_some_and(|n| reads_others(n));
    if changed
        .iter()
        .all(|name| readers.contains(&name[..]) == reads(name))
    {
        return Arc::clone(readers);
    }
    let mut next = Readers::clone(readers);
    for name in changed {
        if reads(name) {
            next.insert(Arc::from(&name[..]));
        } else {
            next.remove(&name[..]);
        }
    }
    Arc::new(next)
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
