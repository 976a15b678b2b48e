//! The metrics store: a header, an open-addressing index and fixed-size entries, all
//! `AtomicU64` words, so the same bytes can be shared by every nginx worker.
//!
//! Layout (words): `[header; HEADER_WORDS] [index; slots] [entry; capacity]`, an entry being
//! `[hash, key length, key; KEY_WORDS, values; VALUE_WORDS]`. Entries are appended under a
//! spin lock and published by a release store of their index slot; lookups and counter
//! updates take no lock. The first `RESERVED_ENTRIES` entries are the overflow series.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::labels::{Key, Kind, KEY_WORDS, OVERFLOW_LABEL};

/// Upper bounds (ms) of the request and upstream duration histogram buckets.
pub const DURATION_BOUNDS_MS: [u64; 15] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000,
];
/// Upper bounds (ns) of the gateway overhead histogram buckets.
pub const OVERHEAD_BOUNDS_NS: [u64; 10] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000,
];

/// "aigwmtr" and the layout version: a zone with another layout is never reused.
const MAGIC: u64 = 0x6169_6777_6d74_7204;

const H_MAGIC: usize = 0;
const H_CAPACITY: usize = 1;
const H_SLOTS: usize = 2;
const H_USED: usize = 3;
const H_LOCK: usize = 4;
const H_MAX_SERIES: usize = 5;
const H_START: usize = 6;
const H_DROPPED: usize = 7;
const H_OVERHEAD: usize = 8;
/// Configuration sync: snapshots applied, the last success (unix ms), errors by reason.
const H_SYNC_APPLIED: usize = H_OVERHEAD + OVERHEAD_BOUNDS_NS.len() + 2;
const H_SYNC_SUCCESS: usize = H_SYNC_APPLIED + 1;
const H_SYNC_ERRORS: usize = H_SYNC_SUCCESS + 1;
/// Error reasons the header has words for.
pub const SYNC_REASONS: usize = 7;
/// Cluster limits: Redis calls by operation and outcome, their duration, breaker openings,
/// requests decided without Redis (`fail_open`, `fail_closed`).
const H_REDIS_CALLS: usize = H_SYNC_ERRORS + SYNC_REASONS;
pub const REDIS_OPS: usize = 5;
pub const REDIS_OUTCOMES: usize = 3;
const H_REDIS_DURATION: usize = H_REDIS_CALLS + REDIS_OPS * REDIS_OUTCOMES;
/// Upper bounds (µs) of the Redis call duration histogram buckets.
pub const REDIS_BOUNDS_US: [u64; 11] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
];
const H_BREAKER_OPENED: usize = H_REDIS_DURATION + REDIS_BOUNDS_US.len() + 2;
const H_DEGRADED: usize = H_BREAKER_OPENED + 1;
/// Usage logs: counters (`LOG_COUNTERS`, see `log_stats`), then gauges (`LOG_GAUGES`).
const H_LOG: usize = H_DEGRADED + 2;
pub const LOG_COUNTERS: usize = 10;
pub const LOG_GAUGES: usize = 3;
const HEADER_WORDS: usize = 80;
const _: () = assert!(H_LOG + LOG_COUNTERS + LOG_GAUGES <= HEADER_WORDS);

/// Words of a histogram: one per bucket, the `+Inf` bucket, the sum.
pub(super) const HIST_WORDS: usize = DURATION_BOUNDS_MS.len() + 2;

const E_HASH: usize = 0;
const E_LEN: usize = 1;
const E_KEY: usize = 2;
const E_VALUES: usize = E_KEY + KEY_WORDS;
const VALUE_WORDS: usize = 22;
const ENTRY_WORDS: usize = E_VALUES + VALUE_WORDS;

/// Request entries: duration histogram (ms), then token counters.
pub(super) const V_DURATION: usize = 0;
pub(super) const V_PROMPT: usize = HIST_WORDS;
pub(super) const V_COMPLETION: usize = HIST_WORDS + 1;
pub(super) const V_USAGE_REQUESTS: usize = HIST_WORDS + 2;
/// Upstream entries: duration histogram of timed attempts, all attempts, retried attempts.
pub(super) const V_ATTEMPTS: usize = HIST_WORDS;
pub(super) const V_RETRIED: usize = HIST_WORDS + 1;
/// In-flight entries: the gauge. Rejection entries: the count.
pub(super) const V_COUNT: usize = 0;
const _: () = assert!(V_USAGE_REQUESTS < VALUE_WORDS && V_RETRIED < VALUE_WORDS);

/// Status classes 0 (none/other), 1xx..5xx; request and upstream overflow series exist per
/// class so success/failure totals stay right when the cap is reached.
const CLASSES: usize = 6;
const OVERFLOW_REQUEST: usize = 0;
const OVERFLOW_UPSTREAM: usize = CLASSES;
const OVERFLOW_REJECTION: usize = 2 * CLASSES;
const OVERFLOW_INFLIGHT: usize = 2 * CLASSES + 1;
const OVERFLOW_DRY_RUN: usize = 2 * CLASSES + 2;
/// Entries set aside for overflow series (not counted in the series cap).
pub const RESERVED_ENTRIES: usize = 2 * CLASSES + 3;

/// Spins before giving up on the insert lock (the sample then goes to an overflow series).
const LOCK_SPINS: u32 = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The memory holds fewer than this many series.
    TooSmall { capacity: usize },
    /// `max_series` above what the memory holds.
    MaxSeries { max: usize, capacity: usize },
    /// Reused memory that does not hold this layout.
    Incompatible,
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::TooSmall { capacity } => {
                write!(f, "is too small (holds {capacity} series)")
            }
            LayoutError::MaxSeries { max, capacity } => {
                write!(
                    f,
                    "holds at most {capacity} series, max_series={max} is too large"
                )
            }
            LayoutError::Incompatible => write!(f, "holds data of another layout"),
        }
    }
}

/// Token usage of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

/// What the log phase records for a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestSample<'a> {
    /// Namespace code, empty when the request was not identified.
    pub namespace: &'a str,
    /// Requested model, empty when none.
    pub model: &'a str,
    /// Final HTTP status (0 when none was sent).
    pub status: u16,
    pub duration_ms: u64,
    pub usage: Option<Usage>,
}

/// One attempt at an upstream.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamAttempt<'a> {
    pub upstream: &'a str,
    pub status: u16,
    /// Time until the attempt ended, when nginx measured it.
    pub duration_ms: Option<u64>,
    /// Another attempt followed this one.
    pub retried: bool,
}

/// A view of the store over shared words.
#[derive(Clone, Copy)]
pub struct Store<'a> {
    w: &'a [AtomicU64],
}

impl<'a> Store<'a> {
    /// The number of entries (overflow ones included) that `words` words hold.
    pub fn capacity(words: usize) -> usize {
        // the largest capacity that fits: words_needed grows with the capacity
        let (mut lo, mut hi) = (0, words / ENTRY_WORDS + 1);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if Self::words_needed(mid) <= words {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Words needed to hold `capacity` entries.
    pub fn words_needed(capacity: usize) -> usize {
        HEADER_WORDS + Self::slots_for(capacity) + capacity * ENTRY_WORDS
    }

    fn slots_for(capacity: usize) -> usize {
        (capacity * 2).next_power_of_two()
    }

    /// Lays out a fresh store over `words` (which it zeroes).
    pub fn create(
        words: &'a [AtomicU64],
        now_secs: u64,
        max_series: Option<usize>,
    ) -> Result<Store<'a>, LayoutError> {
        let capacity = Self::capacity(words.len());
        let max = Self::check_max(capacity, max_series)?;
        for w in words {
            w.store(0, Relaxed);
        }
        let store = Store { w: words };
        store.set(H_CAPACITY, capacity as u64);
        store.set(H_SLOTS, Self::slots_for(capacity) as u64);
        store.set(H_MAX_SERIES, max as u64);
        store.set(H_START, now_secs);
        for class in 0..CLASSES {
            let code = class_label(class);
            store.write_key(
                OVERFLOW_REQUEST + class,
                &Key::new(Kind::Request, &[OVERFLOW_LABEL, OVERFLOW_LABEL, code]),
            );
            store.write_key(
                OVERFLOW_UPSTREAM + class,
                &Key::new(Kind::Upstream, &[OVERFLOW_LABEL, code]),
            );
        }
        store.write_key(
            OVERFLOW_REJECTION,
            &Key::new(Kind::Rejection, &[OVERFLOW_LABEL, OVERFLOW_LABEL]),
        );
        store.write_key(
            OVERFLOW_INFLIGHT,
            &Key::new(Kind::InFlight, &[OVERFLOW_LABEL]),
        );
        store.write_key(
            OVERFLOW_DRY_RUN,
            &Key::new(Kind::DryRun, &[OVERFLOW_LABEL, OVERFLOW_LABEL]),
        );
        store.set(H_USED, RESERVED_ENTRIES as u64);
        store.w[H_MAGIC].store(MAGIC, Release);
        Ok(store)
    }

    /// Attaches to a store laid out earlier over the same words (a reload reusing the zone)
    /// and applies the new `max_series`.
    pub fn attach(
        words: &'a [AtomicU64],
        max_series: Option<usize>,
    ) -> Result<Store<'a>, LayoutError> {
        let store = Store { w: words };
        let capacity = Self::capacity(words.len());
        if words.len() < HEADER_WORDS
            || store.w[H_MAGIC].load(Acquire) != MAGIC
            || store.get(H_CAPACITY) != capacity as u64
            || store.get(H_SLOTS) != Self::slots_for(capacity) as u64
        {
            return Err(LayoutError::Incompatible);
        }
        let max = Self::check_max(capacity, max_series)?;
        store.set(H_MAX_SERIES, max as u64);
        Ok(store)
    }

    /// A store already created in `words` (the worker side: no checks beyond the magic).
    pub fn open(words: &'a [AtomicU64]) -> Option<Store<'a>> {
        (words.len() >= HEADER_WORDS && words[H_MAGIC].load(Acquire) == MAGIC)
            .then_some(Store { w: words })
    }

    fn check_max(capacity: usize, max_series: Option<usize>) -> Result<usize, LayoutError> {
        let room = capacity.saturating_sub(RESERVED_ENTRIES);
        if room == 0 {
            return Err(LayoutError::TooSmall { capacity: room });
        }
        match max_series {
            Some(max) if max > room => Err(LayoutError::MaxSeries {
                max,
                capacity: room,
            }),
            Some(max) => Ok(max),
            None => Ok(room),
        }
    }

    fn get(&self, i: usize) -> u64 {
        self.w[i].load(Relaxed)
    }

    fn set(&self, i: usize, v: u64) {
        self.w[i].store(v, Relaxed)
    }

    /// Series the cap allows (overflow series not included).
    pub fn max_series(&self) -> usize {
        self.get(H_MAX_SERIES) as usize
    }

    /// Series created so far (overflow series not included).
    pub fn series(&self) -> usize {
        (self.w[H_USED].load(Acquire) as usize).saturating_sub(RESERVED_ENTRIES)
    }

    /// Samples recorded into an overflow series because their own could not be created.
    pub fn dropped(&self) -> u64 {
        self.get(H_DROPPED)
    }

    /// When the store was created (unix seconds).
    pub fn start_time(&self) -> u64 {
        self.get(H_START)
    }

    fn entry(&self, e: usize) -> usize {
        HEADER_WORDS + self.get(H_SLOTS) as usize + e * ENTRY_WORDS
    }

    /// The value words of entry `e`.
    pub(super) fn values(&self, e: usize) -> &'a [AtomicU64] {
        let base = self.entry(e) + E_VALUES;
        &self.w[base..base + VALUE_WORDS]
    }

    /// The key words and length of entry `e`.
    pub(super) fn key(&self, e: usize) -> (impl Iterator<Item = u64> + 'a, usize) {
        let base = self.entry(e);
        let len = self.get(base + E_LEN) as usize;
        let words = &self.w[base + E_KEY..base + E_KEY + KEY_WORDS];
        (words.iter().map(|w| w.load(Relaxed)), len)
    }

    /// Entries in use, overflow ones first.
    pub(super) fn used(&self) -> usize {
        self.w[H_USED].load(Acquire) as usize
    }

    fn write_key(&self, e: usize, key: &Key) {
        let base = self.entry(e);
        self.set(base + E_HASH, key.hash);
        self.set(base + E_LEN, key.len as u64);
        for (i, w) in key.words.iter().enumerate() {
            self.set(base + E_KEY + i, *w);
        }
    }

    fn matches(&self, e: usize, key: &Key) -> bool {
        let base = self.entry(e);
        self.get(base + E_HASH) == key.hash
            && self.get(base + E_LEN) == key.len as u64
            && (0..key.used_words()).all(|i| self.get(base + E_KEY + i) == key.words[i])
    }

    fn find(&self, key: &Key) -> Option<usize> {
        let slots = self.get(H_SLOTS) as usize;
        let mask = slots - 1;
        let mut i = key.hash as usize & mask;
        for _ in 0..slots {
            let v = self.w[HEADER_WORDS + i].load(Acquire);
            if v == 0 {
                return None;
            }
            let e = (v - 1) as usize;
            if self.matches(e, key) {
                return Some(e);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The entry of `key`, created if the cap allows, else `overflow` (counted as dropped).
    fn series_entry(&self, key: &Key, overflow: usize) -> usize {
        if let Some(e) = self.find(key) {
            return e;
        }
        if !self.lock() {
            self.w[H_DROPPED].fetch_add(1, Relaxed);
            return overflow;
        }
        let e = self.insert(key).unwrap_or_else(|| {
            self.w[H_DROPPED].fetch_add(1, Relaxed);
            overflow
        });
        self.w[H_LOCK].store(0, Release);
        e
    }

    /// Under the lock: the entry of `key`, appended if there is room.
    fn insert(&self, key: &Key) -> Option<usize> {
        if let Some(e) = self.find(key) {
            return Some(e);
        }
        let used = self.get(H_USED) as usize;
        if used - RESERVED_ENTRIES >= self.max_series() || used >= self.get(H_CAPACITY) as usize {
            return None;
        }
        self.write_key(used, key);
        self.w[H_USED].store(used as u64 + 1, Release);
        let slots = self.get(H_SLOTS) as usize;
        let mask = slots - 1;
        let mut i = key.hash as usize & mask;
        for _ in 0..slots {
            let slot = &self.w[HEADER_WORDS + i];
            if slot.load(Relaxed) == 0 {
                slot.store(used as u64 + 1, Release);
                return Some(used);
            }
            i = (i + 1) & mask;
        }
        // cannot happen: the index has twice as many slots as entries
        Some(used)
    }

    fn lock(&self) -> bool {
        for spin in 0..LOCK_SPINS {
            if self.w[H_LOCK]
                .compare_exchange_weak(0, 1, Acquire, Relaxed)
                .is_ok()
            {
                return true;
            }
            if spin % 64 == 63 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        false
    }

    /// Records a finished request.
    pub fn record_request(&self, s: &RequestSample) {
        let mut buf = [0u8; 3];
        let key = Key::new(
            Kind::Request,
            &[s.namespace, s.model, code_label(s.status, &mut buf)],
        );
        let e = self.series_entry(&key, OVERFLOW_REQUEST + class(s.status));
        let v = self.values(e);
        observe(
            &v[V_DURATION..V_DURATION + HIST_WORDS],
            &DURATION_BOUNDS_MS,
            s.duration_ms,
        );
        if let Some(u) = s.usage {
            add_saturating(&v[V_PROMPT], u.prompt);
            add_saturating(&v[V_COMPLETION], u.completion);
            v[V_USAGE_REQUESTS].fetch_add(1, Relaxed);
        }
    }

    /// Records one upstream attempt.
    pub fn record_upstream(&self, a: &UpstreamAttempt) {
        let mut buf = [0u8; 3];
        let key = Key::new(
            Kind::Upstream,
            &[a.upstream, code_label(a.status, &mut buf)],
        );
        let e = self.series_entry(&key, OVERFLOW_UPSTREAM + class(a.status));
        let v = self.values(e);
        v[V_ATTEMPTS].fetch_add(1, Relaxed);
        if a.retried {
            v[V_RETRIED].fetch_add(1, Relaxed);
        }
        if let Some(ms) = a.duration_ms {
            observe(
                &v[V_DURATION..V_DURATION + HIST_WORDS],
                &DURATION_BOUNDS_MS,
                ms,
            );
        }
    }

    /// Records a request the gateway answered itself.
    pub fn record_rejection(&self, namespace: &str, reason: &str) {
        let key = Key::new(Kind::Rejection, &[namespace, reason]);
        let e = self.series_entry(&key, OVERFLOW_REJECTION);
        self.values(e)[V_COUNT].fetch_add(1, Relaxed);
    }

    /// Records a request a dry-run policy would have refused.
    pub fn record_dry_run(&self, namespace: &str, reason: &str) {
        let key = Key::new(Kind::DryRun, &[namespace, reason]);
        let e = self.series_entry(&key, OVERFLOW_DRY_RUN);
        self.values(e)[V_COUNT].fetch_add(1, Relaxed);
    }

    /// Records time spent in the module for one request.
    pub fn observe_overhead(&self, ns: u64) {
        let words = &self.w[H_OVERHEAD..H_OVERHEAD + OVERHEAD_BOUNDS_NS.len() + 2];
        observe(words, &OVERHEAD_BOUNDS_NS, ns);
    }

    /// The overhead histogram words.
    pub(super) fn overhead(&self) -> &'a [AtomicU64] {
        &self.w[H_OVERHEAD..H_OVERHEAD + OVERHEAD_BOUNDS_NS.len() + 2]
    }

    /// Adds Redis calls (by `op * REDIS_OUTCOMES + outcome`) and their duration histogram
    /// (buckets, `+Inf`, sum) counted elsewhere.
    pub fn redis_add(&self, calls: &[u64], hist: &[u64]) {
        for (i, n) in calls.iter().enumerate().take(REDIS_OPS * REDIS_OUTCOMES) {
            if *n != 0 {
                add_saturating(&self.w[H_REDIS_CALLS + i], *n);
            }
        }
        for (w, n) in self.redis_duration().iter().zip(hist) {
            if *n != 0 {
                add_saturating(w, *n);
            }
        }
    }

    /// Redis calls by `op * REDIS_OUTCOMES + outcome`.
    pub fn redis_calls(&self) -> [u64; REDIS_OPS * REDIS_OUTCOMES] {
        std::array::from_fn(|i| self.get(H_REDIS_CALLS + i))
    }

    /// The Redis call duration histogram words.
    pub(super) fn redis_duration(&self) -> &'a [AtomicU64] {
        &self.w[H_REDIS_DURATION..H_REDIS_DURATION + REDIS_BOUNDS_US.len() + 2]
    }

    /// Adds usage-log counts (`counts[i]` to counter `i`).
    pub fn log_add(&self, counts: &[u64]) {
        for (i, n) in counts.iter().enumerate().take(LOG_COUNTERS) {
            if *n != 0 {
                self.w[H_LOG + i].fetch_add(*n, Relaxed);
            }
        }
    }

    /// Sets usage-log gauge `i`.
    pub fn log_gauge(&self, i: usize, value: u64) {
        if i < LOG_GAUGES {
            self.w[H_LOG + LOG_COUNTERS + i].store(value, Relaxed);
        }
    }

    /// The usage-log counters and gauges.
    pub fn log_counts(&self) -> ([u64; LOG_COUNTERS], [u64; LOG_GAUGES]) {
        (
            std::array::from_fn(|i| self.get(H_LOG + i)),
            std::array::from_fn(|i| self.get(H_LOG + LOG_COUNTERS + i)),
        )
    }

    /// A worker's breaker opened.
    pub fn breaker_opened(&self) {
        self.w[H_BREAKER_OPENED].fetch_add(1, Relaxed);
    }

    /// A request was decided without Redis: limited on this node (`closed` false) or
    /// refused (`closed`).
    pub fn degraded(&self, closed: bool) {
        self.w[H_DEGRADED + usize::from(closed)].fetch_add(1, Relaxed);
    }

    /// Breaker openings, requests decided without Redis (fail_open, fail_closed).
    pub fn cluster_counts(&self) -> (u64, u64, u64) {
        (
            self.get(H_BREAKER_OPENED),
            self.get(H_DEGRADED),
            self.get(H_DEGRADED + 1),
        )
    }

    /// A worker applied a new configuration snapshot.
    pub fn sync_applied(&self) {
        self.w[H_SYNC_APPLIED].fetch_add(1, Relaxed);
    }

    /// A worker found itself current at `unix_ms` (kept: the latest of all workers).
    pub fn sync_success(&self, unix_ms: u64) {
        self.w[H_SYNC_SUCCESS].fetch_max(unix_ms, Relaxed);
    }

    /// A sync step failed with reason `index` (`< SYNC_REASONS`).
    pub fn sync_error(&self, index: usize) {
        if index < SYNC_REASONS {
            self.w[H_SYNC_ERRORS + index].fetch_add(1, Relaxed);
        }
    }

    /// Snapshots applied, the last success (unix ms), errors by reason index.
    pub fn sync_counts(&self) -> (u64, u64, [u64; SYNC_REASONS]) {
        let mut errors = [0; SYNC_REASONS];
        for (i, e) in errors.iter_mut().enumerate() {
            *e = self.get(H_SYNC_ERRORS + i);
        }
        (self.get(H_SYNC_APPLIED), self.get(H_SYNC_SUCCESS), errors)
    }

    /// A request of `namespace` starts; returns the entry to pass to [`Store::inflight_leave`].
    pub fn inflight_enter(&self, namespace: &str) -> usize {
        let key = Key::new(Kind::InFlight, &[namespace]);
        let e = self.series_entry(&key, OVERFLOW_INFLIGHT);
        self.values(e)[V_COUNT].fetch_add(1, Relaxed);
        e
    }

    /// The request that entered with `entry` has ended.
    pub fn inflight_leave(&self, entry: usize) {
        if entry < self.used() {
            self.values(entry)[V_COUNT].fetch_sub(1, Relaxed);
        }
    }
}

/// Adds `v` to the histogram `words` (buckets by `bounds`, then `+Inf`, then the sum).
fn observe(words: &[AtomicU64], bounds: &[u64], v: u64) {
    let bucket = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
    words[bucket].fetch_add(1, Relaxed);
    add_saturating(&words[bounds.len() + 1], v);
}

/// Adds `v`, stopping at `u64::MAX`: a counter never wraps (and so never goes down).
fn add_saturating(a: &AtomicU64, v: u64) {
    let _ = a.fetch_update(Relaxed, Relaxed, |c| Some(c.saturating_add(v)));
}

fn class(status: u16) -> usize {
    match status / 100 {
        c @ 1..=5 => c as usize,
        _ => 0,
    }
}

fn class_label(class: usize) -> &'static str {
    ["_overflow", "1xx", "2xx", "3xx", "4xx", "5xx"][class % CLASSES]
}

/// `status` as decimal text (statuses are below 1000).
fn code_label(status: u16, buf: &mut [u8; 3]) -> &str {
    let status = status.min(999);
    let digits = match status {
        0..=9 => 1,
        10..=99 => 2,
        _ => 3,
    };
    let mut n = status;
    for i in (0..digits).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    std::str::from_utf8(&buf[..digits]).unwrap_or("0")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn memory(words: usize) -> Vec<AtomicU64> {
        (0..words).map(|_| AtomicU64::new(0xdead_beef)).collect()
    }

    fn sample<'a>(ns: &'a str, model: &'a str, status: u16, ms: u64) -> RequestSample<'a> {
        RequestSample {
            namespace: ns,
            model,
            status,
            duration_ms: ms,
            usage: None,
        }
    }

    fn count(store: &Store, e: usize) -> u64 {
        store.values(e)[V_DURATION..V_DURATION + DURATION_BOUNDS_MS.len() + 1]
            .iter()
            .map(|w| w.load(Relaxed))
            .sum()
    }

    #[test]
    fn capacity_fits_the_memory() {
        for words in [100, 4096, 131_072, 1_000_003] {
            let cap = Store::capacity(words);
            assert!(Store::words_needed(cap) <= words);
            assert!(Store::words_needed(cap + 1) > words || cap == 0);
        }
        let mem = memory(100);
        assert!(matches!(
            Store::create(&mem, 0, None),
            Err(LayoutError::TooSmall { .. })
        ));
    }

    #[test]
    fn series_are_found_again_and_counted() {
        let mem = memory(Store::words_needed(64));
        let store = Store::create(&mem, 1000, None).expect("fits");
        assert_eq!(store.max_series(), 64 - RESERVED_ENTRIES);
        assert_eq!(store.start_time(), 1000);
        store.record_request(&sample("a", "m", 200, 3));
        store.record_request(&sample("a", "m", 200, 7));
        store.record_request(&sample("a", "m", 404, 7));
        store.record_request(&sample("b", "m", 200, 400_000));
        assert_eq!(store.series(), 3);
        let e = store
            .find(&Key::new(Kind::Request, &["a", "m", "200"]))
            .expect("exists");
        assert_eq!(count(&store, e), 2);
        let v = store.values(e);
        assert_eq!(v[0].load(Relaxed), 1, "3 ms in le=5");
        assert_eq!(v[1].load(Relaxed), 1, "7 ms in le=10");
        assert_eq!(v[HIST_WORDS - 1].load(Relaxed), 10, "sum");
        let e = store
            .find(&Key::new(Kind::Request, &["b", "m", "200"]))
            .expect("exists");
        assert_eq!(
            store.values(e)[DURATION_BOUNDS_MS.len()].load(Relaxed),
            1,
            "+Inf"
        );
        assert_eq!(store.dropped(), 0);
    }

    #[test]
    fn token_counters_saturate_instead_of_wrapping() {
        let mem = memory(Store::words_needed(64));
        let store = Store::create(&mem, 0, None).expect("fits");
        let usage = Some(Usage {
            prompt: u64::MAX - 1,
            completion: 3,
        });
        for _ in 0..2 {
            store.record_request(&RequestSample {
                usage,
                ..sample("a", "m", 200, u64::MAX)
            });
        }
        let e = store
            .find(&Key::new(Kind::Request, &["a", "m", "200"]))
            .expect("exists");
        let v = store.values(e);
        assert_eq!(v[V_PROMPT].load(Relaxed), u64::MAX);
        assert_eq!(v[V_COMPLETION].load(Relaxed), 6);
        assert_eq!(v[HIST_WORDS - 1].load(Relaxed), u64::MAX, "duration sum");
    }

    #[test]
    fn the_cap_folds_new_series_into_overflow() {
        let mem = memory(Store::words_needed(64));
        let store = Store::create(&mem, 0, Some(3)).expect("fits");
        for i in 0..10 {
            store.record_request(&sample("a", &format!("m{i}"), 200, 1));
        }
        store.record_request(&sample("a", "m0", 503, 1));
        assert_eq!(store.series(), 3);
        assert_eq!(store.dropped(), 8);
        assert_eq!(count(&store, OVERFLOW_REQUEST + 2), 7);
        assert_eq!(count(&store, OVERFLOW_REQUEST + 5), 1);
        // existing series keep counting
        store.record_request(&sample("a", "m1", 200, 1));
        assert_eq!(store.dropped(), 8);
    }

    #[test]
    fn a_lower_cap_on_reload_keeps_the_series_it_already_has() {
        let mem = memory(Store::words_needed(64));
        let store = Store::create(&mem, 0, None).expect("fits");
        for i in 0..3 {
            store.record_request(&sample("a", &format!("m{i}"), 200, 1));
        }
        let again = Store::attach(&mem, Some(1)).expect("same layout");
        assert_eq!(again.series(), 3);
        again.record_request(&sample("a", "m2", 200, 1));
        assert_eq!(again.dropped(), 0, "an existing series keeps counting");
        let e = again
            .find(&Key::new(Kind::Request, &["a", "m2", "200"]))
            .expect("exists");
        assert_eq!(count(&again, e), 2);
        again.record_request(&sample("a", "m9", 200, 1));
        assert_eq!(again.dropped(), 1, "a new label set goes to overflow");
        assert_eq!(again.series(), 3);
        assert_eq!(count(&again, OVERFLOW_REQUEST + 2), 1);
    }

    #[test]
    fn attach_keeps_data_and_takes_a_new_cap() {
        let mem = memory(Store::words_needed(64));
        let store = Store::create(&mem, 5, None).expect("fits");
        store.record_rejection("a", "invalid_api_key");
        let again = Store::attach(&mem, Some(10)).expect("same layout");
        assert_eq!(again.max_series(), 10);
        assert_eq!(again.series(), 1);
        assert_eq!(again.start_time(), 5);
        assert!(matches!(
            Store::attach(&mem, Some(1000)),
            Err(LayoutError::MaxSeries { .. })
        ));
        let other = memory(Store::words_needed(64));
        assert_eq!(
            Store::attach(&other, None).err(),
            Some(LayoutError::Incompatible)
        );
        assert!(Store::open(&other).is_none());
        assert!(Store::open(&mem).is_some());
    }

    #[test]
    fn inflight_enters_and_leaves() {
        let mem = memory(Store::words_needed(32));
        let store = Store::create(&mem, 0, None).expect("fits");
        let a = store.inflight_enter("a");
        let b = store.inflight_enter("a");
        assert_eq!(a, b);
        assert_eq!(store.values(a)[V_COUNT].load(Relaxed), 2);
        store.inflight_leave(a);
        store.inflight_leave(b);
        assert_eq!(store.values(a)[V_COUNT].load(Relaxed), 0);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let mem = memory(Store::words_needed(256));
        let store = Store::create(&mem, 0, None).expect("fits");
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for i in 0..5_000u64 {
                        let model = format!("m{}", (i + t) % 50);
                        store.record_request(&sample("ns", &model, 200, i % 700));
                    }
                });
            }
        });
        assert_eq!(store.series(), 50);
        let total: u64 = (RESERVED_ENTRIES..store.used())
            .map(|e| count(&store, e))
            .sum();
        assert_eq!(total, 20_000);
        assert_eq!(store.dropped(), 0);
    }

    #[test]
    fn codes_render_as_decimal() {
        let mut buf = [0u8; 3];
        assert_eq!(code_label(0, &mut buf), "0");
        assert_eq!(code_label(99, &mut buf), "99");
        assert_eq!(code_label(200, &mut buf), "200");
        assert_eq!(code_label(4999, &mut buf), "999");
        assert_eq!(class(499), 4);
        assert_eq!(class(0), 0);
        assert_eq!(class(600), 0);
    }
}
