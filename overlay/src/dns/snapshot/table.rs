//! The prebuilt-answer table, laid out for the hot path: an open-addressing index of 8-byte
//! slots over one byte arena where each entry holds its key, zone, header counts and answer
//! bytes together. A hit reads one slot and one contiguous entry (instead of chasing a map
//! bucket, a boxed key and boxed answers). The table is split in shards by the hash of the
//! key's name (every type of one name in one shard): a patch lays out again only the shards
//! holding a changed name and shares the others with the table it patches.

use std::hash::Hasher;
use std::sync::Arc;

pub(crate) use super::shard::Found;
use super::shard::{Layout, Shard};
use super::Prebuilt;
use crate::dns::hash::{FastHasher, FastSet};

/// Prebuilt answers by key (lowercased wire name followed by the big-endian qtype), in a
/// power of two of shards (none when empty).
#[derive(Default)]
pub(crate) struct Table {
    shards: Box<[Arc<Shard>]>,
}

/// Keys per shard a table aims at: a patch of a few names lays out a few shards this big.
const PER_SHARD: usize = 64;

/// The most shards a table has (the shard is the top byte of a key's hash).
const MAX_SHARDS: usize = 256;

/// The hash of a name (lowercased wire form): its keys' shard is its top byte.
fn name_hash(name: &[u8]) -> u64 {
    let mut h = FastHasher::default();
    h.write(name);
    h.finish()
}

/// The hash the table files `key` under: its name's hash with the qtype mixed into every byte
/// but the top one (which picks the shard).
pub(crate) fn hash(key: &[u8]) -> u64 {
    let (name, qtype) = key.split_at(key.len().saturating_sub(2));
    let q = qtype.iter().fold(0u64, |q, b| q << 8 | u64::from(*b));
    name_hash(name) ^ ((q + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 8)
}

/// The shard of a key with hash `h` among `n` (a power of two).
fn shard_of(h: u64, n: usize) -> usize {
    (h >> 56) as usize & (n - 1)
}

/// How many shards a table of `entries` keys has.
fn shards_for(entries: usize) -> usize {
    (entries / PER_SHARD)
        .next_power_of_two()
        .clamp(1, MAX_SHARDS)
}

impl Table {
    /// Lays out `entries`; answers longer than 65535 bytes or keys longer than 255 are skipped
    /// (the general path answers those).
    pub(crate) fn build(entries: Vec<(Box<[u8]>, Prebuilt)>) -> Table {
        if entries.is_empty() {
            return Table::default();
        }
        let n = shards_for(entries.len());
        let mut layouts: Vec<Layout> = (0..n).map(|_| Layout::default()).collect();
        for (key, pre) in entries {
            let h = hash(&key);
            layouts[shard_of(h, n)].place(&key, h, pre);
        }
        Table::of(layouts)
    }

    /// The table of these shards, laid out.
    fn of(layouts: Vec<Layout>) -> Table {
        let shards = layouts.into_iter().map(|l| Arc::new(l.finish()));
        Table {
            shards: shards.collect(),
        }
    }

    /// This table with every entry of the names in `dirty` left out and `added` put in (their
    /// keys must be of names in `dirty`): only the shards those names fall in are laid out
    /// again, their other entries copied as they are, not encoded again; the other shards are
    /// shared. When the table outgrows its shards (or shrinks far below them) it is laid out
    /// whole in as many as its size calls for.
    pub(crate) fn patched(
        &self,
        dirty: &FastSet<Box<[u8]>>,
        added: Vec<(Box<[u8]>, Prebuilt)>,
    ) -> Table {
        let n = self.shards.len().max(1);
        let mut layouts: Vec<Option<Layout>> = (0..n).map(|_| None).collect();
        for name in dirty {
            layouts[shard_of(name_hash(name), n)].get_or_insert_with(Layout::default);
        }
        for (i, layout) in layouts.iter_mut().enumerate() {
            let (Some(layout), Some(shard)) = (layout, self.shards.get(i)) else {
                continue;
            };
            *layout = Layout::sized_for(shard);
            for held in shard.entries() {
                if !dirty.contains(&held.key[..held.key.len().saturating_sub(2)]) {
                    layout.copy(held);
                }
            }
        }
        for (key, pre) in added {
            let h = hash(&key);
            let layout = layouts[shard_of(h, n)].get_or_insert_with(Layout::default);
            layout.place(&key, h, pre);
        }
        let shards: Vec<Arc<Shard>> = (layouts.into_iter().enumerate())
            .map(|(i, layout)| match layout {
                Some(l) => Arc::new(l.finish()),
                None => self.shards.get(i).cloned().unwrap_or_default(),
            })
            .collect();
        let entries: usize = shards.iter().map(|s| s.len()).sum();
        let fits = shards_for(entries);
        if fits > 2 * n || 2 * fits < n {
            return Table::resharded(&shards, fits);
        }
        Table {
            shards: shards.into(),
        }
    }

    /// The entries of `shards` laid out again in `n` shards.
    fn resharded(shards: &[Arc<Shard>], n: usize) -> Table {
        let mut layouts: Vec<Layout> = (0..n).map(|_| Layout::default()).collect();
        for shard in shards {
            for held in shard.entries() {
                layouts[shard_of(hash(held.key), n)].copy(held);
            }
        }
        Table::of(layouts)
    }

    /// Every key, in shard and arena order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<&[u8]> {
        let walks = self.shards.iter().map(|s| s.entries().map(|h| h.key));
        walks.flatten().collect()
    }

    /// How many shards the table has.
    #[cfg(test)]
    fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The entry for `key`.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8]) -> Option<Found<'_>> {
        self.get_hashed(key, hash(key))
    }

    /// The shard a key with hash `h` is in (none when the table is empty).
    #[inline]
    fn shard(&self, h: u64) -> Option<&Shard> {
        let n = self.shards.len();
        (n > 0).then(|| &*self.shards[shard_of(h, n)])
    }

    /// The entry for `key`, whose [`hash`] is `h`.
    #[inline]
    pub(crate) fn get_hashed(&self, key: &[u8], h: u64) -> Option<Found<'_>> {
        self.shard(h)?.get_hashed(key, h)
    }

    /// Starts loading the slot a key with hash `h` probes first.
    #[inline]
    pub(crate) fn prefetch_slot(&self, h: u64) {
        if let Some(s) = self.shard(h) {
            s.prefetch_slot(h);
        }
    }

    /// Starts loading the entry the first probed slot points at (call after [`Self::prefetch_slot`]
    /// had time to land): the two cache misses of a hit overlap across a batch.
    #[inline]
    pub(crate) fn prefetch_entry(&self, h: u64) {
        if let Some(s) = self.shard(h) {
            s.prefetch_entry(h);
        }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
