//! A request's question to Redis in `exact` mode and the conclusion drawn from the answer.
//!
//! The question lists the request's cluster counters (keys of one namespace share a hash
//! tag, so one script can take them all on Redis Cluster too) with their limits and
//! amounts. Redis's script (`runtime::cluster`) reads every counter at Redis's own time,
//! takes from all of them only when none refuses, and answers with what each held; this
//! module rebuilds each counter as a [`Slot`] and judges it with the zone's own code
//! (`policy::engine::judge`), so headers, `Retry-After` and error bodies are the same in
//! both modes.

use crate::core::error::GatewayError;
use crate::core::policy::engine::Refusal;
use crate::core::policy::judge::{deny, judge, Charge, Verdicts};
use crate::core::policy::slot::{bucket_ms, Period, Shape, Slot, BUCKETS};
use crate::core::policy::{Denial, Plan, Policy, RateHeaders};

/// What a counter is, as the script knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A sliding window of this many ms (a hash: bucket number → count).
    Window(u64),
    /// A quota per UTC day or month (a hash: period number → count).
    Quota(Period),
    /// Requests in flight (a sorted set of leases, scored by their expiry).
    Leases,
}

impl Kind {
    fn of(shape: Shape) -> Option<Kind> {
        match shape {
            Shape::Window { ms } => Some(Kind::Window(ms)),
            Shape::Quota(p) => Some(Kind::Quota(p)),
            Shape::Concurrency => Some(Kind::Leases),
            Shape::Health | Shape::Sync => None,
        }
    }

    /// The script's code and size argument.
    pub fn code(self) -> (&'static str, u64) {
        match self {
            Kind::Window(ms) => ("w", ms),
            Kind::Quota(Period::Day) => ("d", 0),
            Kind::Quota(Period::Month) => ("m", 0),
            Kind::Leases => ("c", 0),
        }
    }
}

/// One counter of the question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub kind: Kind,
    pub limit: u64,
    pub amount: u64,
    /// A dry-run policy's counter counts but never refuses.
    pub dry_run: bool,
    pub tokens: bool,
}

/// The question of one request.
#[derive(Clone, Debug)]
pub struct Ask {
    pub counters: Vec<Counter>,
    /// The plan's cluster charges, in the order of `counters`.
    charges: Vec<Charge>,
    /// Token counters are charged an upper bound of the prompt (as the zone's are at
    /// first): a refusal by one of them is asked again with the exact count.
    pub prompt_bound: bool,
}

/// What Redis answered for one counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterReply {
    /// What the counter held before this request.
    pub used: u64,
    /// Windows: the current bucket; quotas: the period; where the request's amount went.
    pub at: u64,
    /// Windows: the counted buckets, `(bucket, count)`.
    pub buckets: Vec<(u64, u64)>,
}

/// The script's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// 0 when the request was admitted (everything taken); else the 1-based counter that
    /// refused (nothing taken).
    pub refused: usize,
    /// Redis's time, ms since the epoch.
    pub now_ms: u64,
    pub counters: Vec<CounterReply>,
}

/// What a request took in Redis; given back to the settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteTake {
    pub key: String,
    pub kind: Kind,
    pub at: u64,
    pub amount: u64,
    pub tokens: bool,
}

/// A request Redis admitted.
#[derive(Debug, Default)]
pub struct RemoteAdmission {
    pub takes: Vec<RemoteTake>,
    pub headers: RateHeaders,
    pub dry_run: Vec<Denial>,
}

/// The Redis key of counter `key` of `namespace`: `<prefix>:lim:{<namespace>}:<key>`. The
/// braces are Redis Cluster's hash tag; a namespace code that would break it is hashed.
pub fn counter_key(prefix: &str, namespace: &str, key: u64) -> String {
    let tag_ok = !namespace.is_empty() && !namespace.contains(['{', '}']);
    if tag_ok {
        format!("{prefix}:lim:{{{namespace}}}:{key:016x}")
    } else {
        let h = crate::core::policy::table::counter_key(&[namespace.as_bytes()]);
        format!("{prefix}:lim:{{#{h:016x}}}:{key:016x}")
    }
}

impl Ask {
    /// The question for `plan`'s cluster charges; `None` when it has none.
    pub fn new(prefix: &str, namespace: &str, policies: &[Policy], plan: &Plan) -> Option<Ask> {
        let mut counters = Vec::new();
        let mut charges = Vec::new();
        for c in plan.remote_charges() {
            let (Some(kind), Some(p)) = (Kind::of(c.shape), policies.get(c.index)) else {
                continue;
            };
            counters.push(Counter {
                key: counter_key(prefix, namespace, c.key),
                kind,
                limit: c.limit,
                amount: c.amount,
                dry_run: p.dry_run,
                tokens: c.tokens,
            });
            charges.push(c.clone());
        }
        let prompt_bound = plan.prompt_tokens.is_none() && counters.iter().any(|c| c.tokens);
        (!counters.is_empty()).then_some(Ask {
            counters,
            charges,
            prompt_bound,
        })
    }

    /// Whether Redis refused a token counter charged the prompt's bound: only the exact
    /// count may refuse ([`Ask::with_exact_prompt`], asked again).
    pub fn needs_exact_prompt(&self, reply: &Reply) -> bool {
        self.prompt_bound
            && reply.refused > 0
            && self
                .counters
                .get(reply.refused - 1)
                .is_some_and(|c| c.tokens)
    }

    /// The question again, token counters charged the prompt's exact count.
    pub fn with_exact_prompt(&self, tokens: u64) -> Ask {
        let mut again = self.clone();
        for (counter, charge) in again.counters.iter_mut().zip(again.charges.iter_mut()) {
            if counter.tokens {
                charge.amount = tokens.saturating_add(charge.reserve);
                counter.amount = charge.amount;
            }
        }
        again.prompt_bound = false;
        again
    }

    /// The charges asked for (their `remote` settings decide what a failure does).
    pub fn charges(&self) -> &[Charge] {
        &self.charges
    }

    /// Concludes from Redis's answer: the admission, or the refusal (with the same
    /// headers, error and `Retry-After` as the zone's limiter). An answer that does not
    /// match the question is `Err(None)` (treated as a Redis failure).
    pub fn conclude(
        &self,
        policies: &[Policy],
        reply: &Reply,
    ) -> Result<RemoteAdmission, Option<Box<Refusal>>> {
        if reply.counters.len() != self.counters.len() || reply.refused > self.counters.len() {
            return Err(None);
        }
        let mut headers = RateHeaders::default();
        let mut dry_run = Vec::new();
        let mut refused: Option<Denial> = None;
        for (charge, r) in self.charges.iter().zip(&reply.counters) {
            let Some(p) = policies.get(charge.index) else {
                return Err(None);
            };
            let slot = slot_of(charge.shape, r, reply.now_ms);
            judge(
                p,
                charge,
                charge.limit,
                &slot,
                reply.now_ms,
                &mut Verdicts {
                    headers: &mut headers,
                    dry_run: &mut dry_run,
                    refused: &mut refused,
                },
            );
        }
        if reply.refused == 0 {
            return Ok(RemoteAdmission {
                takes: takes_of(self, reply),
                headers,
                dry_run,
            });
        }
        let denial = match refused {
            Some(d) => d,
            // the script refused what the same rule admits here (cannot happen with the
            // same numbers): refuse all the same, it is the script that took nothing
            None => {
                let c = &self.charges[reply.refused - 1];
                let p = policies.get(c.index).ok_or(None)?;
                deny(p, GatewayError::Http(429), Some(1))
            }
        };
        Err(Some(Box::new(Refusal {
            denial,
            headers,
            dry_run,
            exact_needed: false,
        })))
    }
}

/// What an admitted request took: each counter's amount where the script put it.
pub fn takes_of(ask: &Ask, reply: &Reply) -> Vec<RemoteTake> {
    ask.counters
        .iter()
        .zip(&reply.counters)
        .map(|(c, r)| RemoteTake {
            key: c.key.clone(),
            kind: c.kind,
            at: r.at,
            amount: c.amount,
            tokens: c.tokens,
        })
        .collect()
}

/// A counter as the zone's code sees it, from what Redis answered (`now_ms`: Redis's time).
fn slot_of(shape: Shape, r: &CounterReply, now_ms: u64) -> Slot {
    let mut s = Slot::new(1, shape, now_ms);
    match shape {
        Shape::Window { ms } => {
            let cur = now_ms / bucket_ms(ms);
            for (b, n) in &r.buckets {
                if *b + BUCKETS >= cur && *b <= cur {
                    let i = (*b % (BUCKETS + 1)) as usize;
                    s.counts[i] = s.counts[i].saturating_add(*n);
                }
            }
        }
        _ => s.counts[0] = r.used,
    }
    s
}

/// The settlement of one take: how much to add (or give back) where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settle {
    pub key: String,
    pub kind: Kind,
    pub at: u64,
    pub delta: i64,
}

/// What a request that ends gives back and corrects: token takes are corrected by
/// `actual - amount` (`actual` `None`: usage unknown, reservations stay; `refund_all`: the
/// request never went through, everything is given back); leases are released.
pub fn settlement(takes: &[RemoteTake], actual: Option<u64>, refund_all: bool) -> Vec<Settle> {
    let mut out = Vec::new();
    for t in takes {
        let delta = match (t.kind, refund_all, actual) {
            (Kind::Leases, _, _) => -1,
            (_, true, _) => -i64::try_from(t.amount).unwrap_or(i64::MAX),
            (_, false, Some(a)) if t.tokens => {
                (a as i128 - t.amount as i128).clamp(i64::MIN as i128 + 1, i64::MAX as i128) as i64
            }
            _ => 0,
        };
        if delta != 0 {
            out.push(Settle {
                key: t.key.clone(),
                kind: t.kind,
                at: t.at,
                delta,
            });
        }
    }
    out
}

#[cfg(test)]
#[path = "ask_tests.rs"]
mod tests;
