//! Building a snapshot: validate the records, make up SOA/NS, add empty non-terminals, prebuild
//! the answer bytes for every local (name, type).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hickory_proto::rr::RData;

use super::convert::convert;
use super::names::text_to_wire;
use super::patch::reads_others;
use super::prebuild::prebuild;
use super::table::Table;
use super::{
    zone_in, AnswerOrder, DefaultView, Node, Nodes, Readers, RrSet, Snapshot, Views, Zone,
    GENERATIONS,
};
use crate::dns::encode::Rd;
use crate::dns::hash::FastMap;
use crate::dns::wire::{label_starts, name_to_string, rtype};
use crate::dns::DnsError;

/// SOA values used when a zone has none: refresh, retry, expire.
const MADE_UP_SOA_TIMERS: [u32; 3] = [3600, 600, 86400];
/// TTL of made-up SOA and NS records.
const MADE_UP_TTL: u32 = 60;
/// EDNS option code of an extended DNS error (RFC 8914).
const EDE_OPTION: u16 = 15;

/// Collects zones, records, orders and views, then builds an immutable [`Snapshot`].
///
/// Names are absolute, with or without the final dot, matched without regard to case.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    pub(super) zones: Vec<String>,
    pub(super) records: Vec<(String, u32, RData)>,
    orders: Vec<(String, AnswerOrder)>,
    several: Option<AnswerOrder>,
    notes: Vec<(String, Box<[u8]>)>,
    pub(super) views: Vec<(IpAddr, Arc<[String]>)>,
    pub(super) default_view: DefaultView,
    /// The clients whose views [`Self::build_over`] revises (every other one keeps its view).
    pub(super) revised: Option<BTreeSet<IpAddr>>,
    serial: u32,
    negative_ttl: u32,
}

/// A snapshot being built: its zones and the nodes, still owned by the builder.
pub(super) struct Draft {
    pub(super) zones: Vec<Zone>,
    pub(super) zone_ids: FastMap<Box<[u8]>, u16>,
    pub(super) nodes: FastMap<Box<[u8]>, Node>,
}

impl Draft {
    /// The finished snapshot of these zones and nodes with `views`, without prebuilt answers.
    pub(super) fn finish(self, views: Option<Arc<Views>>) -> Snapshot {
        let nodes: Nodes = self
            .nodes
            .into_iter()
            .map(|(name, node)| (Arc::from(name), Arc::new(node)))
            .collect();
        let readers = (nodes.iter())
            .filter(|(_, node)| reads_others(node))
            .map(|(name, _)| Arc::clone(name))
            .collect();
        unbuilt(self.zones, self.zone_ids, nodes, Arc::new(readers), views)
    }
}

/// A new snapshot (its own generation) of these zones, nodes (with those reading others) and
/// views, without prebuilt answers yet.
pub(super) fn unbuilt(
    zones: Vec<Zone>,
    zone_ids: FastMap<Box<[u8]>, u16>,
    nodes: Nodes,
    readers: Arc<Readers>,
    views: Option<Arc<Views>>,
) -> Snapshot {
    Snapshot {
        zones,
        zone_ids,
        nodes,
        readers,
        prebuilt: Table::default(),
        views,
        generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        encoded: 0,
    }
}

impl Default for SnapshotBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotBuilder {
    /// An empty builder: serial 1, negative TTL 5 s for made-up SOAs, every zone visible to all.
    pub fn new() -> Self {
        SnapshotBuilder {
            zones: Vec::new(),
            records: Vec::new(),
            orders: Vec::new(),
            several: None,
            notes: Vec::new(),
            views: Vec::new(),
            default_view: DefaultView::AllZones,
            revised: None,
            serial: 1,
            negative_ttl: 5,
        }
    }

    /// Makes the server authoritative for `name` (SOA and NS are made up unless records give them).
    pub fn zone(&mut self, name: &str) -> &mut Self {
        self.zones.push(name.to_string());
        self
    }

    /// Adds a record; its owner must lie inside a zone.
    pub fn record(&mut self, name: &str, ttl: u32, rdata: RData) -> &mut Self {
        self.records.push((name.to_string(), ttl, rdata));
        self
    }

    /// Sets the order of the records at `name` (every rrset there); ignored if it has none.
    pub fn order(&mut self, name: &str, order: AnswerOrder) -> &mut Self {
        self.orders.push((name.to_string(), order));
        self
    }

    /// Sets the order of every name holding several records of one type and no order of its own
    /// (standalone mode: names served like services).
    pub fn order_names_with_several(&mut self, order: AnswerOrder) -> &mut Self {
        self.several = Some(order);
        self
    }

    /// Marks every answer for `name` with an extended DNS error (RFC 8914, info-code 0 "Other")
    /// carrying `text`, for requesters that sent EDNS; ignored if `name` has no records.
    pub fn note(&mut self, name: &str, text: &str) -> &mut Self {
        let text = &text.as_bytes()[..text.len().min(200)];
        let mut option = Vec::with_capacity(6 + text.len());
        option.extend_from_slice(&EDE_OPTION.to_be_bytes());
        option.extend_from_slice(&(2 + text.len() as u16).to_be_bytes());
        option.extend_from_slice(&0u16.to_be_bytes());
        option.extend_from_slice(text);
        self.notes
            .push((name.to_string(), option.into_boxed_slice()));
        self
    }

    /// Lets requests from `client` see `zones` (calls for one client add up). Once any view is
    /// set, clients without one see what [`Self::default_view`] says.
    pub fn view<S: AsRef<str>>(&mut self, client: IpAddr, zones: &[S]) -> &mut Self {
        let zones = zones.iter().map(|z| z.as_ref().to_string()).collect();
        self.view_shared(client, zones)
    }

    /// [`Self::view`] with a list of zones many clients share (resolved once per build).
    pub fn view_shared(&mut self, client: IpAddr, zones: Arc<[String]>) -> &mut Self {
        self.views.push((client.to_canonical(), zones));
        self
    }

    /// Makes [`Self::build_over`] keep the previous snapshot's views except those of `clients`,
    /// which see what this builder's views give them (none: they lose their view). Only a patch
    /// reads it: [`Self::build`] makes every view from this builder's.
    pub fn revise_views(&mut self, clients: impl IntoIterator<Item = IpAddr>) -> &mut Self {
        let revised = self.revised.get_or_insert_with(BTreeSet::new);
        revised.extend(clients.into_iter().map(|c| c.to_canonical()));
        self
    }

    /// What clients without a view see (all zones unless set).
    pub fn default_view(&mut self, default: DefaultView) -> &mut Self {
        self.default_view = default;
        self
    }

    /// Serial of made-up SOA records.
    pub fn serial(&mut self, serial: u32) -> &mut Self {
        self.serial = serial;
        self
    }

    /// Negative-caching TTL (SOA minimum) of made-up SOA records.
    pub fn negative_ttl(&mut self, ttl: u32) -> &mut Self {
        self.negative_ttl = ttl;
        self
    }

    /// Validates everything and builds the snapshot with its prebuilt answers.
    pub fn build(&self) -> Result<Snapshot, DnsError> {
        let mut draft = Draft {
            zones: Vec::new(),
            zone_ids: FastMap::default(),
            nodes: FastMap::default(),
        };
        for apex in self.zone_apexes()? {
            draft
                .zone_ids
                .insert(apex.clone(), draft.zones.len() as u16);
            draft.zones.push(Zone {
                name: name_to_string(&apex),
                apex,
                soa: Rd::Raw(Box::new([])),
                negative_ttl: 0,
            });
        }
        for (name, ttl, rdata) in &self.records {
            self.add_record(&mut draft, &wire_of(name)?, name, *ttl, rdata)?;
        }
        self.complete_zones(&mut draft)?;
        add_empty_non_terminals(&mut draft);
        self.shape(&mut draft.nodes)?;
        let views = self.build_views(&draft.zone_ids, draft.zones.len())?;
        let mut snap = draft.finish(views);
        let mut entries = Vec::new();
        for (name, node) in snap.nodes.iter() {
            prebuild(&snap, name, node, &mut entries);
        }
        snap.prebuilt = Table::build(entries);
        snap.encoded = snap.nodes.len();
        Ok(snap)
    }

    /// The apexes of the zones, in the order first declared, each once.
    pub(super) fn zone_apexes(&self) -> Result<Vec<Box<[u8]>>, DnsError> {
        let mut apexes: Vec<Box<[u8]>> = Vec::new();
        for zone in &self.zones {
            let apex = wire_of(zone)?;
            if !apexes.contains(&apex) {
                apexes.push(apex);
            }
        }
        Ok(apexes)
    }

    /// Applies the answer orders and notes to the nodes of `nodes` they name.
    pub(super) fn shape(&self, nodes: &mut FastMap<Box<[u8]>, Node>) -> Result<(), DnsError> {
        if let Some(order) = &self.several {
            for node in nodes.values_mut() {
                if node.rrsets.iter().any(|s| s.rdatas.len() > 1) {
                    node.order = order.clone();
                }
            }
        }
        for (name, order) in &self.orders {
            if let Some(node) = nodes.get_mut(&wire_of(name)?) {
                node.order = order.clone();
            }
        }
        for (name, note) in &self.notes {
            if let Some(node) = nodes.get_mut(&wire_of(name)?) {
                node.note = Some(note.clone());
            }
        }
        Ok(())
    }

    /// Adds a record at `owner` (the wire form of `name`) to the draft.
    pub(super) fn add_record(
        &self,
        draft: &mut Draft,
        owner: &[u8],
        name: &str,
        ttl: u32,
        rdata: &RData,
    ) -> Result<(), DnsError> {
        let Some(zone) = zone_in(&draft.zone_ids, owner) else {
            let zones: Vec<&str> = draft.zones.iter().map(|z| z.name.as_str()).collect();
            return Err(DnsError::OutsideZones {
                name: name_to_string(owner),
                zones: zones.join(", "),
            });
        };
        let (ty, rd) = convert(rdata).map_err(|reason| DnsError::Encode {
            name: name.to_string(),
            reason,
        })?;
        let conflict = |reason: &str| DnsError::Conflict {
            name: name_to_string(owner),
            reason: reason.into(),
        };
        if ty == rtype::SOA && &draft.zones[usize::from(zone)].apex[..] != owner {
            return Err(conflict("an SOA record may only stand at a zone apex"));
        }
        let node = draft
            .nodes
            .entry(owner.into())
            .or_insert_with(|| Node::empty(zone));
        if node
            .rrset(rtype::CNAME)
            .is_some_and(|s| ty == rtype::CNAME && s.rdatas.contains(&rd))
        {
            return Ok(());
        }
        let has_cname = node.rrset(rtype::CNAME).is_some();
        let has_other = node.rrsets.iter().any(|s| s.rtype != rtype::CNAME);
        if has_cname || (ty == rtype::CNAME && has_other) {
            return Err(conflict(
                "a CNAME cannot stand beside other records or another CNAME",
            ));
        }
        match node.rrsets.iter_mut().find(|s| s.rtype == ty) {
            Some(_) if ty == rtype::SOA => {
                return Err(conflict("a zone has exactly one SOA record"))
            }
            Some(set) => {
                set.ttl = set.ttl.min(ttl);
                if !set.rdatas.contains(&rd) {
                    set.rdatas.push(rd);
                }
            }
            None => node.rrsets.push(RrSet {
                rtype: ty,
                ttl,
                rdatas: vec![rd],
            }),
        }
        Ok(())
    }

    /// Gives every zone an apex node with SOA and NS, making them up where absent.
    fn complete_zones(&self, draft: &mut Draft) -> Result<(), DnsError> {
        for (i, zone) in draft.zones.iter_mut().enumerate() {
            let node = draft
                .nodes
                .entry(zone.apex.clone())
                .or_insert_with(|| Node::empty(i as u16));
            let ns_name = [&[2u8, b'n', b's'][..], &zone.apex]
                .concat()
                .into_boxed_slice();
            if node.rrset(rtype::SOA).is_none() {
                let rname = [&b"\x0ahostmaster"[..], &zone.apex]
                    .concat()
                    .into_boxed_slice();
                let mut tail = [0u8; 20];
                let values = [
                    self.serial,
                    MADE_UP_SOA_TIMERS[0],
                    MADE_UP_SOA_TIMERS[1],
                    MADE_UP_SOA_TIMERS[2],
                    self.negative_ttl,
                ];
                for (chunk, v) in tail.chunks_exact_mut(4).zip(values) {
                    chunk.copy_from_slice(&v.to_be_bytes());
                }
                let soa = Rd::Soa(ns_name.clone(), rname, tail);
                node.rrsets.insert(
                    0,
                    RrSet {
                        rtype: rtype::SOA,
                        ttl: MADE_UP_TTL,
                        rdatas: vec![soa],
                    },
                );
            }
            if node.rrset(rtype::NS).is_none() {
                node.rrsets.push(RrSet {
                    rtype: rtype::NS,
                    ttl: MADE_UP_TTL,
                    rdatas: vec![Rd::Name(ns_name)],
                });
            }
            let Some(soa_set) = node.rrset(rtype::SOA) else {
                return Err(DnsError::Conflict {
                    name: zone.name.clone(),
                    reason: "zone without SOA".into(),
                });
            };
            if let Some(Rd::Soa(_, _, tail)) = soa_set.rdatas.first() {
                let minimum = u32::from_be_bytes([tail[16], tail[17], tail[18], tail[19]]);
                zone.negative_ttl = soa_set.ttl.min(minimum);
                zone.soa = soa_set.rdatas[0].clone();
            }
        }
        Ok(())
    }
}

/// The lowercased wire form of `name`, or why it is not a name.
pub(super) fn wire_of(name: &str) -> Result<Box<[u8]>, DnsError> {
    text_to_wire(name).map_err(|reason| DnsError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Every name between an owner and its zone apex exists (RFC 8020): NODATA, not NXDOMAIN.
fn add_empty_non_terminals(draft: &mut Draft) {
    let mut missing = BTreeMap::new();
    for (owner, node) in &draft.nodes {
        let apex_len = draft.zones[usize::from(node.zone)].apex.len();
        for ancestor in ancestors(owner, apex_len) {
            if !draft.nodes.contains_key(ancestor) {
                missing.insert(Box::<[u8]>::from(ancestor), node.zone);
            }
        }
    }
    for (name, zone) in missing {
        draft.nodes.insert(name, Node::empty(zone));
    }
}

/// The names between `owner` and the apex of its zone (an apex `apex_len` bytes long), nearest
/// first, neither included.
pub(super) fn ancestors(owner: &[u8], apex_len: usize) -> impl Iterator<Item = &[u8]> {
    label_starts(owner)
        .skip(1)
        .map(|start| &owner[start..])
        .take_while(move |a| a.len() > apex_len)
}
