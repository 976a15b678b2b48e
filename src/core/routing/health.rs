//! Passive health of routing targets, kept in a limit-zone slot per target (so every worker
//! sees it): consecutive failures, and a cool-down once they reach the target's
//! `max_failures`, or as long as a provider's `Retry-After` asks. A cooling target is tried
//! last; a success clears its failures. [`targets_health`] reads it for the workers'
//! status and heartbeats.

use super::Target;
use crate::core::admin::clock::format_ms;
use crate::core::policy::slot::{Shape, Slot};
use crate::core::policy::table::{counter_key, Table};

/// The slot key of a target's health.
pub fn health_key(target: &Target) -> u64 {
    counter_key(&[b"health", target.name.as_bytes()])
}

/// Whether the target is cooling down at `now_ms`.
pub fn is_cooling(slot: &Slot, now_ms: u64) -> bool {
    slot.shape == Shape::Health.code() && slot.counts[1] > now_ms
}

/// Records a failed attempt. Returns the cool-down (ms) it started, if any.
pub fn record_failure(
    slot: &mut Slot,
    target: &Target,
    now_ms: u64,
    retry_after_ms: Option<u64>,
) -> Option<u64> {
    slot.advance(Shape::Health, now_ms);
    slot.counts[0] = slot.counts[0].saturating_add(1);
    let by_failures = (slot.counts[0] >= target.max_failures as u64).then_some(target.cooldown_ms);
    let cool = match (by_failures, retry_after_ms) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }?;
    let until = now_ms.saturating_add(cool);
    if until > slot.counts[1] {
        slot.counts[1] = until;
    }
    // counting starts again once the cool-down ends
    slot.counts[0] = 0;
    Some(cool)
}

/// Records a successful attempt.
pub fn record_success(slot: &mut Slot, now_ms: u64) {
    slot.advance(Shape::Health, now_ms);
    slot.counts[0] = 0;
}

/// What the status reports of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    /// No consecutive failure.
    Healthy,
    /// Failed lately, not (yet) cooling down.
    Failing,
    /// Cooling down: tried last until `cooling_until_ms`.
    Cooling,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Failing => "failing",
            HealthState::Cooling => "cooling",
        }
    }
}

/// One target's passive health at a point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetHealth {
    pub target: String,
    pub state: HealthState,
    /// Consecutive failed attempts (counting starts again when a cool-down starts).
    pub failures: u64,
    /// The end of the cool-down (ms since the epoch), while cooling.
    pub cooling_until_ms: Option<u64>,
}

impl TargetHealth {
    /// What the target's health slot says at `now_ms` (no slot, or a slot that counts
    /// something else: nothing recorded, healthy).
    pub fn of(target: &Target, slot: Option<&Slot>, now_ms: u64) -> TargetHealth {
        let slot = slot.filter(|s| s.shape == Shape::Health.code());
        let failures = slot.map_or(0, |s| s.counts[0]);
        let cooling_until_ms = slot.filter(|s| is_cooling(s, now_ms)).map(|s| s.counts[1]);
        let state = match (cooling_until_ms, failures) {
            (Some(_), _) => HealthState::Cooling,
            (None, 0) => HealthState::Healthy,
            (None, _) => HealthState::Failing,
        };
        TargetHealth {
            target: target.name.clone(),
            state,
            failures,
            cooling_until_ms,
        }
    }

    /// `{"target", "state", "failures", "cooling_until"}` (RFC 3339 UTC, or null).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "target": self.target,
            "state": self.state.as_str(),
            "failures": self.failures,
            "cooling_until": self.cooling_until_ms.map(|ms| format_ms(ms as i64)),
        })
    }
}

/// The health of every target of `targets` (in their order), from the table: one lookup
/// each, nothing written.
pub fn targets_health(table: &mut Table, targets: &[Target], now_ms: u64) -> Vec<TargetHealth> {
    targets
        .iter()
        .map(|t| {
            let slot = table.find(health_key(t)).and_then(|r| table.get(r));
            TargetHealth::of(t, slot.as_deref(), now_ms)
        })
        .collect()
}

/// A worker's view of its targets' health, read at `at_ms` (0: never read). `targets` is
/// `None` without a limit zone (no passive health), empty without targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthView {
    pub at_ms: u64,
    pub targets: Option<Vec<TargetHealth>>,
}

impl HealthView {
    /// The `targets` list of a status (null without a limit zone).
    pub fn targets_json(&self) -> serde_json::Value {
        self.targets.as_ref().map_or(serde_json::Value::Null, |ts| {
            ts.iter().map(TargetHealth::to_json).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::TableHeader;
    use crate::core::routing::parse_routing;
    use serde_json::json;

    fn targets() -> Vec<Target> {
        let targets = [
            json!({"name": "a", "provider": "openai", "base_url": "http://a",
                   "max_failures": 2, "cooldown": "10s"}),
            json!({"name": "b", "provider": "openai", "base_url": "http://b"}),
        ];
        parse_routing(&targets, &[], &[]).unwrap().targets
    }

    #[test]
    fn a_slot_reads_as_healthy_failing_or_cooling() {
        let ts = targets();
        let t = &ts[0];
        let t0 = 1_796_601_600_000; // 2026-12-07T00:00:00Z
        assert_eq!(
            TargetHealth::of(t, None, t0),
            TargetHealth {
                target: "a".into(),
                state: HealthState::Healthy,
                failures: 0,
                cooling_until_ms: None
            }
        );
        let mut slot = Slot::new(health_key(t), Shape::Health, t0);
        let h = TargetHealth::of(t, Some(&slot), t0);
        assert_eq!((h.state, h.failures), (HealthState::Healthy, 0));
        record_failure(&mut slot, t, t0, None);
        let h = TargetHealth::of(t, Some(&slot), t0);
        assert_eq!((h.state, h.failures), (HealthState::Failing, 1));
        assert_eq!(h.cooling_until_ms, None);
        record_failure(&mut slot, t, t0 + 1, None);
        let h = TargetHealth::of(t, Some(&slot), t0 + 2);
        assert_eq!(h.state, HealthState::Cooling);
        assert_eq!(h.cooling_until_ms, Some(t0 + 10_001));
        assert_eq!(h.failures, 0, "counting starts again with the cool-down");
        assert_eq!(
            h.to_json(),
            json!({"target": "a", "state": "cooling", "failures": 0,
                   "cooling_until": "2026-12-07T00:00:10.001Z"})
        );
        // a failure while cooling (every other target failed too) is counted
        record_failure(&mut slot, t, t0 + 3, None);
        let h = TargetHealth::of(t, Some(&slot), t0 + 3);
        assert_eq!((h.state, h.failures), (HealthState::Cooling, 1));
        // the cool-down's end is not cooling any more
        let h = TargetHealth::of(t, Some(&slot), t0 + 10_001);
        assert_eq!((h.state, h.failures), (HealthState::Failing, 1));
        record_success(&mut slot, t0 + 10_002);
        let h = TargetHealth::of(t, Some(&slot), t0 + 10_002);
        assert_eq!(h.to_json()["state"], "healthy");
        assert_eq!(h.to_json()["cooling_until"], json!(null));
        // a slot that counts something else says nothing about health
        let mut other = Slot::new(health_key(t), Shape::Concurrency, t0);
        other.counts = [7; 21];
        assert_eq!(
            TargetHealth::of(t, Some(&other), t0).state,
            HealthState::Healthy
        );
    }

    #[test]
    fn every_target_is_read_from_the_table_in_order() {
        let ts = targets();
        let mut header = TableHeader::default();
        let mut slots = vec![Slot::default(); 16];
        let mut table = Table::open(&mut header, &mut slots);
        let now = 5_000_000;
        let r = table
            .lookup(health_key(&ts[1]), Shape::Health, now)
            .unwrap();
        record_failure(table.get(r).unwrap(), &ts[1], now, Some(30_000));
        let read = targets_health(&mut table, &ts, now + 1);
        let states: Vec<_> = read.iter().map(|h| (h.target.as_str(), h.state)).collect();
        assert_eq!(
            states,
            [("a", HealthState::Healthy), ("b", HealthState::Cooling)]
        );
        assert_eq!(read[1].cooling_until_ms, Some(now + 30_000));
        assert_eq!(table.header.used, 1, "reading creates no slot");
        assert!(targets_health(&mut table, &[], now).is_empty());
        let view = HealthView {
            at_ms: now,
            targets: Some(read),
        };
        assert_eq!(view.targets_json()[1]["state"], "cooling");
        assert_eq!(HealthView::default().targets_json(), json!(null));
    }
}
