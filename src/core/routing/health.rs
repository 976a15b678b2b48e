//! Passive health of routing targets, kept in a limit-zone slot per target (so every worker
//! sees it): consecutive failures, and a cool-down once they reach the target's
//! `max_failures`, or as long as a provider's `Retry-After` asks. A cooling target is tried
//! last; a success clears its failures.

use super::Target;
use crate::core::policy::slot::{Shape, Slot};
use crate::core::policy::table::counter_key;

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
