//! Usage-log counts made where they happen (the log phase, the worker's runtime) and moved
//! into the metrics zone by the nginx thread now and then ([`LogStats::drain_into`]), as
//! `redis_stats` does for Redis calls.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use super::store::{Store, LOG_COUNTERS, LOG_GAUGES};

/// The counters, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Put into the worker's buffer.
    Queued,
    ShippedRedis,
    ShippedMysql,
    /// Written to the local spool (Redis or MySQL unreachable, or the stream full).
    Spooled,
    /// Read back from the spool and shipped.
    Replayed,
    /// Rows this node's ingestor inserted.
    Ingested,
    /// Records the ingestor found already inserted (a replay, a batch sent twice).
    Duplicates,
    DroppedBuffer,
    DroppedSpool,
    DroppedInvalid,
}

pub const COUNT_NAMES: [&str; LOG_COUNTERS] = [
    "queued",
    "shipped_redis",
    "shipped_mysql",
    "spooled",
    "replayed",
    "ingested",
    "duplicates",
    "buffer_full",
    "spool_full",
    "invalid",
];

/// The gauges, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gauge {
    /// Age of the oldest record waiting in the stream (ms), as the ingestor last saw it.
    LagMs,
    /// Bytes in the node's spool directory.
    SpoolBytes,
    /// 1 while this node holds the ingestor lease.
    Ingestor,
}

pub struct LogStats {
    counts: [AtomicU64; LOG_COUNTERS],
    /// `u64::MAX`: not set since the last drain.
    gauges: [AtomicU64; LOG_GAUGES],
}

impl Default for LogStats {
    fn default() -> Self {
        Self::new()
    }
}

impl LogStats {
    pub const fn new() -> LogStats {
        LogStats {
            counts: [const { AtomicU64::new(0) }; LOG_COUNTERS],
            gauges: [const { AtomicU64::new(u64::MAX) }; LOG_GAUGES],
        }
    }

    pub fn add(&self, c: Count, n: u64) {
        self.counts[c as usize].fetch_add(n, Relaxed);
    }

    pub fn set(&self, g: Gauge, value: u64) {
        self.gauges[g as usize].store(value.min(u64::MAX - 1), Relaxed);
    }

    /// Moves what was counted into the store; gauges set since the last drain replace the
    /// store's.
    pub fn drain_into(&self, store: &Store) {
        let counts: [u64; LOG_COUNTERS] = std::array::from_fn(|i| self.counts[i].swap(0, Relaxed));
        if counts.iter().any(|n| *n != 0) {
            store.log_add(&counts);
        }
        for (i, g) in self.gauges.iter().enumerate() {
            let v = g.swap(u64::MAX, Relaxed);
            if v != u64::MAX {
                store.log_gauge(i, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::tests::memory;
    use super::*;

    #[test]
    fn counts_reach_the_store_once_and_gauges_keep_their_last_value() {
        let words = memory(Store::words_needed(64));
        let store = Store::create(&words, 0, None).unwrap();
        let stats = LogStats::new();
        stats.add(Count::Queued, 3);
        stats.add(Count::DroppedSpool, 2);
        stats.set(Gauge::LagMs, 1500);
        stats.drain_into(&store);
        stats.drain_into(&store);
        let (c, g) = store.log_counts();
        assert_eq!(
            (c[Count::Queued as usize], c[Count::DroppedSpool as usize]),
            (3, 2)
        );
        assert_eq!(c.iter().sum::<u64>(), 5);
        assert_eq!(
            g[Gauge::LagMs as usize],
            1500,
            "an unset gauge keeps its value"
        );
        stats.set(Gauge::LagMs, 0);
        stats.drain_into(&store);
        assert_eq!(store.log_counts().1[Gauge::LagMs as usize], 0);
    }
}
