//! Building a snapshot: validate the records, make up SOA/NS, add empty non-terminals, prebuild
//! the answer bytes for every local (name, type).

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_proto::rr::RData;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::compose::{compose, Cut};
use super::names::{name_to_wire, text_to_wire};
use super::table::Table;
use super::{AnswerOrder, DefaultView, Node, Packed, Prebuilt, RrSet, Snapshot, Views, Zone};
use crate::dns::encode::{Rd, Writer};
use crate::dns::hash::FastMap;
use crate::dns::wire::{label_starts, name_to_string, rtype, CLASS_IN, HEADER_LEN};
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
    zones: Vec<String>,
    records: Vec<(String, u32, RData)>,
    orders: Vec<(String, AnswerOrder)>,
    several: Option<AnswerOrder>,
    notes: Vec<(String, Box<[u8]>)>,
    views: Vec<(IpAddr, Vec<String>)>,
    default_view: DefaultView,
    serial: u32,
    negative_ttl: u32,
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
        self.views.push((client.to_canonical(), zones));
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
        let mut snap = Snapshot::default();
        for zone in &self.zones {
            let apex = wire_of(zone)?;
            if snap.zone_ids.contains_key(&apex) {
                continue;
            }
            snap.zone_ids.insert(apex.clone(), snap.zones.len() as u16);
            snap.zones.push(Zone {
                name: name_to_string(&apex),
                apex,
                soa: Rd::Raw(Box::new([])),
                negative_ttl: 0,
            });
        }
        for (name, ttl, rdata) in &self.records {
            self.add_record(&mut snap, name, *ttl, rdata)?;
        }
        self.complete_zones(&mut snap)?;
        add_empty_non_terminals(&mut snap);
        if let Some(order) = &self.several {
            for node in snap.nodes.values_mut() {
                if node.rrsets.iter().any(|s| s.rdatas.len() > 1) {
                    node.order = order.clone();
                }
            }
        }
        for (name, order) in &self.orders {
            if let Some(node) = snap.nodes.get_mut(&wire_of(name)?) {
                node.order = order.clone();
            }
        }
        for (name, note) in &self.notes {
            if let Some(node) = snap.nodes.get_mut(&wire_of(name)?) {
                node.note = Some(note.clone());
            }
        }
        snap.views = self.build_views(&snap)?;
        prebuild(&mut snap);
        Ok(snap)
    }

    fn add_record(
        &self,
        snap: &mut Snapshot,
        name: &str,
        ttl: u32,
        rdata: &RData,
    ) -> Result<(), DnsError> {
        let owner = wire_of(name)?;
        let Some(zone) = snap.zone_of(&owner) else {
            let zones: Vec<&str> = snap.zones().collect();
            return Err(DnsError::OutsideZones {
                name: name_to_string(&owner),
                zones: zones.join(", "),
            });
        };
        let (ty, rd) = convert(rdata).map_err(|reason| DnsError::Encode {
            name: name.to_string(),
            reason,
        })?;
        let conflict = |reason: &str| DnsError::Conflict {
            name: name_to_string(&owner),
            reason: reason.into(),
        };
        if ty == rtype::SOA && snap.zones[usize::from(zone)].apex != owner {
            return Err(conflict("an SOA record may only stand at a zone apex"));
        }
        let node = snap.nodes.entry(owner.clone()).or_insert_with(|| Node {
            zone,
            rrsets: Vec::new(),
            order: AnswerOrder::Fixed,
            note: None,
        });
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
    fn complete_zones(&self, snap: &mut Snapshot) -> Result<(), DnsError> {
        for (i, zone) in snap.zones.iter_mut().enumerate() {
            let node = snap.nodes.entry(zone.apex.clone()).or_insert_with(|| Node {
                zone: i as u16,
                rrsets: Vec::new(),
                order: AnswerOrder::Fixed,
                note: None,
            });
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

    fn build_views(&self, snap: &Snapshot) -> Result<Option<Views>, DnsError> {
        if self.views.is_empty() && self.default_view == DefaultView::AllZones {
            return Ok(None);
        }
        let words = snap.zones.len().div_ceil(64).max(1);
        let mut clients: FastMap<IpAddr, Box<[u64]>> = FastMap::default();
        for (client, zones) in &self.views {
            let bits = clients
                .entry(*client)
                .or_insert_with(|| vec![0u64; words].into_boxed_slice());
            for zone in zones {
                let id = wire_of(zone)
                    .ok()
                    .and_then(|w| snap.zone_ids.get(&w).copied())
                    .ok_or_else(|| DnsError::UnknownZone(zone.clone()))?;
                bits[usize::from(id / 64)] |= 1u64 << (id % 64);
            }
        }
        Ok(Some(Views {
            clients,
            default_all: self.default_view == DefaultView::AllZones,
        }))
    }
}

fn wire_of(name: &str) -> Result<Box<[u8]>, DnsError> {
    text_to_wire(name).map_err(|reason| DnsError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Every name between an owner and its zone apex exists (RFC 8020): NODATA, not NXDOMAIN.
fn add_empty_non_terminals(snap: &mut Snapshot) {
    let mut missing = BTreeMap::new();
    for (owner, node) in &snap.nodes {
        let apex_len = snap.zones[usize::from(node.zone)].apex.len();
        for start in label_starts(owner).skip(1) {
            let ancestor = &owner[start..];
            if ancestor.len() <= apex_len {
                break;
            }
            if !snap.nodes.contains_key(ancestor) {
                missing.insert(Box::<[u8]>::from(ancestor), node.zone);
            }
        }
    }
    for (name, zone) in missing {
        snap.nodes.insert(
            name,
            Node {
                zone,
                rrsets: Vec::new(),
                order: AnswerOrder::Fixed,
                note: None,
            },
        );
    }
}

/// Converts hickory record data to the encoder's form.
fn convert(rdata: &RData) -> Result<(u16, Rd), String> {
    let ty = u16::from(rdata.record_type());
    let rd = match rdata {
        RData::A(a) => Rd::Raw(Box::new(a.0.octets())),
        RData::AAAA(a) => Rd::Raw(Box::new(a.0.octets())),
        RData::CNAME(n) => Rd::Name(name_to_wire(&n.0)),
        RData::PTR(n) => Rd::Name(name_to_wire(&n.0)),
        RData::NS(n) => Rd::Name(name_to_wire(&n.0)),
        RData::MX(mx) => Rd::Mx(mx.preference, name_to_wire(&mx.exchange)),
        RData::SRV(srv) => {
            let mut head = [0u8; 6];
            head[..2].copy_from_slice(&srv.priority.to_be_bytes());
            head[2..4].copy_from_slice(&srv.weight.to_be_bytes());
            head[4..].copy_from_slice(&srv.port.to_be_bytes());
            Rd::Srv(head, name_to_wire(&srv.target))
        }
        RData::SOA(soa) => {
            let mut tail = [0u8; 20];
            let values = [
                soa.serial,
                soa.refresh as u32,
                soa.retry as u32,
                soa.expire as u32,
                soa.minimum,
            ];
            for (chunk, v) in tail.chunks_exact_mut(4).zip(values) {
                chunk.copy_from_slice(&v.to_be_bytes());
            }
            Rd::Soa(name_to_wire(&soa.mname), name_to_wire(&soa.rname), tail)
        }
        RData::OPT(_) | RData::Update0(_) => return Err("not a record that can be served".into()),
        other => {
            let mut bytes = Vec::new();
            let mut enc = BinEncoder::new(&mut bytes);
            enc.set_canonical_form(true);
            other.emit(&mut enc).map_err(|e| e.to_string())?;
            Rd::Raw(bytes.into_boxed_slice())
        }
    };
    Ok((ty, rd))
}

/// Prebuilds the answer sections of every (name, type) worth serving from bytes: the types at
/// each name plus A and AAAA everywhere (NODATA answers included, glibc asks for both). With
/// views, each answer also keeps where its CNAME chain enters other zones, to be cut per requester.
fn prebuild(snap: &mut Snapshot) {
    let mut table = Vec::new();
    let mut buf = Vec::with_capacity(512);
    let views = snap.views.is_some();
    for (name, node) in &snap.nodes {
        let mut types: Vec<u16> = node.rrsets.iter().map(|s| s.rtype).collect();
        types.extend([rtype::A, rtype::AAAA]);
        types.sort_unstable();
        types.dedup();
        for qtype in types {
            let mut variants = Vec::new();
            let mut cuts = Vec::new();
            let mut count = 1;
            while variants.len() < count {
                cuts.clear();
                buf.clear();
                buf.resize(HEADER_LEN, 0);
                buf.extend_from_slice(name);
                buf.extend_from_slice(&qtype.to_be_bytes());
                buf.extend_from_slice(&CLASS_IN.to_be_bytes());
                let sections = buf.len();
                let mut w = Writer::new(&mut buf);
                w.mark_name_at(HEADER_LEN, name.len());
                let mut meta = compose(snap, name, qtype, variants.len(), &mut w, |cut| {
                    if views {
                        cuts.push(Cut {
                            at: cut.at - sections,
                            ..cut
                        });
                    }
                    true
                });
                count = meta.rotations;
                meta.additional_at -= sections;
                variants.push(Packed {
                    bytes: buf[sections..].into(),
                    meta,
                });
            }
            let key = [&name[..], &qtype.to_be_bytes()]
                .concat()
                .into_boxed_slice();
            let schedule = match &node.order {
                AnswerOrder::OnePerAnswer(picks) if variants.len() > 1 => picks.clone(),
                _ => Vec::new(),
            };
            let pre = Prebuilt::new(node.zone, variants, cuts)
                .with_schedule(schedule)
                .with_note(node.note.clone());
            table.push((key, pre));
        }
    }
    snap.prebuilt = Table::build(table);
}
