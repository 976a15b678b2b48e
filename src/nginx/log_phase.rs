//! The log-phase handler: settles each gateway request's token usage (it runs before the
//! access log, so `$ai_gateway_*_tokens` see the settled numbers) and records the request
//! into the metrics zone (no IO, no lock once its series exist); and the in-flight gauge's
//! per-request guard.

use std::borrow::Cow;
use std::ptr::NonNull;
use std::time::Instant;

use ngx::ffi::{
    ngx_http_request_t, ngx_http_upstream_state_t, ngx_int_t, ngx_msec_t, ngx_shm_zone_t,
    ngx_timeofday, NGX_DECLINED,
};
use ngx::http::HttpModuleMainConf;

use super::ctx::{self, RequestCtx};
use super::guard::guard;
use super::module::Module;
use super::policy;
use super::route;
use super::shm;
use super::usage;
use super::usage_log;
use crate::core::metrics::{RequestSample, Store, UpstreamAttempt, Usage};
use crate::core::pipeline::finish;

const DECLINED: ngx_int_t = NGX_DECLINED as ngx_int_t;

/// A request counted in `gateway_requests_in_flight` until this is dropped (with the request
/// context, by the request pool's cleanup: every way a request ends releases it).
pub struct Inflight {
    store: Store<'static>,
    entry: usize,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.store.inflight_leave(self.entry);
    }
}

/// The metrics zone's store, if the http block has one.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn metrics_store(r: *mut ngx_http_request_t) -> Option<Store<'static>> {
    // SAFETY: r is live; the zone belongs to this cycle and was initialised at start.
    unsafe {
        let zone: NonNull<ngx_shm_zone_t> = Module::main_conf(&*r)?.metrics_zone?;
        shm::store(zone)
    }
}

/// Counts the request as in flight (called once the access handler has decided).
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn enter(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) {
    if ctx.inflight.is_some() {
        return;
    }
    // SAFETY: r is live (caller).
    if let Some(store) = unsafe { metrics_store(r) } {
        let entry = store.inflight_enter(ctx.namespace_code().unwrap_or(""));
        ctx.inflight = Some(Inflight { store, entry });
    }
}

/// `NGX_HTTP_LOG_PHASE` handler.
pub unsafe extern "C" fn ngx_http_ai_gateway_log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    guard(log, (), || unsafe { record(r) });
    DECLINED
}

unsafe fn record(r: *mut ngx_http_request_t) {
    let started = Instant::now();
    // SAFETY: r is live; the log phase runs once, for the main request.
    unsafe {
        // only requests the access handler of a gateway location has seen
        let Some(ctx) = ctx::get(r).filter(|c| c.snapshot.is_some()) else {
            return;
        };
        let tokens = usage::settle_final(r, ctx);
        let req = &*r;
        let status = if req.err_status != 0 {
            req.err_status
        } else {
            req.headers_out.status
        };
        if let (Some(route), Some(config)) = (ctx.route.as_ref(), ctx.config()) {
            let last = req.upstream_states.as_ref().and_then(|s| {
                (s.nelts > 0 && !s.elts.is_null())
                    .then(|| {
                        std::slice::from_raw_parts(
                            s.elts as *const ngx_http_upstream_state_t,
                            s.nelts,
                        )
                        .last()
                        .map(|st| st.status.min(999) as u16)
                    })
                    .flatten()
            });
            if finish::answered(last, ctx.error.is_some()) {
                if let Some(t) = route.target() {
                    route::record_outcome(r, config, t, false, None);
                }
            }
        }
        if let Some(state) = ctx.policy.as_deref_mut() {
            let status = status.clamp(0, 999) as u16;
            policy::settle_tokens(state, finish::settled_tokens(tokens.total(), status));
        }
        let Some(store) = metrics_store(r) else {
            return;
        };
        let ms = elapsed_ms(req);
        if let Some(mcf) = Module::main_conf(req) {
            usage_log::push(r, mcf, ctx, status.clamp(0, 999) as u16, &tokens, ms);
        }
        let namespace = ctx.namespace_code().unwrap_or("");
        store.record_request(&RequestSample {
            namespace,
            model: ctx
                .summary
                .as_ref()
                .and_then(|s| s.model.as_deref())
                .unwrap_or(""),
            status: status.clamp(0, 999) as u16,
            duration_ms: ms,
            usage: match (tokens.prompt, tokens.completion) {
                (Some(prompt), Some(completion)) => Some(Usage { prompt, completion }),
                _ => None,
            },
        });
        if let Some(err) = &ctx.error {
            store.record_rejection(namespace, err.reason());
        }
        for reason in ctx.policy.iter().flat_map(|p| p.dry_run_reasons.iter()) {
            store.record_dry_run(namespace, reason);
        }
        // routed requests: each attempt is labelled with its target's name
        let targets: Option<Vec<&str>> = ctx
            .route
            .as_ref()
            .zip(ctx.config())
            .map(|(st, cfg)| finish::attempted_targets(cfg, st));
        record_upstreams(req, &store, targets.as_deref());
        let ns = ctx.overhead_ns + started.elapsed().as_nanos() as u64;
        store.observe_overhead(ns);
    }
}

/// Milliseconds since `r` started.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn elapsed_ms(r: &ngx_http_request_t) -> u64 {
    // nginx's cached time, on its thread
    let now = ngx_timeofday();
    let ms = (now.sec - r.start_sec) * 1000 + (now.msec as i64 - r.start_msec as i64);
    ms.max(0) as u64
}

/// One sample per upstream attempt (`$upstream_status` / `$upstream_response_time`).
///
/// # Safety
/// `r` must be a live request.
unsafe fn record_upstreams(r: &ngx_http_request_t, store: &Store, targets: Option<&[&str]>) {
    // SAFETY: upstream_states is null or an array of states in the request pool; u and its
    // configuration outlive the request.
    unsafe {
        let Some(states) = r.upstream_states.as_ref() else {
            return;
        };
        if states.nelts == 0 || states.elts.is_null() {
            return;
        }
        let states = std::slice::from_raw_parts(
            states.elts as *const ngx_http_upstream_state_t,
            states.nelts,
        );
        let name = upstream_name(r);
        // entries without a peer separate the upstreams of internal redirects (error_page to
        // another proxying location): only the last one's name is known, earlier attempts are
        // labelled with their peer's address
        let last = states.iter().rposition(|s| !s.peer.is_null());
        let last_group = states
            .iter()
            .rposition(|s| s.peer.is_null())
            .map_or(0, |i| i + 1);
        for (i, state) in states.iter().enumerate() {
            let Some(peer) = state.peer.as_ref() else {
                continue;
            };
            // the attempt this state belongs to: separators before it
            let group = states[..i].iter().filter(|s| s.peer.is_null()).count();
            let peer_name;
            let routed = targets.and_then(|t| t.get(group)).filter(|t| !t.is_empty());
            let upstream = if let Some(target) = routed {
                target
            } else if i >= last_group {
                &*name
            } else {
                peer_name = String::from_utf8_lossy(peer.as_bytes());
                &*peer_name
            };
            store.record_upstream(&UpstreamAttempt {
                upstream,
                status: state.status.min(999) as u16,
                duration_ms: (state.response_time != ngx_msec_t::MAX)
                    .then_some(state.response_time as u64),
                retried: Some(i) != last,
            });
        }
    }
}

/// The upstream's name: its `upstream {}` block, or `host:port` of a `proxy_pass` URL.
///
/// # Safety
/// `r` must be a live request.
unsafe fn upstream_name(r: &ngx_http_request_t) -> Cow<'_, str> {
    // SAFETY: as for record_upstreams.
    unsafe {
        let Some(u) = r.upstream.as_ref() else {
            return Cow::Borrowed("");
        };
        let (host, port) = if let Some(uscf) = u.upstream.as_ref() {
            // the implicit upstream of `proxy_pass http://host:port` keeps the port apart
            (&uscf.host, uscf.port)
        } else if let Some(resolved) = u.resolved.as_ref() {
            (&resolved.host, resolved.port)
        } else {
            return Cow::Borrowed("");
        };
        let host = String::from_utf8_lossy(host.as_bytes());
        if port == 0 {
            host
        } else {
            Cow::Owned(format!("{host}:{port}"))
        }
    }
}
