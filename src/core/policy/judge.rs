//! One counter's verdict on one charge, the same for the zone's counters, approximate
//! counters and the counters Redis answers with: the rate-limit gauge for OpenAI's headers,
//! and the denial (with its `Retry-After`) when the charge does not fit.

use super::cluster_mode::Remote;
use super::rules::{Policy, Rule};
use super::slot::{Shape, Slot};
use crate::core::error::{GatewayError, Limited};

/// A policy that refused (or would have, in dry-run mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub policy: String,
    pub error: GatewayError,
    /// Seconds until the request could pass (limits only).
    pub retry_after_s: Option<u64>,
    pub dry_run: bool,
}

/// One counter's view for OpenAI's `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// The most restrictive request and token counters of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Gauge>,
    pub tokens: Option<Gauge>,
}

impl RateHeaders {
    fn offer(slot: &mut Option<Gauge>, g: Gauge) {
        if slot.map_or(true, |cur| g.remaining < cur.remaining) {
            *slot = Some(g);
        }
    }
}

/// A counter a request will take from.
#[derive(Debug, Clone)]
pub struct Charge {
    /// The policy's place in the namespace's list.
    pub index: usize,
    pub key: u64,
    pub shape: Shape,
    pub amount: u64,
    pub limit: u64,
    /// Settled with actual token usage at the end (the amount is prompt + `reserve`).
    pub tokens: bool,
    /// Output tokens reserved (token charges).
    pub reserve: u64,
    /// The counter lives in Redis (`core::cluster`), not in the zone.
    pub remote: Option<Remote>,
}

impl Charge {
    /// Whether the counter is in the zone: local, or approximate (synced with Redis by the
    /// node), rather than taken in Redis per request.
    pub fn in_zone(&self) -> bool {
        self.remote.map_or(true, |r| r.approximate)
    }
}

pub fn deny(p: &Policy, error: GatewayError, retry_after_s: Option<u64>) -> Denial {
    Denial {
        policy: p.id.clone(),
        error,
        retry_after_s,
        dry_run: p.dry_run,
    }
}

/// Where the verdicts of counters go.
pub struct Verdicts<'a> {
    pub headers: &'a mut RateHeaders,
    pub dry_run: &'a mut Vec<Denial>,
    /// The first refusal of a policy not in dry-run mode.
    pub refused: &'a mut Option<Denial>,
}

/// Judges charge `c` of policy `p` against its counter's `slot` (advanced to `now_ms`) and
/// `limit`: the rate-limit gauge, and a denial when it does not fit. Returns whether it fits.
/// The zone's counters and those Redis answers with are judged alike.
pub fn judge(
    p: &Policy,
    c: &Charge,
    limit: u64,
    slot: &Slot,
    now_ms: u64,
    out: &mut Verdicts,
) -> bool {
    let used = slot.used(c.shape);
    let fits = used.saturating_add(c.amount) <= limit;
    let remaining_after = limit.saturating_sub(used.saturating_add(c.amount));
    let gauge = Gauge {
        limit,
        remaining: if fits {
            remaining_after
        } else {
            limit.saturating_sub(used)
        },
        reset_ms: if fits && c.amount > 0 {
            slot.added_now_leaves_in_ms(c.shape, now_ms)
        } else {
            slot.reset_in_ms(c.shape, now_ms)
        },
    };
    match (&p.rule, c.tokens) {
        (Rule::Concurrency { .. }, _) => {}
        (_, true) => RateHeaders::offer(&mut out.headers.tokens, gauge),
        (_, false) => RateHeaders::offer(&mut out.headers.requests, gauge),
    }
    if fits {
        return true;
    }
    let need = used.saturating_add(c.amount) - limit;
    let retry_ms = if c.amount > limit {
        // can never fit: the client should not hammer; a full window is a fair wait
        slot.free_in_ms(c.shape, now_ms, used).or(Some(1000))
    } else {
        slot.free_in_ms(c.shape, now_ms, need).or(Some(1000))
    };
    let what = match (&p.rule, c.tokens) {
        (Rule::Concurrency { .. }, _) => Limited::Concurrency,
        (Rule::Quota { .. }, t) => Limited::Quota { tokens: t },
        (_, true) => Limited::Tokens,
        (_, false) => Limited::Requests,
    };
    let error = GatewayError::RateLimited {
        what,
        limit,
        used,
        requested: c.amount,
    };
    let d = deny(p, error, retry_ms.map(|ms| ms.div_ceil(1000).max(1)));
    if p.dry_run {
        out.dry_run.push(d);
    } else {
        out.refused.get_or_insert(d);
    }
    false
}
