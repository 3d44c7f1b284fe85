//! The immutable record set one server answers from: zones, names, prebuilt answers, views.
//!
//! A [`Snapshot`] is built by [`SnapshotBuilder`], whole or as a patch of the previous one
//! (only the names that changed are encoded again), and published through an
//! `Arc<ArcSwap<Snapshot>>`; readers never lock and a swap under load loses no query.

mod builder;
mod compose;
mod convert;
pub(crate) mod names;
mod patch;
mod prebuild;
mod shard;
mod sharded;
mod table;
mod views;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::encode::Rd;
use super::hash::FastMap;
use super::wire::label_starts;

pub use builder::SnapshotBuilder;
pub(crate) use compose::{compose, Composed, Cut};
pub use names::{reverse_name, reverse_zone_v4, reverse_zone_v6};
pub(crate) use table::Found;
use table::Table;
use views::Views;

/// The order in which the records of one rrset (e.g. the A records of a service) are answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AnswerOrder {
    /// Always in the order the records were added.
    #[default]
    Fixed,
    /// Rotate by one record per answer (round robin over the rrset).
    RoundRobin,
    /// Cycle through these orders, each a list of record indexes (in insertion order); indexes
    /// past the rrset's end are skipped and records not listed follow in insertion order.
    Sequence(Vec<Vec<usize>>),
    /// One record per answer: the k-th query gets record `picks[k % picks.len()]` (an index in
    /// insertion order), or every record in turn when `picks` is empty. For names whose
    /// clients sort addresses themselves (glibc and musl apply RFC 6724): each lookup then
    /// follows the policy that computed `picks` (weighted, least connections).
    OnePerAnswer(Vec<u16>),
}

/// What a requester without a `.view()` entry may see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefaultView {
    /// Every zone (the default).
    #[default]
    AllZones,
    /// No zone: every local name is NXDOMAIN for unknown requesters.
    NoZones,
}

/// One authoritative zone.
#[derive(Clone)]
pub(crate) struct Zone {
    /// Dotted name, for metrics and logs.
    pub(crate) name: String,
    /// Apex in lowercased wire form.
    pub(crate) apex: Box<[u8]>,
    /// The apex SOA data.
    pub(crate) soa: Rd,
    /// TTL of the SOA in negative answers: min(SOA TTL, SOA minimum) (RFC 2308).
    pub(crate) negative_ttl: u32,
}

/// The records at one owner name (empty for an empty non-terminal).
#[derive(PartialEq)]
pub(crate) struct Node {
    /// Zone index.
    pub(crate) zone: u16,
    /// The rrsets, in the order their first record was added.
    pub(crate) rrsets: Vec<RrSet>,
    /// Order of the records within each rrset.
    pub(crate) order: AnswerOrder,
    /// An EDNS option added to every answer for this name (an extended DNS error saying why
    /// the answer is unusual), as option code, length and data.
    pub(crate) note: Option<Box<[u8]>>,
}

/// Records of one type at one name.
#[derive(PartialEq)]
pub(crate) struct RrSet {
    /// Record type.
    pub(crate) rtype: u16,
    /// TTL (the smallest given for the set).
    pub(crate) ttl: u32,
    /// Record data, in insertion order.
    pub(crate) rdatas: Vec<Rd>,
}

impl Node {
    /// A name of `zone` without records yet (or an empty non-terminal).
    pub(crate) fn empty(zone: u16) -> Node {
        Node {
            zone,
            rrsets: Vec::new(),
            order: AnswerOrder::Fixed,
            note: None,
        }
    }

    /// The rrset of type `rtype`, if any.
    pub(crate) fn rrset(&self, rtype: u16) -> Option<&RrSet> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }
}

/// Answer sections prebuilt for one (name, type), in each rotation of the answer order.
pub(crate) struct Prebuilt {
    /// Zone index of the name.
    pub(crate) zone: u16,
    /// One packed answer per rotation.
    pub(crate) variants: Box<[Packed]>,
    /// Where the CNAME chain enters other zones (offsets into every variant's bytes, which share
    /// the chain); empty when the snapshot has no views or the chain stays in one zone.
    cuts: Box<[Cut]>,
    /// Which variant the k-th query gets (`schedule[k % len]`); empty = each in turn.
    schedule: Box<[u16]>,
    /// The EDNS option every answer carries (see [`Node::note`]).
    pub(crate) note: Option<Box<[u8]>>,
    /// Next rotation to serve.
    next: AtomicUsize,
}

impl Clone for Prebuilt {
    /// The same answers, going on from the same rotation.
    fn clone(&self) -> Prebuilt {
        Prebuilt {
            zone: self.zone,
            variants: self.variants.clone(),
            cuts: self.cuts.clone(),
            schedule: self.schedule.clone(),
            note: self.note.clone(),
            next: AtomicUsize::new(self.next.load(Ordering::Relaxed)),
        }
    }
}

impl Prebuilt {
    /// The first cut into a zone `sees` rejects: where the answer ends for that requester.
    #[inline]
    pub(crate) fn cut_for(&self, sees: impl Fn(u16) -> bool) -> Option<&Cut> {
        self.cuts.iter().find(|cut| !sees(cut.zone))
    }

    /// The packed answer to serve now (advances the rotation when there are several).
    #[inline]
    pub(crate) fn pick(&self) -> &Packed {
        let n = self.variants.len();
        if n < 2 {
            return &self.variants[0];
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let i = match self.schedule.len() {
            0 => k % n,
            len => usize::from(self.schedule[k % len]) % n,
        };
        &self.variants[i]
    }
}

/// The sections after the question, ready to copy, with their header counts.
#[derive(Clone)]
pub(crate) struct Packed {
    /// Answer, authority and additional records, compressed against a question at offset 12.
    pub(crate) bytes: Box<[u8]>,
    /// What the header says about them.
    pub(crate) meta: Composed,
}

/// The nodes of a snapshot by lowercased wire name, shared with the snapshots patched from it.
pub(crate) type Nodes = sharded::ShardedMap<Arc<[u8]>, Arc<Node>>;

/// The names whose answers read other names (CNAME, SRV, MX, NS targets): what a patch looks
/// at to find the answers a changed name makes stale.
pub(crate) type Readers = std::collections::BTreeSet<Arc<[u8]>>;

/// An immutable record set: zones, names, prebuilt answers and views.
pub struct Snapshot {
    pub(crate) zones: Vec<Zone>,
    zone_ids: FastMap<Box<[u8]>, u16>,
    pub(crate) nodes: Nodes,
    readers: Arc<Readers>,
    prebuilt: Table,
    views: Option<Arc<Views>>,
    generation: u64,
    /// Names whose answers this snapshot encoded (every name, unless patched).
    encoded: usize,
}

/// Source of snapshot generations (0 is the empty default snapshot's).
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

impl Default for Snapshot {
    /// A snapshot without zones: every query is out of zone.
    fn default() -> Self {
        Snapshot {
            zones: Vec::new(),
            zone_ids: FastMap::default(),
            nodes: Nodes::default(),
            readers: Arc::default(),
            prebuilt: Table::default(),
            views: None,
            generation: 0,
            encoded: 0,
        }
    }
}

/// The zone in `zone_ids` holding `name` (longest match), if any.
fn zone_in(zone_ids: &FastMap<Box<[u8]>, u16>, name: &[u8]) -> Option<u16> {
    label_starts(name)
        .chain(std::iter::once(name.len().saturating_sub(1)))
        .find_map(|s| zone_ids.get(&name[s..]).copied())
}

impl Snapshot {
    /// Which build made this snapshot: unique in the process, 0 for the empty default.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The zones this snapshot is authoritative for, as dotted names.
    pub fn zones(&self) -> impl Iterator<Item = &str> {
        self.zones.iter().map(|z| z.name.as_str())
    }

    /// Number of names whose answers were encoded for this snapshot: every name when built
    /// whole, those that changed (and those reading them) when patched from the previous one.
    pub fn names_encoded(&self) -> usize {
        self.encoded
    }

    /// Number of owner names (including empty non-terminals and the apexes).
    pub fn name_count(&self) -> usize {
        self.nodes.len()
    }

    /// The hash under which prebuilt answers are filed for `key` (lowercased wire name followed
    /// by the big-endian qtype).
    #[inline]
    pub(crate) fn key_hash(&self, key: &[u8]) -> u64 {
        table::hash(key)
    }

    /// Starts loading what a lookup of a key with hash `h` reads first.
    #[inline]
    pub(crate) fn prefetch_slot(&self, h: u64) {
        self.prebuilt.prefetch_slot(h);
    }

    /// Starts loading the prebuilt entry of a key with hash `h` (after [`Self::prefetch_slot`]).
    #[inline]
    pub(crate) fn prefetch_entry(&self, h: u64) {
        self.prebuilt.prefetch_entry(h);
    }

    /// The prebuilt answer for `key`, whose [`Self::key_hash`] is `h`.
    #[inline]
    pub(crate) fn prebuilt(&self, key: &[u8], h: u64) -> Option<Found<'_>> {
        self.prebuilt.get_hashed(key, h)
    }

    /// The zone holding `name` (longest match), if any.
    pub(crate) fn zone_of(&self, name: &[u8]) -> Option<u16> {
        zone_in(&self.zone_ids, name)
    }

    /// Whether `client` may see `zone`.
    #[inline]
    pub(crate) fn visible(&self, client: IpAddr, zone: u16) -> bool {
        self.views.as_ref().is_none_or(|v| v.visible(client, zone))
    }

    /// Name of zone `zone` (empty if out of range).
    pub(crate) fn zone_name(&self, zone: u16) -> &str {
        self.zones
            .get(usize::from(zone))
            .map_or("", |z| z.name.as_str())
    }
}
