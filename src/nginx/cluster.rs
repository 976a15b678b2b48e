//! A gateway request whose namespace has cluster counters (`core::cluster`): after the
//! zone's counters were taken, the request is parked on the async bridge while Redis takes
//! the cluster counters, then resumed where the access decision left off. While the breaker
//! is open (or the bridge is not running) the request is decided at once without Redis.

use std::time::Instant;

use ngx::ffi::{ngx_http_request_t, ngx_int_t, NGX_AGAIN, NGX_DONE, NGX_LOG_WARN};

use super::access::{apply, proceed};
use super::body::request_body;
use super::bridge::{self, Resume};
use super::cluster_sync;
use super::ctx;
use super::log_phase::metrics_store;
use super::policy::Held;
use super::route::{health_zone, NgxEnv};
use crate::core::cluster::ask::Ask;
use crate::core::cluster::breaker::Gate;
use crate::core::cluster::OnFailure;
use crate::core::pipeline::cluster::{conclude, degrade};
use crate::core::pipeline::{BodyPrompt, Decision, Verdict};
use crate::core::tokens::PromptCount;
use crate::runtime::cluster::{installed, Admitted, Client, Hold, Replay};

/// What [`ask`] returns when the request waits for Redis (the body handler then leaves it).
pub const PARKED: ngx_int_t = NGX_AGAIN as ngx_int_t;

/// Asks Redis for the decision's cluster counters: parks the request and returns
/// [`PARKED`], or decides without Redis and returns the request's status.
///
/// # Safety
/// `r` must be a live main request whose body has been read, with its context.
pub unsafe fn ask(r: *mut ngx_http_request_t, mut d: Decision) -> ngx_int_t {
    let Some(ask) = d.ask.take() else {
        // SAFETY: as the caller's.
        return unsafe { apply(r, d, Held::default()) };
    };
    let client = installed();
    let gate = client.as_ref().map_or(Gate::Skip, |c| c.gate());
    let Some(client) = client.filter(|_| gate != Gate::Skip) else {
        // SAFETY: as the caller's.
        unsafe {
            let replay = without_redis(r, &mut d, &ask, installed().as_ref());
            return apply(r, d, Held { hold: None, replay });
        }
    };
    // SAFETY: as the caller's.
    if unsafe { park_ask(r, d, ask, &client) } {
        PARKED
    } else {
        // the bridge is not running or memory ran out: the decision is gone with the
        // closure; the request fails rather than pass unlimited
        ngx_http_internal_server_error()
    }
}

/// Parks `r` while Redis answers `ask`; false when it could not be parked.
unsafe fn park_ask(
    r: *mut ngx_http_request_t,
    d: Decision,
    ask: Box<Ask>,
    client: &std::sync::Arc<Client>,
) -> bool {
    // the runtime's own timeout answers first; the park's timer is a backstop
    let backstop = client.node.timeout_ms.saturating_mul(2).saturating_add(100);
    let fut = client.clone().admit((*ask).clone());
    let resume: Resume = Box::new(move |r, value| {
        let value = value.and_then(|v| v.downcast::<Admitted>().ok());
        // SAFETY: the bridge resumes a live request on the nginx thread.
        unsafe { resume(r, d, &ask, value.map(|v| *v)) }
    });
    // SAFETY: r is live, its body read (caller).
    unsafe { bridge::park(r, backstop, fut, resume) }
}

/// The prompt's exact count (and the count kept for the log phase), from the body the
/// decision was made on.
unsafe fn recount(
    r: *mut ngx_http_request_t,
    d: &Decision,
) -> Option<(u64, Option<Option<PromptCount>>)> {
    let summary = d.summary.as_ref()?;
    // SAFETY: r is live and its body read (caller).
    let body = unsafe { request_body(&*r) }.ok()?;
    let text = std::str::from_utf8(&body).ok();
    let mut prompt = BodyPrompt::new(text, &summary.spans, summary.model.as_deref());
    let n = prompt.exact_count();
    Some((n, prompt.counted()))
}

fn ngx_http_internal_server_error() -> ngx_int_t {
    ngx::ffi::NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
}

/// Goes on with a request Redis answered (or did not: `None`, the backstop fired).
unsafe fn resume(
    r: *mut ngx_http_request_t,
    mut d: Decision,
    ask: &Ask,
    admitted: Option<Admitted>,
) -> ngx_int_t {
    let started = Instant::now();
    // SAFETY: r is live (the bridge delivers only to parked requests).
    unsafe {
        let Some(snapshot) = ctx::get(r).and_then(|c| c.snapshot.clone()) else {
            return ngx::ffi::NGX_ERROR as ngx_int_t;
        };
        let mut env = NgxEnv {
            zone: health_zone(r),
        };
        let client = installed();
        let mut kept: Option<Hold> = None;
        let mut replay: Option<Replay> = None;
        match admitted {
            Some(Admitted {
                reply: Ok(reply),
                hold,
            }) => {
                // a token counter refused the prompt's bound: ask again with the exact
                // count (near the limit only)
                if hold.is_none() && ask.needs_exact_prompt(&reply) {
                    if let (Some((n, counted)), Some(c)) = (recount(r, &d), client.as_ref()) {
                        d.prompt = counted;
                        let again = Box::new(ask.with_exact_prompt(n));
                        if !park_ask(r, d, again, c) {
                            proceed(r, ngx_http_internal_server_error(), started);
                        }
                        // the new park holds the request; this delivery's finalize gives
                        // back the first one's reference
                        return NGX_DONE as ngx_int_t;
                    }
                }
                if !conclude(&snapshot.config, &mut d, ask, &reply, &mut env) {
                    warn(
                        r,
                        "an answer of the admit script that does not match the request",
                    );
                    replay = without_redis(r, &mut d, ask, client.as_ref());
                } else if matches!(d.verdict, Verdict::Allow) {
                    kept = hold.map(|mut h| {
                        h.keep();
                        h
                    });
                }
            }
            Some(Admitted { reply: Err(f), .. }) => {
                warn(r, &f.to_string());
                replay = without_redis(r, &mut d, ask, client.as_ref());
            }
            None => {
                warn(r, "no answer in time");
                replay = without_redis(r, &mut d, ask, client.as_ref());
            }
        }
        let status = apply(r, d, Held { hold: kept, replay });
        cluster_sync::drain_stats();
        proceed(r, status, started);
        NGX_DONE as ngx_int_t
    }
}

unsafe fn warn(r: *mut ngx_http_request_t, why: &str) {
    // SAFETY: r is live (caller).
    let log = unsafe { (*(*r).connection).log };
    ngx::ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "ai_gateway: cluster limits: Redis did not decide the request ({}); deciding without it",
        why
    );
}

/// Decides the cluster counters without Redis (`fail_open` / `fail_closed`), counts it;
/// what a `fail_open` admission took, for Redis to learn when the request ends.
unsafe fn without_redis(
    r: *mut ngx_http_request_t,
    d: &mut Decision,
    ask: &Ask,
    client: Option<&std::sync::Arc<Client>>,
) -> Option<Replay> {
    // SAFETY: r is live (caller).
    unsafe {
        let snapshot = ctx::get(r).and_then(|c| c.snapshot.clone())?;
        let mut env = NgxEnv {
            zone: health_zone(r),
        };
        let retry = client.map_or(1, |c| c.retry_after_s());
        let how = degrade(&snapshot.config, d, ask, &mut env, retry);
        if let Some(store) = metrics_store(r) {
            store.degraded(how == OnFailure::Closed);
        }
        if how == OnFailure::Open && matches!(d.verdict, Verdict::Allow) {
            return client.map(|c| c.replay(ask));
        }
        None
    }
}
