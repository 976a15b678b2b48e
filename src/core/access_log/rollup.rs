//! Usage aggregates of a batch of records (by minute, hour or day): one row per bucket ×
//! namespace × key × model × target × status class, with requests, errors, tokens by type,
//! latency sum/max and the latency histogram ([`super::latency`]). Rows come out sorted by key, so every writer updates them in the
//! same order (no deadlock between two writers of the same rows).

use std::collections::BTreeMap;

use super::latency::{bucket, Histogram};
use super::record::Record;

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 86_400_000;
/// How long the minute aggregates are kept (and the longest range the API reads of them).
pub const MINUTES_KEPT_MS: u64 = 2 * DAY_MS;

/// The first minute (unix minutes) that the minute aggregates keep at `now_ms`.
pub fn minutes_kept_from(now_ms: u64) -> u64 {
    now_ms.saturating_sub(MINUTES_KEPT_MS) / MINUTE_MS
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RollupKey {
    /// Unix minutes, hours or days.
    pub bucket: u64,
    pub namespace: String,
    pub key_id: String,
    pub model: String,
    pub target: String,
    pub class: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    pub requests: u64,
    pub errors: u64,
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub reasoning: u64,
    pub latency_sum: u64,
    pub latency_max: u64,
    /// Requests per latency bucket.
    pub latency: Histogram,
}

impl Sums {
    pub fn add(&mut self, r: &Record) {
        self.requests += 1;
        self.errors += u64::from(r.is_error());
        let t = &r.tokens;
        self.prompt = self.prompt.saturating_add(t.prompt.unwrap_or(0));
        self.completion = self.completion.saturating_add(t.completion.unwrap_or(0));
        self.cached = self.cached.saturating_add(t.cached.unwrap_or(0));
        self.reasoning = self.reasoning.saturating_add(t.reasoning.unwrap_or(0));
        self.latency_sum = self.latency_sum.saturating_add(u64::from(r.latency_ms));
        self.latency_max = self.latency_max.max(u64::from(r.latency_ms));
        self.latency[bucket(u64::from(r.latency_ms))] += 1;
    }
}

/// The aggregates of `records` in buckets of `bucket_ms`; `summary`: by namespace and
/// model alone (key, target and class left empty).
pub fn rollup<'r>(
    records: impl IntoIterator<Item = &'r Record<'r>>,
    bucket_ms: u64,
    summary: bool,
) -> BTreeMap<RollupKey, Sums> {
    let mut rows: BTreeMap<RollupKey, Sums> = BTreeMap::new();
    for r in records {
        let full = |s: &str| {
            if summary {
                String::new()
            } else {
                s.to_string()
            }
        };
        let key = RollupKey {
            bucket: r.ts_ms / bucket_ms.max(1),
            namespace: r.namespace.to_string(),
            key_id: full(&r.key_id),
            model: r.model.to_string(),
            target: full(&r.target),
            class: if summary { 0 } else { r.status_class() },
        };
        rows.entry(key).or_default().add(r);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::super::record::Tokens;
    use super::*;

    fn rec(ts_ms: u64, ns: &str, status: u16, prompt: u64, latency: u32) -> Record<'static> {
        Record {
            request_id: format!("{ts_ms}{ns}").into(),
            ts_ms,
            namespace: ns.to_string().into(),
            status,
            latency_ms: latency,
            tokens: Tokens {
                prompt: Some(prompt),
                completion: Some(1),
                cached: None,
                reasoning: Some(2),
            },
            ..Default::default()
        }
    }

    #[test]
    fn records_fall_in_their_hour_namespace_and_class() {
        let h = 500_000 * HOUR_MS;
        let recs = [
            rec(h + 1, "a", 200, 10, 100),
            rec(h + 2, "a", 201, 5, 300),
            rec(h + 3, "a", 429, 7, 1),
            rec(h + HOUR_MS, "a", 200, 1, 1),
            rec(h + 5, "b", 200, 1, 1),
        ];
        let rows = rollup(&recs, HOUR_MS, false);
        assert_eq!(rows.len(), 4);
        let (k, s) = rows.iter().next().unwrap();
        assert_eq!((k.bucket, k.namespace.as_str(), k.class), (500_000, "a", 2));
        assert_eq!(
            *s,
            Sums {
                requests: 2,
                errors: 0,
                prompt: 15,
                completion: 2,
                cached: 0,
                reasoning: 4,
                latency_sum: 400,
                latency_max: 300,
                latency: [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            }
        );
        let four = rows.iter().find(|(k, _)| k.class == 4).unwrap().1;
        assert_eq!((four.requests, four.errors), (1, 1));
        let daily = rollup(&recs, DAY_MS, false);
        let total: u64 = daily.values().map(|s| s.requests).sum();
        assert_eq!((daily.len(), total), (3, 5));
        // the summary: one row per hour, namespace and model, whatever the class
        let summary = rollup(&recs, HOUR_MS, true);
        assert_eq!(summary.len(), 3);
        let a = summary.values().next().unwrap();
        assert_eq!((a.requests, a.errors, a.prompt), (3, 1, 22));
        // sorted by key: bucket first
        let buckets: Vec<u64> = rows.keys().map(|k| k.bucket).collect();
        let mut sorted = buckets.clone();
        sorted.sort();
        assert_eq!(buckets, sorted);
        // by minute: a's first three share their minute; every request is in a histogram
        let minutes = rollup(&recs, MINUTE_MS, true);
        let total: u64 = minutes
            .values()
            .map(|s| s.latency.iter().sum::<u64>())
            .sum();
        assert_eq!((minutes.len(), total), (3, 5));
    }

    #[test]
    fn minutes_are_kept_two_days() {
        let now = 1_796_000_000_000;
        assert_eq!(minutes_kept_from(now), (now - 2 * DAY_MS) / MINUTE_MS);
        assert_eq!(minutes_kept_from(1_000), 0);
    }
}
