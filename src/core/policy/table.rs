//! The limit zone's table: a fixed array of [`Slot`]s addressed by key hash with linear
//! probing. The caller holds the zone's lock while it uses a [`Table`].
//!
//! Memory is fixed. When a new key finds no free slot, slots that hold nothing that still
//! matters (windows that have passed, finished quota periods, no request in flight) are
//! freed and the search is repeated; if every slot is still in use the lookup fails and the
//! caller answers 503 (as nginx's `limit_req` does when its zone is full).

use super::slot::{Shape, Slot};

/// Identifies a table laid out by this version of the module.
pub const MAGIC: u64 = 0x6169_6777_6c69_6d01;

/// Lives at the start of the zone's table memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TableHeader {
    pub magic: u64,
    pub capacity: u64,
    /// Slots with a key.
    pub used: u64,
    /// Lookups that found the table full (counted for the log and metrics).
    pub full: u64,
}

/// The table, borrowed for the time the zone's lock is held.
pub struct Table<'a> {
    pub header: &'a mut TableHeader,
    slots: &'a mut [Slot],
}

/// Where a key's slot is; stays valid while the slot holds the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRef {
    pub index: usize,
    pub key: u64,
}

impl<'a> Table<'a> {
    /// Opens `slots` with its header; initialises both when the header is not a table of
    /// this size (new zone, or a zone of another layout).
    pub fn open(header: &'a mut TableHeader, slots: &'a mut [Slot]) -> Table<'a> {
        if header.magic != MAGIC || header.capacity != slots.len() as u64 {
            slots.fill(Slot::default());
            *header = TableHeader {
                magic: MAGIC,
                capacity: slots.len() as u64,
                used: 0,
                full: 0,
            };
        }
        Table { header, slots }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The slot of `key`, created (counting `shape`) when missing. `None` when the table is
    /// full of slots still in use.
    pub fn lookup(&mut self, key: u64, shape: Shape, now_ms: u64) -> Option<SlotRef> {
        let key = key.max(1);
        if let Some(found) = self.find(key) {
            return Some(found);
        }
        // keep a quarter free so probe sequences stay short
        if self.header.used as usize >= self.slots.len() - self.slots.len() / 4 {
            self.expire(now_ms);
            if self.header.used as usize >= self.slots.len() - self.slots.len() / 4 {
                self.header.full += 1;
                return None;
            }
        }
        let n = self.slots.len();
        let mut i = (key as usize) % n;
        while self.slots[i].key != 0 {
            i = (i + 1) % n;
        }
        self.slots[i] = Slot::new(key, shape, now_ms);
        self.header.used += 1;
        Some(SlotRef { index: i, key })
    }

    /// The slot of `key`, if it has one.
    pub fn find(&self, key: u64) -> Option<SlotRef> {
        let key = key.max(1);
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let mut i = (key as usize) % n;
        for _ in 0..n {
            match self.slots[i].key {
                0 => return None,
                k if k == key => return Some(SlotRef { index: i, key }),
                _ => i = (i + 1) % n,
            }
        }
        None
    }

    /// The slot `r` points at, if it still holds the same key.
    pub fn get(&mut self, r: SlotRef) -> Option<&mut Slot> {
        self.slots.get_mut(r.index).filter(|s| s.key == r.key)
    }

    /// `r` again, wherever its key is now (a lookup that freed idle slots may have moved it).
    pub fn resolve(&self, r: SlotRef) -> Option<SlotRef> {
        match self.slots.get(r.index) {
            Some(s) if s.key == r.key => Some(r),
            _ => self.find(r.key),
        }
    }

    /// The slots whose shape code is `code`.
    pub fn with_shape(&self, code: u64) -> Vec<SlotRef> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.key != 0 && s.shape == code)
            .map(|(index, s)| SlotRef { index, key: s.key })
            .collect()
    }

    /// Frees every idle slot (backward-shift deletion keeps the probe sequences intact).
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let n = self.slots.len();
        let mut freed = 0;
        let mut i = 0;
        while i < n {
            if self.slots[i].key != 0 && self.slots[i].is_idle(now_ms) {
                self.remove_at(i);
                freed += 1;
                // an entry may have shifted into i: look at it again
                continue;
            }
            i += 1;
        }
        freed
    }

    fn remove_at(&mut self, mut hole: usize) {
        let n = self.slots.len();
        self.slots[hole] = Slot::default();
        self.header.used = self.header.used.saturating_sub(1);
        let mut j = (hole + 1) % n;
        while self.slots[j].key != 0 {
            let home = (self.slots[j].key as usize) % n;
            // move j into the hole unless its home lies cyclically in (hole, j]
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                self.slots[j] = Slot::default();
                hole = j;
            }
            j = (j + 1) % n;
        }
    }
}

/// FNV-1a over the parts of a counter's identity (stable across processes and reloads).
pub fn counter_key(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xFF]) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Shape = Shape::Window { ms: 1000 };
    const T0: u64 = 1_000_000;

    fn table(slots: &mut Vec<Slot>, header: &mut TableHeader) -> Table<'static> {
        // SAFETY-free trick for tests: leak so the table can be 'static
        let s: &'static mut [Slot] = Box::leak(std::mem::take(slots).into_boxed_slice());
        let h: &'static mut TableHeader = Box::leak(Box::new(*header));
        Table::open(h, s)
    }

    #[test]
    fn lookup_creates_then_finds() {
        let mut t = table(&mut vec![Slot::default(); 16], &mut TableHeader::default());
        let a = t.lookup(counter_key(&[b"ns", b"rpm"]), W, T0).unwrap();
        let b = t.lookup(counter_key(&[b"ns", b"tpm"]), W, T0).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.lookup(a.key, W, T0), Some(a));
        assert_eq!(t.header.used, 2);
        t.get(a).unwrap().add(W, 5);
        assert_eq!(t.get(a).unwrap().used(W), 5);
    }

    #[test]
    fn full_table_expires_idle_slots_then_refuses() {
        let mut t = table(&mut vec![Slot::default(); 8], &mut TableHeader::default());
        // 6 of 8 may be used
        let refs: Vec<SlotRef> = (0..6)
            .map(|k| {
                let r = t.lookup(100 + k * 8, W, T0).unwrap(); // all collide on one home
                t.get(r).unwrap().add(W, 1);
                r
            })
            .collect();
        assert_eq!(t.lookup(999, W, T0), None);
        assert_eq!(t.header.full, 1);
        // two seconds later every window has passed: the slots are reused
        let r = t.lookup(999, W, T0 + 2_000).unwrap();
        assert_eq!(t.header.used, 1);
        assert_eq!(t.get(refs[0]), None);
        assert!(t.get(r).is_some());
    }

    #[test]
    fn removal_keeps_colliding_keys_reachable() {
        let mut t = table(&mut vec![Slot::default(); 16], &mut TableHeader::default());
        let c = Shape::Concurrency;
        // keys 3, 19, 35 share home 3; 4 lands after them
        let keys = [3u64, 19, 35, 4, 20];
        for k in keys {
            let r = t.lookup(k, c, T0).unwrap();
            if k != 19 {
                t.get(r).unwrap().add(c, 1);
            }
        }
        assert_eq!(t.expire(T0), 1);
        for k in [3u64, 35, 4, 20] {
            assert!(t.find(k).is_some(), "{k} lost");
        }
        assert!(t.find(19).is_none());
    }

    #[test]
    fn a_table_of_another_size_is_reset() {
        let mut slots = vec![Slot::default(); 8];
        slots[0].key = 42;
        let mut header = TableHeader {
            magic: MAGIC,
            capacity: 4,
            used: 1,
            full: 0,
        };
        let t = table(&mut slots, &mut header);
        assert_eq!(t.header.used, 0);
        assert!(t.find(42).is_none());
    }
}
