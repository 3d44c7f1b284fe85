//! Bounded answer cache with CLOCK eviction, fresh and stale lifetimes, and an explicit clock.
//!
//! Pure: no sockets, no runtime, no wall clock. Every call takes `now`, so TTL expiry, serve-stale
//! windows and eviction are unit-tested without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long after a failed refresh a stale entry is served without asking upstream again
/// (RFC 8767 section 5, "failure recheck timer").
pub const FAILURE_RECHECK: Duration = Duration::from_secs(30);

/// The result of a cache lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<V> {
    /// Within its TTL; `age` is the whole seconds spent in the cache.
    Fresh {
        /// The cached value.
        value: V,
        /// Whole seconds since insertion, to subtract from record TTLs.
        age: u32,
    },
    /// Past its TTL but inside the serve-stale window.
    Stale {
        /// The cached value.
        value: V,
        /// False while a recent refresh failure says not to ask upstream again yet.
        recheck: bool,
    },
    /// Not cached, or past the serve-stale window.
    Miss,
}

struct Slot<V> {
    key: Box<[u8]>,
    value: V,
    stored: Instant,
    fresh_until: Instant,
    stale_until: Instant,
    recheck_after: Option<Instant>,
    referenced: bool,
}

/// A bounded map from wire keys to values with TTLs; CLOCK (second chance) eviction.
pub struct Cache<V> {
    capacity: usize,
    stale_for: Duration,
    index: HashMap<Box<[u8]>, usize>,
    slots: Vec<Slot<V>>,
    hand: usize,
}

impl<V> Cache<V> {
    /// A cache holding at most `capacity` entries (0 disables caching), each served stale for up to
    /// `stale_for` after its TTL ends.
    pub fn new(capacity: usize, stale_for: Duration) -> Self {
        Cache {
            capacity,
            stale_for,
            index: HashMap::with_capacity(capacity.min(1 << 16)),
            slots: Vec::with_capacity(capacity.min(1 << 16)),
            hand: 0,
        }
    }

    /// Number of entries held (fresh or stale).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Looks `key` up at time `now`; drops the entry when it is past its serve-stale window.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Lookup<&V> {
        let Some(&i) = self.index.get(key) else {
            return Lookup::Miss;
        };
        let (fresh, stale) = {
            let slot = &self.slots[i];
            (now < slot.fresh_until, now < slot.stale_until)
        };
        if fresh {
            let slot = &mut self.slots[i];
            slot.referenced = true;
            let age = now.saturating_duration_since(slot.stored).as_secs();
            return Lookup::Fresh {
                value: &slot.value,
                age: u32::try_from(age).unwrap_or(u32::MAX),
            };
        }
        if stale {
            let slot = &self.slots[i];
            return Lookup::Stale {
                value: &slot.value,
                recheck: slot.recheck_after.is_none_or(|t| now >= t),
            };
        }
        self.remove_slot(i);
        Lookup::Miss
    }

    /// Stores `value` under `key` for `ttl` from `now`, replacing any previous entry; evicts one
    /// entry when full. A zero `ttl` stores nothing.
    pub fn insert(&mut self, key: &[u8], value: V, ttl: Duration, now: Instant) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let fresh_until = now + ttl;
        let slot = Slot {
            key: key.into(),
            value,
            stored: now,
            fresh_until,
            stale_until: fresh_until + self.stale_for,
            recheck_after: None,
            referenced: false,
        };
        if let Some(&i) = self.index.get(key) {
            self.slots[i] = slot;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(slot.key.clone(), self.slots.len());
            self.slots.push(slot);
            return;
        }
        let victim = self.pick_victim(now);
        self.index.remove(&self.slots[victim].key);
        self.index.insert(slot.key.clone(), victim);
        self.slots[victim] = slot;
    }

    /// Records that refreshing `key` failed at `now`: its stale value is served without asking
    /// upstream again until [`FAILURE_RECHECK`] has passed.
    pub fn note_refresh_failure(&mut self, key: &[u8], now: Instant) {
        if let Some(&i) = self.index.get(key) {
            self.slots[i].recheck_after = Some(now + FAILURE_RECHECK);
        }
    }

    /// Second-chance sweep: dead entries go first, then the first one not referenced since the
    /// hand last passed it. Ends within two turns of the clock.
    fn pick_victim(&mut self, now: Instant) -> usize {
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = &mut self.slots[i];
            if now >= slot.stale_until || !slot.referenced {
                return i;
            }
            slot.referenced = false;
        }
    }

    fn remove_slot(&mut self, i: usize) {
        let removed = self.slots.swap_remove(i);
        self.index.remove(&removed.key);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key.clone(), i);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn fresh_until_ttl_with_age_in_whole_seconds() {
        let t0 = Instant::now();
        let mut c = Cache::new(10, HOUR);
        c.insert(b"a", 1, secs(60), t0);
        assert_eq!(c.get(b"a", t0), Lookup::Fresh { value: &1, age: 0 });
        assert_eq!(
            c.get(b"a", t0 + Duration::from_millis(59_900)),
            Lookup::Fresh { value: &1, age: 59 }
        );
        assert_eq!(
            c.get(b"a", t0 + secs(60)),
            Lookup::Stale {
                value: &1,
                recheck: true
            }
        );
        assert_eq!(c.get(b"b", t0), Lookup::Miss);
    }

    #[test]
    fn stale_window_is_bounded_and_then_the_entry_is_dropped() {
        let t0 = Instant::now();
        let mut c = Cache::new(10, secs(100));
        c.insert(b"a", 1, secs(10), t0);
        assert!(matches!(c.get(b"a", t0 + secs(109)), Lookup::Stale { .. }));
        assert_eq!(c.get(b"a", t0 + secs(110)), Lookup::Miss);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn refresh_failure_suppresses_recheck_for_a_while() {
        let t0 = Instant::now();
        let mut c = Cache::new(10, HOUR);
        c.insert(b"a", 1, secs(10), t0);
        c.note_refresh_failure(b"a", t0 + secs(20));
        let stale = |recheck| Lookup::Stale { value: &1, recheck };
        assert_eq!(c.get(b"a", t0 + secs(21)), stale(false));
        assert_eq!(c.get(b"a", t0 + secs(20) + FAILURE_RECHECK), stale(true));
    }

    #[test]
    fn insert_replaces_and_resets_lifetime() {
        let t0 = Instant::now();
        let mut c = Cache::new(10, HOUR);
        c.insert(b"a", 1, secs(10), t0);
        c.note_refresh_failure(b"a", t0 + secs(11));
        c.insert(b"a", 2, secs(10), t0 + secs(12));
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.get(b"a", t0 + secs(15)),
            Lookup::Fresh { value: &2, age: 3 }
        );
    }

    #[test]
    fn zero_ttl_or_zero_capacity_stores_nothing() {
        let t0 = Instant::now();
        let mut c = Cache::new(10, HOUR);
        c.insert(b"a", 1, Duration::ZERO, t0);
        assert_eq!(c.get(b"a", t0), Lookup::Miss);
        let mut off = Cache::new(0, HOUR);
        off.insert(b"a", 1, secs(10), t0);
        assert_eq!(off.get(b"a", t0), Lookup::Miss);
    }

    #[test]
    fn eviction_bounds_size_and_spares_recently_used_entries() {
        let t0 = Instant::now();
        let mut c = Cache::new(3, HOUR);
        for k in [b"a", b"b", b"c"] {
            c.insert(k, 0, secs(60), t0);
        }
        assert!(matches!(c.get(b"a", t0), Lookup::Fresh { .. }));
        c.insert(b"d", 0, secs(60), t0);
        assert_eq!(c.len(), 3);
        assert!(matches!(c.get(b"a", t0), Lookup::Fresh { .. }));
        assert_eq!(c.get(b"b", t0), Lookup::Miss);
        assert!(matches!(c.get(b"c", t0), Lookup::Fresh { .. }));
        assert!(matches!(c.get(b"d", t0), Lookup::Fresh { .. }));
    }

    #[test]
    fn eviction_prefers_dead_entries_even_when_referenced() {
        let t0 = Instant::now();
        let mut c = Cache::new(2, secs(5));
        c.insert(b"short", 0, secs(1), t0);
        c.insert(b"long", 0, secs(600), t0);
        assert!(matches!(c.get(b"short", t0), Lookup::Fresh { .. }));
        c.insert(b"new", 0, secs(600), t0 + secs(10));
        assert_eq!(c.len(), 2);
        assert!(matches!(
            c.get(b"long", t0 + secs(10)),
            Lookup::Fresh { .. }
        ));
        assert!(matches!(c.get(b"new", t0 + secs(10)), Lookup::Fresh { .. }));
    }

    #[test]
    fn many_inserts_stay_within_capacity_and_index_stays_consistent() {
        let t0 = Instant::now();
        let mut c = Cache::new(50, secs(1));
        for i in 0u32..1000 {
            let now = t0 + Duration::from_millis(u64::from(i) * 10);
            c.insert(
                &i.to_be_bytes(),
                i,
                Duration::from_millis(u64::from(i % 7) * 100),
                now,
            );
            let _ = c.get(&(i / 2).to_be_bytes(), now);
            assert!(c.len() <= 50);
        }
        for (key, &i) in &c.index {
            assert_eq!(&c.slots[i].key, key);
        }
        assert_eq!(c.index.len(), c.slots.len());
    }
}
