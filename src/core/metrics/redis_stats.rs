//! Redis calls counted where they happen (the worker's runtime threads, which never touch
//! the shared metrics zone) and moved into the zone by the nginx thread now and then
//! ([`RedisStats::drain_into`]): no wake-up of nginx per call.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use super::store::{Store, REDIS_BOUNDS_US, REDIS_OPS, REDIS_OUTCOMES};

const CALLS: usize = REDIS_OPS * REDIS_OUTCOMES;
/// Buckets, `+Inf`, the sum (µs).
const HIST: usize = REDIS_BOUNDS_US.len() + 2;

/// Calls by operation and outcome, and their duration histogram, since the last drain.
pub struct RedisStats {
    calls: [AtomicU64; CALLS],
    hist: [AtomicU64; HIST],
}

impl Default for RedisStats {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisStats {
    pub const fn new() -> RedisStats {
        RedisStats {
            calls: [const { AtomicU64::new(0) }; CALLS],
            hist: [const { AtomicU64::new(0) }; HIST],
        }
    }

    /// A call (`op` < `REDIS_OPS`, `outcome` < `REDIS_OUTCOMES`) that took `micros`.
    pub fn record(&self, op: usize, outcome: usize, micros: u64) {
        if op < REDIS_OPS && outcome < REDIS_OUTCOMES {
            self.calls[op * REDIS_OUTCOMES + outcome].fetch_add(1, Relaxed);
        }
        let b = REDIS_BOUNDS_US
            .iter()
            .position(|b| micros <= *b)
            .unwrap_or(REDIS_BOUNDS_US.len());
        self.hist[b].fetch_add(1, Relaxed);
        self.hist[HIST - 1].fetch_add(micros, Relaxed);
    }

    /// Moves what was counted into the store.
    pub fn drain_into(&self, store: &Store) {
        let calls: [u64; CALLS] = std::array::from_fn(|i| self.calls[i].swap(0, Relaxed));
        let hist: [u64; HIST] = std::array::from_fn(|i| self.hist[i].swap(0, Relaxed));
        if calls.iter().any(|n| *n != 0) || hist.iter().any(|n| *n != 0) {
            store.redis_add(&calls, &hist);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::tests::memory;
    use super::*;

    #[test]
    fn drained_counts_reach_the_store_once() {
        let words = memory(Store::words_needed(64));
        let store = Store::create(&words, 0, None).unwrap();
        let stats = RedisStats::new();
        stats.record(0, 0, 150);
        stats.record(0, 2, 100_000);
        stats.record(4, 0, 90);
        stats.drain_into(&store);
        stats.drain_into(&store);
        let calls = store.redis_calls();
        assert_eq!(calls[0], 1);
        assert_eq!(calls[2], 1);
        assert_eq!(calls[4 * REDIS_OUTCOMES], 1);
        assert_eq!(calls.iter().sum::<u64>(), 3);
    }
}
