//! Bounded, preallocated, set-associative hash table with expiry.
//!
//! The table is an array of buckets of [`WAYS`] slots, allocated once. A key
//! lives in the bucket chosen by its hash. Lookups and inserts touch one
//! bucket only; when a bucket is full, the least recently used slot of that
//! bucket is evicted (an LRU approximation with the cost of a fixed-size scan
//! and no per-packet allocation). Expired entries are reclaimed lazily by
//! lookups and inserts, and incrementally by [`BoundedTable::sweep`].

/// Slots per bucket.
pub const WAYS: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct Slot<K, V> {
    key: K,
    val: V,
    last_ns: u64,
    expires_ns: u64,
    used: bool,
}

/// Result of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Stored in a free (or expired) slot.
    Fresh,
    /// The key was present; its value and expiry were replaced.
    Replaced,
    /// The bucket was full of live entries; the least recently used was evicted.
    Evicted,
}

/// Fixed-capacity table mapping `K` to `V` with per-entry expiry.
#[derive(Debug)]
pub struct BoundedTable<K, V> {
    slots: Box<[Slot<K, V>]>,
    bucket_mask: usize,
    occupied: usize,
    cursor: usize,
}

impl<K: Copy + Default + Eq, V: Copy + Default> BoundedTable<K, V> {
    /// Allocates room for at least `capacity` entries (rounded up to a power
    /// of two number of buckets; at least one bucket).
    pub fn with_capacity(capacity: usize) -> Self {
        let buckets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        BoundedTable {
            slots: vec![Slot::default(); buckets * WAYS].into_boxed_slice(),
            bucket_mask: buckets - 1,
            occupied: 0,
            cursor: 0,
        }
    }

    /// Total number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of the slots, allocated up front (what
    /// `headroom_config::machine::director_table_bytes` predicts).
    pub fn allocated_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Occupied slots (including expired entries not yet reclaimed).
    pub fn len(&self) -> usize {
        self.occupied
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.occupied == 0
    }

    #[inline]
    fn bucket(&self, hash: u64) -> usize {
        // High bits: the low bits of the flow hash also pick the Maglev slot.
        (((hash >> 32) ^ hash.rotate_left(7)) as usize & self.bucket_mask) * WAYS
    }

    /// Live entry for `key` (refreshing nothing); expired entries are freed
    /// and reported as absent. Returns the value and a handle for
    /// [`BoundedTable::touch`].
    #[inline]
    pub fn get(&mut self, key: &K, hash: u64, now_ns: u64) -> Option<(V, usize)> {
        let b = self.bucket(hash);
        for i in b..b + WAYS {
            let s = &mut self.slots[i];
            if s.used && s.key == *key {
                if s.expires_ns <= now_ns {
                    s.used = false;
                    self.occupied -= 1;
                    return None;
                }
                return Some((s.val, i));
            }
        }
        None
    }

    /// Updates the entry at `handle` (from [`BoundedTable::get`]).
    #[inline]
    pub fn touch(&mut self, handle: usize, val: V, now_ns: u64, expires_ns: u64) {
        if let Some(s) = self.slots.get_mut(handle) {
            s.val = val;
            s.last_ns = now_ns;
            s.expires_ns = expires_ns;
        }
    }

    /// Inserts or replaces `key`.
    pub fn insert(&mut self, key: K, hash: u64, val: V, now_ns: u64, expires_ns: u64) -> Insert {
        let b = self.bucket(hash);
        let mut free = None;
        let mut lru = b;
        for i in b..b + WAYS {
            let s = &self.slots[i];
            if s.used && s.key == key {
                self.slots[i] = Slot {
                    key,
                    val,
                    last_ns: now_ns,
                    expires_ns,
                    used: true,
                };
                return Insert::Replaced;
            }
            if free.is_none() && (!s.used || s.expires_ns <= now_ns) {
                free = Some(i);
            }
            if s.last_ns < self.slots[lru].last_ns {
                lru = i;
            }
        }
        let (i, outcome) = match free {
            Some(i) => {
                if !self.slots[i].used {
                    self.occupied += 1;
                }
                (i, Insert::Fresh)
            }
            None => (lru, Insert::Evicted),
        };
        self.slots[i] = Slot {
            key,
            val,
            last_ns: now_ns,
            expires_ns,
            used: true,
        };
        outcome
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&mut self, key: &K, hash: u64) -> bool {
        let b = self.bucket(hash);
        for i in b..b + WAYS {
            let s = &mut self.slots[i];
            if s.used && s.key == *key {
                s.used = false;
                self.occupied -= 1;
                return true;
            }
        }
        false
    }

    /// Frees expired entries among the next `budget` slots (round robin);
    /// returns how many were freed. Call periodically, off the packet path.
    pub fn sweep(&mut self, now_ns: u64, budget: usize) -> usize {
        let n = self.slots.len();
        let mut freed = 0;
        for _ in 0..budget.min(n) {
            let s = &mut self.slots[self.cursor];
            if s.used && s.expires_ns <= now_ns {
                s.used = false;
                self.occupied -= 1;
                freed += 1;
            }
            self.cursor = (self.cursor + 1) % n;
        }
        freed
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        for s in self.slots.iter_mut() {
            s.used = false;
        }
        self.occupied = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_budget_counts_the_slots_as_allocated() {
        assert_eq!(WAYS, headroom_config::machine::DIRECTOR_WAYS);
        for cap in [0, 1, 8, 9, 1000, 1 << 18] {
            let t: BoundedTable<u64, u64> = BoundedTable::with_capacity(cap);
            let slot = std::mem::size_of::<Slot<u64, u64>>() as u64;
            assert_eq!(
                t.allocated_bytes() as u64,
                headroom_config::machine::director_table_bytes(cap, slot),
                "capacity {cap}"
            );
        }
    }

    #[test]
    fn capacity_rounding() {
        assert_eq!(BoundedTable::<u32, u32>::with_capacity(0).capacity(), WAYS);
        assert_eq!(
            BoundedTable::<u32, u32>::with_capacity(100).capacity(),
            16 * WAYS
        );
    }

    #[test]
    fn insert_get_expire_remove() {
        let mut t = BoundedTable::<u32, u32>::with_capacity(64);
        assert_eq!(t.insert(1, 11, 100, 0, 50), Insert::Fresh);
        assert_eq!(t.insert(1, 11, 101, 1, 60), Insert::Replaced);
        assert_eq!(t.get(&1, 11, 59).map(|x| x.0), Some(101));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(&1, 11, 60), None, "expired at its deadline");
        assert_eq!(t.len(), 0);
        t.insert(2, 22, 5, 0, 10);
        assert!(t.remove(&2, 22));
        assert!(!t.remove(&2, 22));
        assert!(t.is_empty());
    }

    #[test]
    fn full_bucket_evicts_least_recently_used() {
        // One bucket: every key collides.
        let mut t = BoundedTable::<u32, u32>::with_capacity(WAYS);
        for k in 0..WAYS as u32 {
            assert_eq!(t.insert(k, 0, k, 10 + u64::from(k), 1000), Insert::Fresh);
        }
        // Touch key 0 so key 1 becomes the oldest.
        let (_, h) = t.get(&0, 0, 50).unwrap();
        t.touch(h, 0, 50, 1000);
        assert_eq!(t.insert(99, 0, 99, 60, 1000), Insert::Evicted);
        assert_eq!(t.get(&1, 0, 61), None);
        assert!(t.get(&0, 0, 61).is_some());
        assert!(t.get(&99, 0, 61).is_some());
        assert_eq!(t.len(), WAYS);
        // Expired entries are reused before evicting live ones.
        t.insert(100, 0, 0, 70, 75);
        assert_eq!(t.insert(101, 0, 0, 80, 1000), Insert::Fresh);
    }

    #[test]
    fn sweep_reclaims_expired() {
        let mut t = BoundedTable::<u32, u32>::with_capacity(8192);
        for k in 0..500u32 {
            t.insert(
                k,
                u64::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                k,
                0,
                if k % 2 == 0 { 10 } else { 100 },
            );
        }
        let before = t.len();
        let mut freed = 0;
        for _ in 0..(t.capacity() / 64) {
            freed += t.sweep(20, 64);
        }
        assert_eq!(t.len(), before - freed);
        assert_eq!(freed, before - 250);
        t.clear();
        assert!(t.is_empty());
    }
}
