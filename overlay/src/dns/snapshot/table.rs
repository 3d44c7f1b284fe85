//! The prebuilt-answer table, laid out for the hot path: an open-addressing index of 8-byte
//! slots over one byte arena where each entry holds its key, zone, header counts and answer
//! bytes together. A hit reads one slot and one contiguous entry (instead of chasing a map
//! bucket, a boxed key and boxed answers).

use std::hash::Hasher;

use super::{Composed, Cut, Packed, Prebuilt};
use crate::dns::hash::FastHasher;

/// Entry kinds in the arena.
const FIXED: u8 = 0;
const VARYING: u8 = 1;

/// What a lookup found.
pub(crate) enum Found<'a> {
    /// One answer, always the same.
    Fixed {
        /// Zone index of the name.
        zone: u16,
        /// Header counts of `bytes`.
        meta: Composed,
        /// The sections after the question.
        bytes: &'a [u8],
    },
    /// An answer that varies per query: several rotations (an ordered rrset), or a CNAME chain
    /// into other zones, cut per view; or one that carries a note.
    Varying(&'a Prebuilt),
}

/// Prebuilt answers by key (lowercased wire name followed by the big-endian qtype).
#[derive(Default)]
pub(crate) struct Table {
    /// 0 when empty, else the key hash's high half << 32 | (arena offset + 1).
    slots: Box<[u64]>,
    arena: Box<[u8]>,
    varying: Box<[Prebuilt]>,
}

/// The hash the table files `key` under.
pub(crate) fn hash(key: &[u8]) -> u64 {
    let mut h = FastHasher::default();
    h.write(key);
    h.finish()
}

/// Hints the CPU to load the cache line holding `x`; no effect on other architectures.
#[inline]
fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is only a hint; it reads nothing and cannot fault.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((x as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

fn u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// A table being laid out: the arena so far, the varying entries and where each key went.
#[derive(Default)]
struct Layout {
    arena: Vec<u8>,
    varying: Vec<Prebuilt>,
    placed: Vec<(u64, usize)>,
}

impl Layout {
    /// Appends the entry of `key`; keys longer than 255 are skipped.
    fn place(&mut self, key: &[u8], pre: Prebuilt) {
        let Ok(klen) = u8::try_from(key.len()) else {
            return;
        };
        let arena = &mut self.arena;
        let offset = arena.len();
        arena.push(klen);
        arena.extend_from_slice(key);
        arena.extend_from_slice(&pre.zone.to_le_bytes());
        match &pre.variants[..] {
            [one]
                if pre.cuts.is_empty()
                    && pre.note.is_none()
                    && u16::try_from(one.bytes.len()).is_ok() =>
            {
                arena.push(FIXED);
                let m = &one.meta;
                for v in [
                    m.rcode,
                    m.an,
                    m.ns,
                    m.ar,
                    m.additional_at as u16,
                    one.bytes.len() as u16,
                ] {
                    arena.extend_from_slice(&v.to_le_bytes());
                }
                arena.extend_from_slice(&one.bytes);
            }
            _ => {
                arena.push(VARYING);
                arena.extend_from_slice(&(self.varying.len() as u32).to_le_bytes());
                self.varying.push(pre);
            }
        }
        self.placed.push((hash(key), offset));
    }

    /// Indexes the entries laid out.
    fn finish(self) -> Table {
        let mut slots =
            vec![0u64; (self.placed.len() * 2).next_power_of_two().max(16)].into_boxed_slice();
        let mask = slots.len() - 1;
        for (h, offset) in self.placed {
            let mut i = h as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = (h & 0xffff_ffff_0000_0000) | (offset as u64 + 1);
        }
        Table {
            slots,
            arena: self.arena.into_boxed_slice(),
            varying: self.varying.into_boxed_slice(),
        }
    }
}

impl Table {
    /// Lays out `entries`; answers longer than 65535 bytes or keys longer than 255 are skipped
    /// (the general path answers those).
    pub(crate) fn build(entries: Vec<(Box<[u8]>, Prebuilt)>) -> Table {
        let mut layout = Layout::default();
        for (key, pre) in entries {
            layout.place(&key, pre);
        }
        layout.finish()
    }

    /// This table with the entries whose key `keep` refuses left out and `added` put in (keys
    /// this table keeps must not be among them): kept entries are copied as they are, not
    /// encoded again.
    pub(crate) fn patched(
        &self,
        keep: impl Fn(&[u8]) -> bool,
        added: Vec<(Box<[u8]>, Prebuilt)>,
    ) -> Table {
        let mut layout = Layout {
            arena: Vec::with_capacity(self.arena.len()),
            ..Layout::default()
        };
        for (key, entry, varying) in self.walk() {
            if !keep(key) {
                continue;
            }
            match varying {
                Some(idx) => layout.place(key, self.varying[idx].clone()),
                None => {
                    layout.placed.push((hash(key), layout.arena.len()));
                    layout.arena.extend_from_slice(entry);
                }
            }
        }
        for (key, pre) in added {
            layout.place(&key, pre);
        }
        layout.finish()
    }

    /// Every entry in the arena, in order: its key, its bytes and, for a varying one, its index.
    fn walk(&self) -> impl Iterator<Item = (&[u8], &[u8], Option<usize>)> {
        let a = &self.arena;
        let mut off = 0;
        std::iter::from_fn(move || {
            if off >= a.len() {
                return None;
            }
            let klen = usize::from(a[off]);
            let at = off + 1 + klen;
            let (end, varying) = if a[at + 2] == VARYING {
                let idx = u32::from_le_bytes([a[at + 3], a[at + 4], a[at + 5], a[at + 6]]);
                (at + 7, Some(idx as usize))
            } else {
                (at + 15 + usize::from(u16_le(a, at + 13)), None)
            };
            let entry = (&a[off + 1..at], &a[off..end], varying);
            off = end;
            Some(entry)
        })
    }

    /// Every key, in arena order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<&[u8]> {
        self.walk().map(|(key, _, _)| key).collect()
    }

    /// The entry for `key`.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8]) -> Option<Found<'_>> {
        self.get_hashed(key, hash(key))
    }

    /// The entry for `key`, whose [`hash`] is `h`.
    #[inline]
    pub(crate) fn get_hashed(&self, key: &[u8], h: u64) -> Option<Found<'_>> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if slot >> 32 == h >> 32 {
                let off = (slot & 0xffff_ffff) as usize - 1;
                let klen = usize::from(self.arena[off]);
                if klen == key.len() && &self.arena[off + 1..off + 1 + klen] == key {
                    return Some(self.decode(off + 1 + klen));
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading the slot a key with hash `h` probes first.
    #[inline]
    pub(crate) fn prefetch_slot(&self, h: u64) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[h as usize & (self.slots.len() - 1)]);
        }
    }

    /// Starts loading the entry the first probed slot points at (call after [`Self::prefetch_slot`]
    /// had time to land): the two cache misses of a hit overlap across a batch.
    #[inline]
    pub(crate) fn prefetch_entry(&self, h: u64) {
        if self.slots.is_empty() {
            return;
        }
        let slot = self.slots[h as usize & (self.slots.len() - 1)];
        if slot != 0 {
            if let Some(byte) = self.arena.get((slot & 0xffff_ffff) as usize - 1) {
                prefetch(byte);
                if let Some(next) = self.arena.get((slot & 0xffff_ffff) as usize + 63) {
                    prefetch(next);
                }
            }
        }
    }

    fn decode(&self, at: usize) -> Found<'_> {
        let a = &self.arena;
        let zone = u16_le(a, at);
        if a[at + 2] == VARYING {
            let idx = u32::from_le_bytes([a[at + 3], a[at + 4], a[at + 5], a[at + 6]]) as usize;
            return Found::Varying(&self.varying[idx]);
        }
        let f = |k: usize| u16_le(a, at + 3 + 2 * k);
        let meta = Composed {
            rcode: f(0),
            an: f(1),
            ns: f(2),
            ar: f(3),
            additional_at: usize::from(f(4)),
            rotations: 1,
        };
        let start = at + 15;
        Found::Fixed {
            zone,
            meta,
            bytes: &a[start..start + usize::from(f(5))],
        }
    }
}

impl Prebuilt {
    /// A prebuilt entry for `zone` with these rotations and the cuts of its CNAME chain.
    pub(crate) fn new(zone: u16, variants: Vec<Packed>, cuts: Vec<Cut>) -> Prebuilt {
        Prebuilt {
            zone,
            variants: variants.into(),
            cuts: cuts.into(),
            schedule: Box::default(),
            note: None,
            next: Default::default(),
        }
    }

    /// The same, with the variant each query gets taken from `schedule` in turn, starting at a
    /// random place: snapshots are rebuilt often (health, connection counts), and starting each
    /// one at the schedule's head would favour its first entries.
    pub(crate) fn with_schedule(mut self, schedule: Vec<u16>) -> Prebuilt {
        use std::hash::{BuildHasher, Hasher};
        if !schedule.is_empty() {
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            self.next = std::sync::atomic::AtomicUsize::new(random as usize % schedule.len());
        }
        self.schedule = schedule.into();
        self
    }

    /// The same, with an EDNS option added to every answer.
    pub(crate) fn with_note(mut self, note: Option<Box<[u8]>>) -> Prebuilt {
        self.note = note;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(bytes: &[u8], an: u16) -> Packed {
        Packed {
            bytes: bytes.into(),
            meta: Composed {
                an,
                rotations: 1,
                additional_at: bytes.len(),
                ..Composed::default()
            },
        }
    }

    #[test]
    fn finds_every_key_and_nothing_else() {
        let entries: Vec<_> = (0..500u32)
            .map(|i| {
                let key: Box<[u8]> = format!("k{i}").into_bytes().into();
                let variants = if i % 7 == 0 {
                    vec![packed(b"a", 1), packed(b"b", 1)]
                } else {
                    vec![packed(&i.to_le_bytes(), 2)]
                };
                let cuts = if i % 11 == 0 {
                    vec![Cut {
                        zone: 1,
                        at: 0,
                        an: 0,
                    }]
                } else {
                    Vec::new()
                };
                (key, Prebuilt::new(i as u16, variants, cuts))
            })
            .collect();
        let t = Table::build(entries);
        for i in 0..500u32 {
            match t.get(format!("k{i}").as_bytes()) {
                Some(Found::Fixed { zone, meta, bytes }) => {
                    assert!(i % 7 != 0 && i % 11 != 0, "k{i} should vary");
                    assert_eq!((zone, meta.an, bytes), (i as u16, 2, &i.to_le_bytes()[..]));
                }
                Some(Found::Varying(p)) => {
                    assert_eq!(p.zone, i as u16);
                    assert!(i % 7 == 0 || i % 11 == 0, "k{i} should be inline");
                    assert_eq!(p.cut_for(|_| false).is_some(), i % 11 == 0);
                }
                None => panic!("k{i} missing"),
            }
        }
        assert!(t.get(b"k500").is_none());
        assert!(t.get(b"").is_none());
        assert!(Table::default().get(b"k1").is_none());
    }
}
