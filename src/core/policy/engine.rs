//! Policy evaluation: a deterministic order, all-or-nothing admission, settlement.
//!
//! Order (rank, then declaration order within a type):
//! 1. `models` allow-lists (403), 2. `message` rules (403), 3. `input_tokens` (400),
//! 4. `output_tokens` (400 or clamp), then the counters, under the zone's lock:
//! 5. `concurrency`, 6. `requests` windows, 7. `tokens` windows, 8. `quota` (429).
//!
//! [`precheck`] runs the stateless rules and prices the request for each counter; [`admit`]
//! looks at every counter first and takes from all of them only when none refuses, so a
//! rejected request leaves no trace in any counter. A policy in dry-run mode is evaluated and
//! reported but never refuses (and its counters count the request, which does go through).
//! [`settle`] corrects token reservations with actual usage; [`release`] gives concurrency
//! back.

use super::approx::{consume, judge_approx};
use super::cluster_mode::{degraded_limit, Defaults};
use super::glob::any_matches;
pub use super::judge::{deny, judge, Charge, Denial, Gauge, RateHeaders, Verdicts};
use super::rules::{Policy, Rule};
use super::slot::Shape;
use super::table::{counter_key, SlotRef, Table};
use crate::core::error::GatewayError;
use crate::core::matcher::RequestView;

/// What the engine needs to know about a request.
pub struct Facts<'a> {
    pub namespace: &'a str,
    pub model: Option<&'a str>,
    /// The output limit the client asked for (`RequestSummary::max_output`).
    pub max_output: Option<u64>,
    pub view: &'a dyn RequestView,
    /// The node's cluster defaults (`None`: no cluster limits, every counter is local).
    pub cluster: Option<&'a Defaults>,
}

/// The prompt's tokens, as the engine asks for them: a cheap upper bound first, the exact
/// count only when the bound does not settle a decision. Closures give one number for both.
pub trait PromptTokens {
    /// An upper bound of the prompt's tokens.
    fn bound(&mut self) -> u64;
    /// The prompt's tokens.
    fn exact(&mut self) -> u64;
}

impl<F: FnMut() -> u64> PromptTokens for F {
    fn bound(&mut self) -> u64 {
        self()
    }
    fn exact(&mut self) -> u64 {
        self()
    }
}

/// Which charges of a plan [`admit_part`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The zone's counters.
    Local,
    /// The cluster counters, in the zone at their degraded limits (Redis unreachable).
    Degraded,
    /// Both at once.
    All,
}

impl Part {
    fn takes(self, c: &Charge) -> bool {
        match self {
            Part::Local => c.in_zone(),
            Part::Degraded => !c.in_zone(),
            Part::All => true,
        }
    }
}

/// The stateless verdict: what to take from which counters, and what to change.
#[derive(Debug, Default)]
pub struct Plan {
    charges: Vec<Charge>,
    /// Set the request's output limit to this (an `output_tokens` policy with `clamp`).
    pub clamp_output: Option<u64>,
    /// The lowest output cap of the request's policies (a stream is ended there).
    pub output_cap: Option<u64>,
    /// The prompt as counted exactly (when a decision needed it).
    pub prompt_tokens: Option<u64>,
    /// Output tokens reserved in token counters.
    pub reserved_output: u64,
    /// Dry-run policies that would have refused.
    pub dry_run: Vec<Denial>,
}

impl Plan {
    /// Whether the request takes from any counter of the zone.
    pub fn needs_zone(&self) -> bool {
        self.charges.iter().any(Charge::in_zone)
    }

    /// The charges taken in Redis per request (`exact`).
    pub fn remote_charges(&self) -> impl Iterator<Item = &Charge> {
        self.charges.iter().filter(|c| !c.in_zone())
    }

    /// A plan of these charges alone (to take them apart from the plan they were made in).
    pub fn of_charges(charges: Vec<Charge>) -> Plan {
        Plan {
            charges,
            // the amounts are final
            prompt_tokens: Some(0),
            ..Plan::default()
        }
    }

    /// Charges the exact prompt count instead of the bound (after [`admit`] asked for it).
    pub fn use_exact_prompt(&mut self, tokens: u64) {
        self.prompt_tokens = Some(tokens);
        for c in self.charges.iter_mut().filter(|c| c.tokens) {
            c.amount = tokens.saturating_add(c.reserve);
        }
    }
}

/// What a request took; given back to [`settle`] and [`release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    pub slot: SlotRef,
    pub shape: Shape,
    /// Where the amount went (bucket or period).
    pub at: u64,
    pub amount: u64,
    pub tokens: bool,
}

/// A request that passed.
#[derive(Debug, Default)]
pub struct Admission {
    pub takes: Vec<Take>,
    pub headers: RateHeaders,
    pub dry_run: Vec<Denial>,
}

/// A request refused by the counters.
#[derive(Debug)]
pub struct Refusal {
    pub denial: Denial,
    pub headers: RateHeaders,
    /// Dry-run policies that would also have refused.
    pub dry_run: Vec<Denial>,
    /// A token counter refused an upper bound of the prompt: count it exactly
    /// ([`Plan::use_exact_prompt`]) and try again before refusing.
    pub exact_needed: bool,
}

fn applies(p: &Policy, model: Option<&str>) -> bool {
    p.models.is_empty() || model.is_some_and(|m| any_matches(&p.models, m))
}

/// Whether the `models` policies (dry runs aside) let a request for `model` through.
pub fn model_allowed(policies: &[Policy], model: &str) -> bool {
    policies
        .iter()
        .filter(|p| !p.dry_run && applies(p, Some(model)))
        .all(|p| match &p.rule {
            Rule::Models { allow } => any_matches(allow, model),
            _ => true,
        })
}

/// Runs the stateless rules and prices the counters. The prompt is asked for only when a
/// policy needs it, its bound first: an `input_tokens` cap counts exactly only when the bound
/// is above it; token counters are charged the bound (see [`admit`]).
pub fn precheck(
    policies: &[Policy],
    facts: &Facts,
    prompt_tokens: &mut dyn PromptTokens,
) -> Result<Plan, Denial> {
    let mut plan = Plan::default();
    let mut exact: Option<u64> = None;
    let mut bound: Option<u64> = None;
    // the lowest cap of the output_tokens policies, and of those that clamp
    let mut output_cap: Option<u64> = None;
    let mut clamp_cap: Option<u64> = None;

    for p in policies.iter().filter(|p| applies(p, facts.model)) {
        let refused = match &p.rule {
            Rule::Models { allow } => match facts.model {
                Some(m) if !any_matches(allow, m) => Some(GatewayError::ModelNotAllowed),
                _ => None,
            },
            Rule::Message { matcher, deny } => {
                (matcher.matches(facts.view) == *deny).then_some(GatewayError::MessageDenied)
            }
            Rule::InputTokens { max } => {
                let b = *bound.get_or_insert_with(|| prompt_tokens.bound());
                if b <= *max {
                    None
                } else {
                    let n = *exact.get_or_insert_with(|| prompt_tokens.exact());
                    (n > *max).then_some(GatewayError::InputTooLong {
                        tokens: n,
                        max: *max,
                    })
                }
            }
            Rule::OutputTokens { max, clamp } => match facts.max_output {
                Some(asked) if asked > *max && !clamp => Some(GatewayError::OutputTooLarge {
                    requested: asked,
                    max: *max,
                }),
                _ => {
                    if !p.dry_run {
                        output_cap = Some(output_cap.map_or(*max, |c: u64| c.min(*max)));
                        if *clamp {
                            clamp_cap = Some(clamp_cap.map_or(*max, |c: u64| c.min(*max)));
                        }
                    }
                    None
                }
            },
            _ => None,
        };
        if let Some(error) = refused {
            let d = deny(p, error, None);
            if !p.dry_run {
                return Err(d);
            }
            plan.dry_run.push(d);
        }
    }

    // output tokens the request may use: the client's ask, lowered by the caps
    let asked = facts.max_output;
    plan.clamp_output = clamp_cap.filter(|cap| asked.map_or(true, |a| a > *cap));
    plan.output_cap = output_cap;
    let output_bound = match (asked, output_cap) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    };

    for (index, p) in policies.iter().enumerate() {
        if !applies(p, facts.model) {
            continue;
        }
        let (shape, limit, tokens) = match &p.rule {
            Rule::Concurrency { limit } => (Shape::Concurrency, *limit, false),
            Rule::Requests { limit, window_ms } => {
                (Shape::Window { ms: *window_ms }, *limit, false)
            }
            Rule::Tokens {
                limit, window_ms, ..
            } => (Shape::Window { ms: *window_ms }, *limit, true),
            Rule::Quota {
                limit,
                period,
                tokens,
            } => (Shape::Quota(*period), *limit, *tokens),
            _ => continue,
        };
        let reserve = match (&p.rule, output_bound) {
            (_, _) if !tokens => 0,
            (_, Some(b)) => b,
            (Rule::Tokens { reserve_output, .. }, None) => *reserve_output,
            _ => 0,
        };
        let amount = if tokens {
            plan.reserved_output = plan.reserved_output.max(reserve);
            let prompt = match exact {
                Some(n) => n,
                None => *bound.get_or_insert_with(|| prompt_tokens.bound()),
            };
            prompt.saturating_add(reserve)
        } else {
            1
        };
        let model = if p.per_model {
            facts.model.unwrap_or("")
        } else {
            ""
        };
        // the policy's identity (id, kind, window: see rules::counter_identity), the
        // namespace and the model
        let key = counter_key(&[
            facts.namespace.as_bytes(),
            &p.identity.to_le_bytes(),
            model.as_bytes(),
        ]);
        plan.charges.push(Charge {
            index,
            key,
            shape,
            amount,
            limit,
            tokens,
            reserve,
            remote: p
                .cluster
                .resolve(facts.cluster, matches!(shape, Shape::Window { .. })),
        });
    }
    plan.prompt_tokens = exact;
    Ok(plan)
}

/// Checks every counter of the zone, then takes from all of them, or from none.
///
/// `policies` must be the list `plan` was made from. `Err` with `limit_zone_full` when a
/// counter could not get a slot.
pub fn admit(
    policies: &[Policy],
    plan: &Plan,
    table: &mut Table,
    now_ms: u64,
) -> Result<Admission, Box<Refusal>> {
    admit_part(policies, plan, table, now_ms, Part::Local)
}

/// [`admit`] for a part of the plan's charges.
pub fn admit_part(
    policies: &[Policy],
    plan: &Plan,
    table: &mut Table,
    now_ms: u64,
    part: Part,
) -> Result<Admission, Box<Refusal>> {
    let mut headers = RateHeaders::default();
    let mut dry_run = plan.dry_run.clone();
    let mut refused: Option<Denial> = None;
    let mut exact_needed = false;
    let mut slots = Vec::with_capacity(plan.charges.len());
    // approximate charges: their views (whose allowance they consume)
    let mut views = Vec::with_capacity(plan.charges.len());

    for c in plan.charges.iter().filter(|c| part.takes(c)) {
        let Some(p) = policies.get(c.index) else {
            slots.push(None);
            views.push(None);
            continue;
        };
        if let Some(r) = c.remote.filter(|r| r.approximate) {
            let found = judge_approx(
                table,
                p,
                c,
                r,
                now_ms,
                r.stale_ms,
                &mut Verdicts {
                    headers: &mut headers,
                    dry_run: &mut dry_run,
                    refused: &mut refused,
                },
            );
            match found {
                Some(f) => {
                    if !f.fits && c.tokens && plan.prompt_tokens.is_none() {
                        exact_needed = true;
                    }
                    slots.push(Some(f.counter));
                    views.push(f.view);
                }
                None => {
                    let d = deny(p, GatewayError::LimitZoneFull, None);
                    slots.push(None);
                    views.push(None);
                    if p.dry_run {
                        dry_run.push(d);
                        continue;
                    }
                    refused.get_or_insert(d);
                    break;
                }
            }
            continue;
        }
        views.push(None);
        let Some(slot_ref) = table.lookup(c.key, c.shape, now_ms) else {
            let d = deny(p, GatewayError::LimitZoneFull, None);
            if p.dry_run {
                dry_run.push(d);
                slots.push(None);
                continue;
            }
            refused.get_or_insert(d);
            break;
        };
        let Some(slot) = table.get(slot_ref) else {
            slots.push(None);
            continue;
        };
        slot.advance(c.shape, now_ms);
        let limit = match (part, c.remote) {
            (Part::Degraded | Part::All, Some(r)) => degraded_limit(c.limit, r.fraction),
            _ => c.limit,
        };
        let fits = judge(
            p,
            c,
            limit,
            slot,
            now_ms,
            &mut Verdicts {
                headers: &mut headers,
                dry_run: &mut dry_run,
                refused: &mut refused,
            },
        );
        if !fits && c.tokens && plan.prompt_tokens.is_none() {
            // charged an upper bound of the prompt: only the exact count may refuse
            exact_needed = true;
        }
        slots.push(Some(slot_ref));
    }

    if let Some(denial) = refused {
        return Err(Box::new(Refusal {
            denial,
            headers,
            dry_run,
            exact_needed,
        }));
    }
    let mut takes = Vec::with_capacity(plan.charges.len());
    let charges = plan.charges.iter().filter(|c| part.takes(c));
    for ((c, slot_ref), view) in charges.zip(slots).zip(views) {
        // a later lookup that freed idle slots may have moved this one
        let Some(slot_ref) = slot_ref.and_then(|r| table.resolve(r)) else {
            continue;
        };
        if let Some(view) = view {
            consume(table, view, c.amount);
        }
        if let Some(slot) = table.get(slot_ref) {
            let at = slot.add(c.shape, c.amount);
            takes.push(Take {
                slot: slot_ref,
                shape: c.shape,
                at,
                amount: c.amount,
                tokens: c.tokens,
            });
        }
    }
    Ok(Admission {
        takes,
        headers,
        dry_run,
    })
}

/// Gives back everything `takes` took (a request refused after its zone counters were
/// taken: by Redis, or by its degraded part).
pub fn refund(table: &mut Table, takes: &[Take]) {
    for t in takes {
        if let Some(slot) = table.get(t.slot) {
            slot.adjust(t.shape, t.at, -i64::try_from(t.amount).unwrap_or(i64::MAX));
        }
    }
}

/// Corrects token reservations with the request's actual total (prompt + completion);
/// `None` (usage unknown) keeps them as they are.
pub fn settle(table: &mut Table, takes: &[Take], actual_tokens: Option<u64>, now_ms: u64) {
    let Some(actual) = actual_tokens else {
        return;
    };
    for t in takes.iter().filter(|t| t.tokens) {
        let delta = actual as i128 - t.amount as i128;
        if delta == 0 {
            continue;
        }
        if let Some(slot) = table.get(t.slot) {
            slot.advance(t.shape, now_ms);
            slot.adjust(
                t.shape,
                t.at,
                delta.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            );
        }
    }
}

/// Gives concurrency slots back.
pub fn release(table: &mut Table, takes: &[Take]) {
    for t in takes.iter().filter(|t| t.shape == Shape::Concurrency) {
        if let Some(slot) = table.get(t.slot) {
            slot.adjust(t.shape, t.at, -i64::try_from(t.amount).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
