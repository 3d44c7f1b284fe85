//! A map in shards by the key's hash, each shared until written: a snapshot patched from
//! another shares every shard but those holding a changed key, so a patch copies a few small
//! maps instead of the whole node map or view table.

use std::borrow::Borrow;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};
use std::sync::Arc;

use crate::dns::hash::{FastHasher, FastMap};

/// Entries per shard a map aims at: a patch of a few names copies a few maps this big.
const PER_SHARD: usize = 32;

/// The most shards a map has: beyond 4,096 entries the shards grow instead.
const MAX_SHARDS: usize = 128;

/// How many shards a map of `len` entries has (a power of two).
fn shards_for(len: usize) -> usize {
    (len / PER_SHARD).next_power_of_two().clamp(1, MAX_SHARDS)
}

/// A map whose clones share every shard; writing one copies that shard if it is shared.
pub(crate) struct ShardedMap<K, V> {
    /// No shard while empty, else as many as [`shards_for`] its size when it last grew.
    shards: Box<[Arc<FastMap<K, V>>]>,
    /// Entries held.
    len: usize,
}

impl<K, V> Clone for ShardedMap<K, V> {
    /// The same entries, every shard shared.
    fn clone(&self) -> Self {
        ShardedMap {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            shards: Box::default(),
            len: 0,
        }
    }
}

/// The shard of a key among `n` (a power of two): bits 32 and up of the hash the shards' maps
/// use, which those maps read neither for their buckets (the low bits) nor for their tags (the
/// top seven).
fn shard_of<Q: Hash + ?Sized>(key: &Q, n: usize) -> usize {
    let hash = BuildHasherDefault::<FastHasher>::default().hash_one(key);
    (hash >> 32) as usize & (n - 1)
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    /// The value of `key`, if any.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards.get(self.index(key)?)?.get(key)
    }

    /// The value of `key` to change in place, if any (its shard copied if shared).
    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.holding(key)?.get_mut(key)
    }

    /// The shard holding `key`, to write (copied if shared); `None`, and nothing copied, when
    /// no shard holds it.
    fn holding<Q>(&mut self, key: &Q) -> Option<&mut FastMap<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.shards.get_mut(self.index(key)?)?;
        slot.contains_key(key).then(|| Arc::make_mut(slot))
    }

    /// Whether `key` is in the map.
    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the map is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// The shard `key` is in (none while the map has no shard).
    #[inline]
    fn index<Q: Hash + ?Sized>(&self, key: &Q) -> Option<usize> {
        let n = self.shards.len();
        (n > 0).then(|| shard_of(key, n))
    }

    /// Gives `key` this value (replacing the one it had); copies the shard if it is shared. A
    /// map that outgrew its shards is laid out again in as many as its size calls for.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.shards.is_empty() {
            self.shards = Box::new([Arc::default()]);
        }
        let at = shard_of(&key, self.shards.len());
        if Arc::make_mut(&mut self.shards[at])
            .insert(key, value)
            .is_none()
        {
            self.len += 1;
        }
        let n = shards_for(self.len);
        if n > self.shards.len() {
            self.reshard(n);
        }
    }

    /// Lays the entries out again in `n` shards.
    fn reshard(&mut self, n: usize) {
        let entries = self.iter().map(|(k, v)| (k.clone(), v.clone()));
        *self = ShardedMap::laid_out(entries, n);
    }

    /// The map of `entries` (the last of a key wins) in `n` shards (a power of two).
    fn laid_out(entries: impl Iterator<Item = (K, V)>, n: usize) -> Self {
        let mut shards: Vec<FastMap<K, V>> = (0..n).map(|_| FastMap::default()).collect();
        for (key, value) in entries {
            shards[shard_of(&key, n)].insert(key, value);
        }
        ShardedMap {
            len: shards.iter().map(|s| s.len()).sum(),
            shards: shards.into_iter().map(Arc::new).collect(),
        }
    }

    /// Takes `key` out; a shard without it is left as it is (not copied).
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let value = self.holding(key)?.remove(key)?;
        self.len -= 1;
        Some(value)
    }
}

impl<K: Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for ShardedMap<K, V> {
    /// The map of these entries (the last of a key wins), in as many shards as their number
    /// calls for.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let entries: Vec<(K, V)> = iter.into_iter().collect();
        if entries.is_empty() {
            return ShardedMap::default();
        }
        let n = shards_for(entries.len());
        ShardedMap::laid_out(entries.into_iter(), n)
    }
}

impl<K: Hash + Eq + Clone, V: Clone + PartialEq> PartialEq for ShardedMap<K, V> {
    /// The same keys with equal values.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<K: Hash + Eq + Clone + std::fmt::Debug, V: Clone + std::fmt::Debug> std::fmt::Debug
    for ShardedMap<K, V>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = ShardedMap<Arc<[u8]>, u32>;

    #[test]
    fn a_clone_shares_every_shard_until_one_changes() {
        let mut a: Map = (0..1000u32)
            .map(|i| (Arc::from(format!("n{i}").as_bytes()), i))
            .collect();
        assert_eq!(a.len(), 1000);
        let mut b = a.clone();
        b.insert(Arc::from(&b"n7"[..]), 9);
        b.insert(Arc::from(&b"new"[..]), 1);
        assert_eq!(b.remove(&b"n8"[..]), Some(8));
        assert_eq!(b.remove(&b"absent"[..]), None);
        *b.get_mut(&b"n9"[..]).expect("n9") += 1;
        assert_eq!(b.get_mut(&b"absent"[..]), None);
        assert_eq!((a.len(), b.len()), (1000, 1000));
        assert_eq!((a.get(&b"n7"[..]), b.get(&b"n7"[..])), (Some(&7), Some(&9)));
        assert_eq!(
            (a.get(&b"n9"[..]), b.get(&b"n9"[..])),
            (Some(&9), Some(&10))
        );
        assert!(a.contains_key(&b"n8"[..]) && !b.contains_key(&b"n8"[..]));
        assert!(!a.contains_key(&b"new"[..]) && b.contains_key(&b"new"[..]));
        let shared = (a.shards.iter().zip(b.shards.iter()))
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        let n = a.shards.len();
        assert_eq!((n, b.shards.len()), (32, 32), "1,000 entries: 32 shards");
        let touched: std::collections::BTreeSet<usize> = [&b"n7"[..], b"new", b"n8", b"n9"]
            .iter()
            .map(|k| shard_of(*k, n))
            .collect();
        assert_eq!(shared, n - touched.len());
        assert_eq!(b.iter().count(), 1000);
        assert!(a != b);
        a.remove(&b"n1"[..]);
        assert_eq!(a.iter().filter(|(n, _)| &n[..] == b"n1").count(), 0);
    }

    #[test]
    fn equal_maps_compare_equal_whatever_their_history() {
        let built: Map = [(Arc::from(&b"a"[..]), 1), (Arc::from(&b"b"[..]), 2)]
            .into_iter()
            .collect();
        let twice: Map = [(Arc::from(&b"a"[..]), 0), (Arc::from(&b"a"[..]), 1)]
            .into_iter()
            .chain([(Arc::from(&b"b"[..]), 2)])
            .collect();
        assert!(twice == built && twice.len() == 2, "the last of a key wins");
        let mut patched = built.clone();
        patched.insert(Arc::from(&b"c"[..]), 3);
        assert!(patched != built);
        patched.remove(&b"c"[..]);
        assert!(patched == built);
    }

    #[test]
    fn a_growing_map_takes_more_shards_and_keeps_every_entry() {
        let mut map = Map::default();
        let mut counts = Vec::new();
        for i in 0..10_000u32 {
            map.insert(Arc::from(format!("n{i}").as_bytes()), i);
            if i == 0 || i == 99 || i == 9_999 {
                counts.push(map.shards.len());
            }
        }
        assert_eq!(counts, [1, 4, MAX_SHARDS], "one shard for a small map");
        assert_eq!(map.len(), 10_000);
        assert!((0..10_000u32).all(|i| map.get(format!("n{i}").as_bytes()) == Some(&i)));
        let biggest = map.shards.iter().map(|s| s.len()).max();
        assert!(biggest < Some(160), "spread over the shards: {biggest:?}");
    }

    #[test]
    fn an_empty_map_holds_no_shard() {
        let mut map = Map::default();
        assert_eq!(map.remove(&b"x"[..]), None);
        assert!(map.get(&b"x"[..]).is_none() && map.shards.is_empty() && map.is_empty());
        assert_eq!(map.iter().count(), 0);
    }
}
