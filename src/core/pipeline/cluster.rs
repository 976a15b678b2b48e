//! The end of an access decision that waited for Redis ([`Decision::ask`]): Redis's answer
//! concluded ([`conclude`]), or Redis unreachable ([`degrade`]): each cluster policy then
//! limits on this node at its degraded limit (`fail_open`) or refuses (`fail_closed`).
//! Either way a refusal gives back the zone counters the request had taken.

use super::{Decision, Env, Verdict};
use crate::core::cluster::ask::{Ask, Reply};
use crate::core::cluster::OnFailure;
use crate::core::config::GatewayConfig;
use crate::core::error::GatewayError;
use crate::core::policy::engine::{admit_part, refund, Part, Refusal};
use crate::core::policy::{Admission, Plan, Policy, RateHeaders};

fn policies<'c>(config: &'c GatewayConfig, d: &Decision) -> &'c [Policy] {
    d.namespace
        .and_then(|i| config.namespaces.get(i))
        .map_or(&[], |n| n.policies.as_slice())
}

/// Applies Redis's answer: true when it decided the request (admitted, or refused:
/// `d.verdict` says which); false when the answer does not match the question (handle it
/// as a failure: [`degrade`]).
pub fn conclude<E: Env>(
    config: &GatewayConfig,
    d: &mut Decision,
    ask: &Ask,
    reply: &Reply,
    env: &mut E,
) -> bool {
    match ask.conclude(policies(config, d), reply) {
        Ok(admission) => {
            let state = &mut d.policy;
            merge_headers(&mut state.headers, &admission.headers);
            note_dry_runs(d, &admission.dry_run);
            true
        }
        Err(Some(refusal)) => {
            refuse(d, *refusal, env);
            true
        }
        Err(None) => false,
    }
}

/// Decides without Redis: `fail_closed` policies refuse with 503 (`retry_after_s`), the
/// others are limited in the zone at their degraded limits. Returns whether a policy was
/// degraded (for the metrics: `Some(on_failure)` of the outcome).
pub fn degrade<E: Env>(
    config: &GatewayConfig,
    d: &mut Decision,
    ask: &Ask,
    env: &mut E,
    retry_after_s: u64,
) -> OnFailure {
    let policies = policies(config, d);
    let closed = ask.charges().iter().any(|c| {
        c.remote.is_some_and(|r| r.on_failure == OnFailure::Closed)
            && policies.get(c.index).is_some_and(|p| !p.dry_run)
    });
    if closed {
        give_back(d, env);
        let state = &mut d.policy;
        state.retry_after_s = Some(retry_after_s.max(1));
        reject(d, GatewayError::LimitsUnavailable, false);
        return OnFailure::Closed;
    }
    let plan = Plan::of_charges(ask.charges().to_vec());
    let now = env.now_ms();
    let outcome = env.with_table(|t| admit_part(policies, &plan, t, now, Part::Degraded));
    match outcome {
        Some(Ok(Admission {
            takes,
            headers,
            dry_run,
        })) => {
            d.took_counters = true;
            d.policy.takes.extend(takes);
            merge_headers(&mut d.policy.headers, &headers);
            note_dry_runs(d, &dry_run);
        }
        Some(Err(refusal)) => refuse(d, *refusal, env),
        // no zone to limit in (the node's configuration is checked for one at start)
        None => {
            give_back(d, env);
            reject(d, GatewayError::LimitsUnavailable, false);
        }
    }
    OnFailure::Open
}

fn merge_headers(into: &mut RateHeaders, from: &RateHeaders) {
    for (slot, g) in [
        (&mut into.requests, from.requests),
        (&mut into.tokens, from.tokens),
    ] {
        if let Some(g) = g {
            if slot.map_or(true, |cur| g.remaining < cur.remaining) {
                *slot = Some(g);
            }
        }
    }
}

fn note_dry_runs(d: &mut Decision, dry_run: &[crate::core::policy::Denial]) {
    let state = &mut d.policy;
    for dry in dry_run {
        state.dry_run_reasons.push(dry.error.reason());
        state.denials.push(dry.clone());
        if state.policy.is_none() {
            state.policy = Some(dry.policy.clone());
            state.dry_run = Some(dry.error.reason());
        }
    }
}

/// Gives back the zone counters the request took.
fn give_back<E: Env>(d: &mut Decision, env: &mut E) {
    if d.took_counters {
        let takes = std::mem::take(&mut d.policy.takes);
        env.with_table(|t| refund(t, &takes));
        d.took_counters = false;
    }
}

fn refuse<E: Env>(d: &mut Decision, refusal: Refusal, env: &mut E) {
    give_back(d, env);
    note_dry_runs(d, &refusal.dry_run);
    let denial = refusal.denial;
    let state = &mut d.policy;
    state.headers = refusal.headers;
    state.retry_after_s = denial.retry_after_s;
    state.policy = Some(denial.policy.clone());
    state.dry_run = None;
    let error = denial.error.clone();
    state.denials.push(denial);
    reject(d, error, true);
}

fn reject(d: &mut Decision, error: GatewayError, logged: bool) {
    d.verdict = Verdict::Reject { error, logged };
    d.route = None;
    d.body = None;
    d.added_include_usage = false;
}
