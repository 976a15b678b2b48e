//! Approximate cluster windows: admission in the node's zone, against the node's allowance.
//!
//! Each approximate counter has three slots in the zone (shared by the node's workers):
//! - the counter itself (key `k`, a window): what this node admitted, bucket by bucket;
//!   settlement and refunds correct it as they do a local counter;
//! - what of it was sent to Redis (`k ^ SENT`, a window), bucket by bucket: the difference
//!   is the delta the next sync sends (negative after a refund);
//! - the view ([`Shape::Sync`], `k ^ VIEW`): the cluster's total in the window at the last
//!   sync (`G`), this node's share of the demand (per mille, `s`), what the node admitted
//!   since (`c`) and the demand since (`d`).
//!
//! A request fits when `c + amount <= ceil((limit - G) * s)`: the nodes together never admit
//! more in one sync interval than the cluster had left at the last sync. What they admit
//! between a sync's snapshot and its answer is not in `G` yet, nor is what the window frees
//! meanwhile; so the overshoot is bounded by the cluster's rate over one sync interval plus
//! one round trip, and by `nodes - 1` units of rounding per interval. Shares follow demand
//! (what each node was asked, refused requests included), so a node with 80% of the
//! traffic gets 80% of what is left.
//!
//! With no sync for `core::cluster::Node::stale_ms` (Redis unreachable), the
//! counter is limited on the node at its degraded limit (`fail_open`) or refuses
//! (`fail_closed`); the node's deltas wait in the counter and go to Redis with the first
//! sync that succeeds.

use super::cluster_mode::{degraded_limit, OnFailure, Remote};
use super::judge::{deny, judge, Charge, Gauge, Verdicts};
use super::rules::{Policy, Rule};
use super::slot::{bucket_ms, Shape, BUCKETS};
use super::table::{SlotRef, Table};
use crate::core::error::{GatewayError, Limited};

const SENT: u64 = 0x5e47_a11c_e0de_0001;
const VIEW: u64 = 0x71e3_c1a5_7e00_0002;

/// The view's words.
const V_SYNCED_MS: usize = 0;
const V_TOTAL: usize = 1;
const V_SHARE: usize = 2;
const V_CONSUMED: usize = 3;
const V_DEMAND: usize = 4;
const V_WINDOW: usize = 5;
const V_NODES: usize = 6;

pub fn sent_key(k: u64) -> u64 {
    (k ^ SENT).max(1)
}

pub fn view_key(k: u64) -> u64 {
    (k ^ VIEW).max(1)
}

/// What an approximate charge found: whether it fits, and the slots to take from.
pub struct Found {
    pub fits: bool,
    pub counter: SlotRef,
    /// The view, whose allowance an admission consumes (`None`: refused for Redis being
    /// unreachable).
    pub view: Option<SlotRef>,
}

/// Judges approximate charge `c` of policy `p` (`remote.approximate`) at `now_ms` (unix),
/// its view older than `stale_ms` meaning Redis is unreachable. `None`: no slot for it
/// (the zone is full).
pub fn judge_approx(
    table: &mut Table,
    p: &Policy,
    c: &Charge,
    remote: Remote,
    now_ms: u64,
    stale_ms: u64,
    out: &mut Verdicts,
) -> Option<Found> {
    let Shape::Window { ms } = c.shape else {
        return None;
    };
    let counter = table.lookup(c.key, c.shape, now_ms)?;
    table.lookup(sent_key(c.key), c.shape, now_ms)?;
    let view = table.lookup(view_key(c.key), Shape::Sync, now_ms)?;
    let counter = table.resolve(counter)?;
    let v = table.get(view)?;
    v.advance(Shape::Sync, now_ms);
    v.counts[V_WINDOW] = ms;
    v.counts[V_DEMAND] = v.counts[V_DEMAND].saturating_add(c.amount);
    let synced = v.counts[V_SYNCED_MS];
    let fresh = synced != 0 && now_ms.saturating_sub(synced) <= stale_ms;
    if !fresh {
        if remote.on_failure == OnFailure::Closed {
            let d = deny(p, GatewayError::LimitsUnavailable, Some(1));
            if p.dry_run {
                out.dry_run.push(d);
            } else {
                out.refused.get_or_insert(d);
            }
            return Some(Found {
                fits: p.dry_run,
                counter,
                view: None,
            });
        }
        let limit = degraded_limit(c.limit, remote.fraction);
        let slot = table.get(counter)?;
        slot.advance(c.shape, now_ms);
        let fits = judge(p, c, limit, slot, now_ms, out);
        // counted against the allowance too: what is admitted between a sync's snapshot
        // and its answer is not in the cluster's total yet
        return Some(Found {
            fits,
            counter,
            view: Some(view),
        });
    }
    let (total, share, consumed) = (v.counts[V_TOTAL], v.counts[V_SHARE], v.counts[V_CONSUMED]);
    let remaining = c.limit.saturating_sub(total);
    let allowance = allowance(remaining, share);
    let used = total.saturating_add(consumed);
    let fits = consumed.saturating_add(c.amount) <= allowance;
    let slot = table.get(counter)?;
    slot.advance(c.shape, now_ms);
    let gauge = Gauge {
        limit: c.limit,
        remaining: c.limit.saturating_sub(if fits {
            used.saturating_add(c.amount)
        } else {
            used
        }),
        reset_ms: if fits {
            slot.added_now_leaves_in_ms(c.shape, now_ms)
        } else {
            slot.reset_in_ms(c.shape, now_ms).max(bucket_ms(ms))
        },
    };
    match c.tokens {
        true => offer(&mut out.headers.tokens, gauge),
        false => offer(&mut out.headers.requests, gauge),
    }
    if !fits {
        // the cluster is full: capacity comes back a bucket at a time; else this node's
        // share is spent until the next sync
        let retry_ms = if remaining < c.amount {
            bucket_ms(ms)
        } else {
            1000
        };
        let what = match (&p.rule, c.tokens) {
            (_, true) => Limited::Tokens,
            (Rule::Quota { .. }, _) => Limited::Quota { tokens: false },
            _ => Limited::Requests,
        };
        let error = GatewayError::RateLimited {
            what,
            limit: c.limit,
            used,
            requested: c.amount,
        };
        let d = deny(p, error, Some(retry_ms.div_ceil(1000).max(1)));
        if p.dry_run {
            out.dry_run.push(d);
        } else {
            out.refused.get_or_insert(d);
        }
    }
    Some(Found {
        fits,
        counter,
        view: Some(view),
    })
}

fn offer(slot: &mut Option<Gauge>, g: Gauge) {
    if slot.map_or(true, |cur| g.remaining < cur.remaining) {
        *slot = Some(g);
    }
}

/// The node's allowance: its share (per mille) of what is left, rounded up (so a node is
/// never starved of the last units; the rounding is part of the bound).
pub fn allowance(remaining: u64, share: u64) -> u64 {
    (remaining as u128 * share.clamp(1, 1000) as u128).div_ceil(1000) as u64
}

/// Takes `amount` from the view's allowance (the request was admitted).
pub fn consume(table: &mut Table, view: SlotRef, amount: u64) {
    if let Some(v) = table.resolve(view).and_then(|r| table.get(r)) {
        v.counts[V_CONSUMED] = v.counts[V_CONSUMED].saturating_add(amount);
    }
}

/// One counter's part of a sync: the deltas per bucket since the last sync that succeeded,
/// and the demand and consumption the view counted up to this snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncItem {
    pub key: u64,
    pub window_ms: u64,
    pub deltas: Vec<(u64, i64)>,
    pub demand: u64,
    pub consumed: u64,
}

/// What Redis answered for one counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncAnswer {
    /// The cluster's total in the window, this node's deltas included.
    pub total: u64,
    /// Nodes that synced the counter lately.
    pub nodes: u64,
    /// Their demand since their last syncs, and this node's.
    pub demand_total: u64,
}

/// The snapshot of the zone's approximate counters (the sync task's work): those with
/// something to send or asked since the last sync, and the idle ones whose view is older than
/// `refresh_ms` (kept fresh for the next request, at a lower cadence).
pub fn collect(table: &mut Table, now_ms: u64, refresh_ms: u64) -> Vec<SyncItem> {
    let mut out = Vec::new();
    for view in table.with_shape(Shape::Sync.code()) {
        let Some(v) = table.get(view) else { continue };
        let window_ms = v.counts[V_WINDOW];
        if window_ms == 0 {
            continue;
        }
        let (demand, consumed) = (v.counts[V_DEMAND], v.counts[V_CONSUMED]);
        let synced = v.counts[V_SYNCED_MS];
        let key = view.key ^ VIEW;
        let shape = Shape::Window { ms: window_ms };
        let mut local = [0u64; BUCKETS as usize + 1];
        let mut head = 0;
        if let Some(c) = table.find(key).and_then(|r| table.get(r)) {
            c.advance(shape, now_ms);
            local = c.counts;
            head = c.head;
        }
        let mut deltas = Vec::new();
        if let Some(s) = table.find(sent_key(key)).and_then(|r| table.get(r)) {
            s.advance(shape, now_ms);
            if head == 0 {
                head = s.head;
            }
            for abs in head.saturating_sub(BUCKETS)..=head {
                let i = (abs % (BUCKETS + 1)) as usize;
                let d = local[i] as i128 - s.counts[i] as i128;
                if d != 0 {
                    deltas.push((abs, d.clamp(i64::MIN as i128, i64::MAX as i128) as i64));
                }
            }
        }
        let idle = deltas.is_empty() && demand == 0;
        if idle && now_ms.saturating_sub(synced) < refresh_ms {
            continue;
        }
        out.push(SyncItem {
            key,
            window_ms,
            deltas,
            demand,
            consumed,
        });
    }
    out
}

/// Applies a sync's outcome for `item` at `now_ms`: the deltas count as sent, the view is
/// the cluster's (`Some`), or stays as it was (`None`: the sync failed; the deltas are sent
/// again next time).
pub fn apply(table: &mut Table, item: &SyncItem, answer: Option<SyncAnswer>, now_ms: u64) {
    let Some(a) = answer else { return };
    let shape = Shape::Window { ms: item.window_ms };
    if let Some(s) = table.find(sent_key(item.key)).and_then(|r| table.get(r)) {
        s.advance(shape, now_ms);
        for (abs, d) in &item.deltas {
            s.adjust(shape, *abs, *d);
        }
    }
    if let Some(v) = table.find(view_key(item.key)).and_then(|r| table.get(r)) {
        v.counts[V_SYNCED_MS] = now_ms;
        v.counts[V_TOTAL] = a.total;
        v.counts[V_NODES] = a.nodes;
        let mine = item.demand.max(1);
        let all = a.demand_total.max(mine);
        v.counts[V_SHARE] = ((mine as u128 * 1000).div_ceil(all as u128) as u64).clamp(1, 1000);
        // what was admitted and asked after the snapshot counts towards the next interval
        v.counts[V_CONSUMED] = v.counts[V_CONSUMED].saturating_sub(item.consumed);
        v.counts[V_DEMAND] = v.counts[V_DEMAND].saturating_sub(item.demand);
    }
}

#[cfg(test)]
#[path = "approx_tests.rs"]
mod tests;
