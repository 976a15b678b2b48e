//! Namespace policies in the request's life: admission in the access phase (after the body
//! is parsed and the namespace identified), OpenAI's rate-limit headers on the response,
//! settlement of token reservations in the log phase, and concurrency given back by the
//! request pool's cleanup (every way a request ends).

use ngx::ffi::{ngx_http_request_t, ngx_uint_t};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use super::headers::{add_response_header, remove_response_headers, NgxRequestView};
use super::limit_zone::{now_ms, LimitZone};
use super::module::Module;
use crate::core::config::GatewayConfig;
use crate::core::error::GatewayError;
use crate::core::policy::clamp::{clamp_output, output_field};
use crate::core::policy::slot::Shape;
use crate::core::policy::{
    admit, precheck, release, reset_text, settle, Denial, Facts, PromptTokens, RateHeaders, Take,
};
use crate::core::request::RequestSummary;
use crate::core::tokens::{count_prompt, prompt_bound, PromptCount};

/// What the policies decided for a request; dropped with the request context.
#[derive(Default)]
pub struct PolicyState {
    zone: Option<LimitZone>,
    takes: Vec<Take>,
    pub headers: RateHeaders,
    pub retry_after_s: Option<u64>,
    /// The policy that refused the request, or that would have (dry run).
    pub policy: Option<String>,
    /// The reason a dry-run policy would have refused with.
    pub dry_run: Option<&'static str>,
    /// Every reason a dry-run policy would have refused with (for the metrics).
    pub dry_run_reasons: Vec<&'static str>,
    /// The output cap a stream is ended at.
    pub output_cap: Option<u64>,
}

impl Drop for PolicyState {
    fn drop(&mut self) {
        if let Some(zone) = self.zone {
            if self.takes.iter().any(|t| t.shape == Shape::Concurrency) {
                zone.with_table(|t| release(t, &self.takes));
            }
        }
    }
}

/// What admission changed in the request.
pub struct Admitted {
    /// A new body, when the output limit was lowered.
    pub body: Option<Vec<u8>>,
    /// The prompt, if a policy counted it (kept for the log phase).
    pub prompt: Option<Option<PromptCount>>,
}

/// Runs the namespace's policies. `Err` is the rejection to send; `state` is filled either
/// way (headers, policy, what was taken).
///
/// # Safety
/// `r` must be the live main request whose body is `body`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn enforce(
    r: *mut ngx_http_request_t,
    config: &GatewayConfig,
    namespace: usize,
    body: &[u8],
    summary: &RequestSummary,
    view: &NgxRequestView,
    state: &mut PolicyState,
) -> Result<Admitted, GatewayError> {
    let mut admitted = Admitted {
        body: None,
        prompt: None,
    };
    let Some(ns) = config.namespaces.get(namespace) else {
        return Ok(admitted);
    };
    if ns.policies.is_empty() {
        return Ok(admitted);
    }
    // SAFETY: r is live (caller).
    let (log, level, uri) = unsafe {
        (
            (*(*r).connection).log,
            Module::location_conf(&*r).map_or(LOG_WARN, |l| l.policy_log_level()),
            (*r).uri.as_bytes(),
        )
    };
    let model = summary.model.as_deref();
    let facts = Facts {
        namespace: &ns.code,
        model,
        max_output: summary.max_output(),
        view,
    };
    let mut prompt = BodyPrompt {
        body: summary.is_json.then_some(body),
        model,
        counted: None,
    };
    let plan = precheck(&ns.policies, &facts, &mut prompt);
    let mut plan = match plan {
        Ok(plan) => plan,
        Err(denial) => {
            log_denial(log, level, &ns.code, &denial);
            state.policy = Some(denial.policy);
            return Err(denial.error);
        }
    };
    for d in &plan.dry_run {
        log_denial(log, level, &ns.code, d);
        state.dry_run_reasons.push(d.error.reason());
    }
    if let Some(first) = plan.dry_run.first() {
        state.policy = Some(first.policy.clone());
        state.dry_run = Some(first.error.reason());
    }
    if plan.needs_zone() {
        // SAFETY: r is live; the zone belongs to this cycle and was initialised at start.
        let zone = unsafe {
            Module::main_conf(&*r)
                .and_then(|m| m.limit_zone)
                .and_then(|z| LimitZone::open(z))
        };
        let Some(zone) = zone else {
            return Err(GatewayError::Http(500));
        };
        let now = now_ms();
        let mut outcome = zone
            .with_table(|t| admit(&ns.policies, &plan, t, now))
            .ok_or(GatewayError::Http(500))?;
        if outcome.as_ref().is_err_and(|r| r.exact_needed) {
            // a token counter had no room for the prompt's upper bound: count it exactly
            // (outside the lock) and ask again
            plan.use_exact_prompt(prompt.exact());
            outcome = zone
                .with_table(|t| admit(&ns.policies, &plan, t, now))
                .ok_or(GatewayError::Http(500))?;
        }
        match outcome {
            Ok(admission) => {
                for d in admission.dry_run.iter().skip(plan.dry_run.len()) {
                    log_denial(log, level, &ns.code, d);
                    state.dry_run_reasons.push(d.error.reason());
                    if state.policy.is_none() {
                        state.policy = Some(d.policy.clone());
                        state.dry_run = Some(d.error.reason());
                    }
                }
                state.zone = Some(zone);
                state.takes = admission.takes;
                state.headers = admission.headers;
            }
            Err(refusal) => {
                for d in refusal.dry_run.iter().skip(plan.dry_run.len()) {
                    log_denial(log, level, &ns.code, d);
                }
                log_denial(log, level, &ns.code, &refusal.denial);
                state.headers = refusal.headers;
                state.retry_after_s = refusal.denial.retry_after_s;
                state.policy = Some(refusal.denial.policy);
                state.dry_run = None;
                return Err(refusal.denial.error);
            }
        }
    }
    state.output_cap = plan.output_cap;
    if let Some(cap) = plan.clamp_output {
        admitted.body = clamp_output(body, cap, output_field(uri));
    }
    admitted.prompt = prompt.counted;
    Ok(admitted)
}

/// The request body's prompt for the engine: a bound without the tokenizer, or the exact
/// count (kept, so the log phase does not count again).
struct BodyPrompt<'a> {
    body: Option<&'a [u8]>,
    model: Option<&'a str>,
    counted: Option<Option<PromptCount>>,
}

impl PromptTokens for BodyPrompt<'_> {
    fn bound(&mut self) -> u64 {
        if let Some(Some(c)) = self.counted {
            return c.tokens;
        }
        self.body
            .and_then(|b| prompt_bound(b, self.model))
            .unwrap_or(0)
    }

    fn exact(&mut self) -> u64 {
        let body = self.body;
        let model = self.model;
        let counted = *self
            .counted
            .get_or_insert_with(|| body.and_then(|b| count_prompt(b, model)));
        counted.map_or(0, |c| c.tokens)
    }
}

/// Settles token reservations with the request's actual usage (log phase).
pub fn settle_tokens(state: &mut PolicyState, total: Option<u64>) {
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

const LOG_WARN: ngx_uint_t = ngx::ffi::NGX_LOG_WARN as ngx_uint_t;

fn log_denial(log: *mut ngx::ffi::ngx_log_t, level: ngx_uint_t, namespace: &str, d: &Denial) {
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
        for (kind, gauge) in [("requests", h.requests), ("tokens", h.tokens)] {
            let Some(g) = gauge else { continue };
            ok &= add_response_header(
                r,
                &format!("x-ratelimit-limit-{kind}"),
                &g.limit.to_string(),
            );
            ok &= add_response_header(
                r,
                &format!("x-ratelimit-remaining-{kind}"),
                &g.remaining.to_string(),
            );
            ok &= add_response_header(
                r,
                &format!("x-ratelimit-reset-{kind}"),
                &reset_text(g.reset_ms),
            );
        }
        if status == 429 {
            if let Some(s) = state.retry_after_s {
                ok &= add_response_header(r, "Retry-After", &s.to_string());
            }
        }
        ok
    }
}
