//! The latency histogram of the usage aggregates: every aggregate row counts its requests
//! in fixed buckets of latency, the usage API sums the counts of the rows it reads (in SQL)
//! and estimates percentiles from them.
//!
//! Bucket `i` counts the latencies above `BOUNDS_MS[i - 1]` (0 for the first) and at most
//! `BOUNDS_MS[i]`; the last bucket counts those above 120 s. The bounds follow what a chat
//! completion takes: tens of milliseconds for a refusal or a cache, seconds for an answer,
//! minutes for a long stream.

/// Upper bounds (inclusive) of the buckets but the last, in milliseconds.
pub const BOUNDS_MS: [u64; 11] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000,
];

/// How many buckets: one per bound and one above the last.
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// Requests per bucket.
pub type Histogram = [u64; BUCKETS];

/// The aggregate tables' columns of the buckets, in order (BIGINT UNSIGNED, 0 by default:
/// rows written before the histogram existed count no request in it).
pub const COLUMNS: [&str; BUCKETS] = [
    "latency_le_50",
    "latency_le_100",
    "latency_le_250",
    "latency_le_500",
    "latency_le_1000",
    "latency_le_2500",
    "latency_le_5000",
    "latency_le_10000",
    "latency_le_30000",
    "latency_le_60000",
    "latency_le_120000",
    "latency_gt_120000",
];

/// The bucket of a latency.
pub fn bucket(ms: u64) -> usize {
    BOUNDS_MS.partition_point(|b| *b < ms)
}

/// The latency below which `fraction` (0 to 1) of the counted requests fall, estimated by
/// linear interpolation inside the bucket where that rank is (the last bucket reaches up to
/// `max_ms`), and never above `max_ms`, the largest latency seen. `None` when the histogram
/// counts no request (empty, or rows older than the histogram).
pub fn percentile(h: &Histogram, fraction: f64, max_ms: u64) -> Option<u64> {
    let total = h.iter().fold(0u64, |a, n| a.saturating_add(*n));
    if total == 0 {
        return None;
    }
    let rank = total as f64 * fraction.clamp(0.0, 1.0);
    let mut below = 0u64;
    for (i, &n) in h.iter().enumerate() {
        if n == 0 {
            continue;
        }
        if (below.saturating_add(n)) as f64 >= rank {
            let lo = if i == 0 { 0 } else { BOUNDS_MS[i - 1] };
            let hi = BOUNDS_MS.get(i).copied().unwrap_or(max_ms).max(lo);
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            let estimate = lo as f64 + (hi - lo) as f64 * within;
            return Some((estimate.round() as u64).min(max_ms));
        }
        below = below.saturating_add(n);
    }
    Some(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_bucket() {
        assert_eq!(COLUMNS.len(), BUCKETS);
        for (ms, want) in [
            (0, 0),
            (50, 0),
            (51, 1),
            (100, 1),
            (101, 2),
            (999, 4),
            (1_000, 4),
            (1_001, 5),
            (120_000, 10),
            (120_001, 11),
            (u64::from(u32::MAX), 11),
        ] {
            assert_eq!(bucket(ms), want, "{ms} ms");
        }
        // every bound is the top of its own bucket, and its column says so
        for (i, b) in BOUNDS_MS.iter().enumerate() {
            assert_eq!(bucket(*b), i);
            assert_eq!(COLUMNS[i], format!("latency_le_{b}"));
        }
        assert_eq!(COLUMNS[BUCKETS - 1], "latency_gt_120000");
    }

    fn hist(counts: &[(usize, u64)]) -> Histogram {
        let mut h = Histogram::default();
        for (i, n) in counts {
            h[*i] = *n;
        }
        h
    }

    #[test]
    fn percentiles_interpolate_inside_the_bucket() {
        // nothing counted (no request, or rows from before the histogram): no estimate, not 0
        assert_eq!(percentile(&Histogram::default(), 0.5, 0), None);
        assert_eq!(percentile(&Histogram::default(), 0.95, 800), None);
        // 10 requests in 250-500 ms: the median half-way, p95 near the top
        let h = hist(&[(3, 10)]);
        assert_eq!(percentile(&h, 0.5, 500), Some(375));
        assert_eq!(percentile(&h, 0.95, 500), Some(488));
        // ... but never above the largest latency seen
        assert_eq!(percentile(&h, 0.95, 300), Some(300));
        // 90 fast, 10 slow: the median among the fast, p95 half-way into the slow bucket
        let h = hist(&[(0, 90), (5, 10)]);
        assert_eq!(percentile(&h, 0.5, 2_400), Some(28));
        assert_eq!(percentile(&h, 0.95, 2_400), Some(1_750));
        // the last bucket reaches up to the maximum
        let h = hist(&[(11, 4)]);
        assert_eq!(percentile(&h, 0.5, 200_000), Some(160_000));
        assert_eq!(percentile(&h, 1.0, 200_000), Some(200_000));
        // one request: within its bucket, at most its latency
        let h = hist(&[(0, 1)]);
        assert_eq!(percentile(&h, 0.5, 3), Some(3));
        assert_eq!(percentile(&h, 0.5, 0), Some(0));
    }

    #[test]
    fn p50_is_never_above_p95_nor_p95_above_the_max() {
        let mut seed = 7u64;
        for _ in 0..2_000 {
            let mut h = Histogram::default();
            let mut max = 0;
            for _ in 0..(seed % 40) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let ms = (seed >> 33) % 200_000;
                h[bucket(ms)] += 1;
                max = max.max(ms);
            }
            let p50 = percentile(&h, 0.5, max);
            let p95 = percentile(&h, 0.95, max);
            assert_eq!(p50.is_some(), h.iter().any(|n| *n > 0));
            if let (Some(a), Some(b)) = (p50, p95) {
                assert!(a <= b && b <= max, "{h:?}: {a} {b} {max}");
            }
        }
    }
}
