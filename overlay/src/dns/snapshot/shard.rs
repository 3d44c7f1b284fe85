//! One shard of the prebuilt-answer table ([`super::table`]): an open-addressing index of 8-byte
//! slots over one byte arena where each entry holds its key, zone, header counts and answer
//! bytes together, and how such a shard is laid out.

use super::table::hash;
use super::{Composed, Cut, Packed, Prebuilt};

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

/// One shard: the keys whose name hashes to it.
#[derive(Default)]
pub(super) struct Shard {
    /// 0 when empty, else the key hash's high half << 32 | (arena offset + 1).
    slots: Box<[u64]>,
    arena: Box<[u8]>,
    varying: Box<[Prebuilt]>,
    /// Entries held.
    len: usize,
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

/// A shard being laid out: the arena so far, the varying entries and where each key went.
#[derive(Default)]
pub(super) struct Layout {
    arena: Vec<u8>,
    varying: Vec<Prebuilt>,
    placed: Vec<(u64, usize)>,
}

impl Layout {
    /// Appends the entry of `key`, whose [`hash`] is `h`; keys longer than 255 are skipped.
    pub(super) fn place(&mut self, key: &[u8], h: u64, pre: Prebuilt) {
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
        self.placed.push((h, offset));
    }

    /// An empty layout with room for `shard`'s arena.
    pub(super) fn sized_for(shard: &Shard) -> Layout {
        Layout {
            arena: Vec::with_capacity(shard.arena.len()),
            ..Layout::default()
        }
    }

    /// Copies an entry of another shard: its bytes as they are (a varying one's answers cloned).
    pub(super) fn copy(&mut self, held: Held<'_>) {
        let h = hash(held.key);
        match held.varying {
            Some(pre) => self.place(held.key, h, pre.clone()),
            None => {
                self.placed.push((h, self.arena.len()));
                self.arena.extend_from_slice(held.bytes);
            }
        }
    }

    /// Indexes the entries laid out.
    pub(super) fn finish(self) -> Shard {
        let len = self.placed.len();
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
        Shard {
            len,
            slots,
            arena: self.arena.into_boxed_slice(),
            varying: self.varying.into_boxed_slice(),
        }
    }
}

/// An entry of a shard, to copy into another as it is.
pub(super) struct Held<'a> {
    /// Its key.
    pub(super) key: &'a [u8],
    /// Its bytes in the arena, from the key's length on.
    bytes: &'a [u8],
    /// Its varying part, if any.
    varying: Option<&'a Prebuilt>,
}

impl Shard {
    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Every entry, in arena order.
    pub(super) fn entries(&self) -> impl Iterator<Item = Held<'_>> {
        self.walk().map(|(key, bytes, varying)| Held {
            key,
            bytes,
            varying: varying.map(|v| &self.varying[v]),
        })
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

    /// The entry for `key`, whose [`hash`] is `h`.
    #[inline]
    pub(super) fn get_hashed(&self, key: &[u8], h: u64) -> Option<Found<'_>> {
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
    pub(super) fn prefetch_slot(&self, h: u64) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[h as usize & (self.slots.len() - 1)]);
        }
    }

    /// Starts loading the entry the first probed slot points at.
    #[inline]
    pub(super) fn prefetch_entry(&self, h: u64) {
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
