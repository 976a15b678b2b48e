//! Namespace policies in the request's life, after the pipeline (`core::pipeline`) decided
//! them in the access phase: their log lines, OpenAI's rate-limit headers on the response,
//! settlement of token reservations in the log phase, and concurrency given back by the
//! request pool's cleanup (every way a request ends).

use ngx::ffi::{ngx_http_request_t, ngx_uint_t};

use super::headers::{add_response_header, remove_response_headers};
use super::limit_zone::{now_ms, LimitZone};
use crate::core::error::GatewayError;
use crate::core::pipeline::PolicyOutcome;
use crate::core::policy::slot::Shape;
use crate::core::policy::{release, reset_text, settle, Denial};
use crate::core::short_text::decimal;
use crate::runtime::cluster::Hold;

/// What the policies decided for a request (the pipeline's outcome, read through `Deref`),
/// and the zone its counters were taken from; dropped with the request context, which gives
/// concurrency back.
pub struct PolicyState {
    zone: Option<LimitZone>,
    outcome: PolicyOutcome,
    /// What the request holds in Redis (settled and released when dropped).
    hold: Option<Hold>,
}

impl std::ops::Deref for PolicyState {
    type Target = PolicyOutcome;
    fn deref(&self) -> &PolicyOutcome {
        &self.outcome
    }
}

impl std::ops::DerefMut for PolicyState {
    fn deref_mut(&mut self) -> &mut PolicyOutcome {
        &mut self.outcome
    }
}

impl Drop for PolicyState {
    fn drop(&mut self) {
        if let Some(zone) = self.zone {
            if self.takes.iter().any(|t| t.shape == Shape::Concurrency) {
                zone.with_table(|t| release(t, &self.outcome.takes));
            }
        }
    }
}

impl PolicyState {
    /// The state of what the pipeline decided; `zone` is the table counters were taken
    /// from (given back through it).
    pub fn new(
        mut outcome: PolicyOutcome,
        zone: Option<LimitZone>,
        hold: Option<Hold>,
    ) -> PolicyState {
        // logged already: not kept for the request's life
        outcome.denials = Vec::new();
        PolicyState {
            zone,
            outcome,
            hold,
        }
    }
}

/// Settles token reservations with the request's actual usage (log phase).
pub fn settle_tokens(state: &mut PolicyState, total: Option<u64>) {
    if let Some(hold) = state.hold.as_mut() {
        hold.settle(total);
    }
    let Some(zone) = state.zone else {
        return;
    };
    if !state.takes.iter().any(|t| t.tokens) {
        return;
    }
    let now = now_ms();
    zone.with_table(|t| settle(t, &state.takes, total, now));
    // done with them: only concurrency is left for the cleanup
    state.takes.retain(|t| !t.tokens);
}

/// Logs a policy's refusal (or dry-run refusal) at `ai_gateway_policy_log_level`.
pub fn log_denial(log: *mut ngx::ffi::ngx_log_t, level: ngx_uint_t, namespace: &str, d: &Denial) {
    let excess = match &d.error {
        GatewayError::RateLimited {
            limit,
            used,
            requested,
            ..
        } => format!(", limit {limit}, used {used}, requested {requested}"),
        GatewayError::InputTooLong { tokens, max } => format!(", input {tokens}, max {max}"),
        GatewayError::OutputTooLarge { requested, max } => {
            format!(", max_tokens {requested}, max {max}")
        }
        _ => String::new(),
    };
    let what = if d.dry_run {
        "dry run, would reject"
    } else {
        "rejected"
    };
    ngx::ngx_log_error!(
        level,
        log,
        "ai_gateway: {} with {} {}, namespace \"{}\", policy \"{}\"{}",
        what,
        d.error.status(),
        d.error.reason(),
        namespace,
        d.policy,
        excess
    );
}

/// Adds OpenAI's `x-ratelimit-*` headers (and `Retry-After` on a 429) to the response,
/// replacing any the provider sent (those describe the gateway's provider account, not the
/// client's limits).
///
/// # Safety
/// `r` must be the live main request in its header filter.
pub unsafe fn add_headers(r: *mut ngx_http_request_t, state: &PolicyState) -> bool {
    let h = state.headers;
    if h.requests.is_none() && h.tokens.is_none() && state.retry_after_s.is_none() {
        return true;
    }
    // SAFETY: r is live (caller).
    unsafe {
        let status = (*r).headers_out.status;
        remove_response_headers(r, |k| {
            k.len() > 12 && k[..12].eq_ignore_ascii_case(b"x-ratelimit-")
        });
        let mut ok = true;
        const NAMES: [[&str; 3]; 2] = [
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        ];
        for (names, gauge) in NAMES.iter().zip([h.requests, h.tokens]) {
            let Some(g) = gauge else { continue };
            ok &= add_response_header(r, names[0], decimal(g.limit).as_str());
            ok &= add_response_header(r, names[1], decimal(g.remaining).as_str());
            ok &= add_response_header(r, names[2], reset_text(g.reset_ms).as_str());
        }
        if status == 429 || status == 503 {
            if let Some(s) = state.retry_after_s {
                ok &= add_response_header(r, "Retry-After", decimal(s).as_str());
            }
        }
        ok
    }
}
