//! Failover across providers. nginx's proxy module builds the upstream request once, so a
//! target with another host or credential cannot be reached by `proxy_next_upstream`; the
//! request is dispatched again instead: `proxy_intercept_errors` and `error_page ... =
//! @ai_gateway_failover` (`nginx-conf/ai_gateway_proxy.conf`) send an upstream failure that
//! happened before any byte reached the client to a named location, whose access phase comes
//! back here with the request context (found again through the pool cleanup). The next
//! target is chosen, or, when none is left, the gateway answers itself.

use ngx::ffi::{
    ngx_http_request_t, ngx_http_upstream_state_t, ngx_int_t, NGX_DECLINED, NGX_LOG_WARN,
};

use super::ctx::RequestCtx;
use super::headers::find_header;
use super::route::record_outcome;
use crate::core::pipeline::failover::{self as decide, Next};

/// Whether the request came back after its upstream attempt (an internal redirect since the
/// access phase let it through).
///
/// # Safety
/// `r` must be a live main request.
pub unsafe fn is_return(r: *mut ngx_http_request_t, ctx: &RequestCtx) -> bool {
    // SAFETY: plain fields of a live request.
    unsafe {
        ctx.route
            .as_ref()
            .is_some_and(|s| s.uri_changes != 0 && s.uri_changes != (*r).uri_changes())
    }
}

/// Moves a returned request on to its next target, or answers it: `NGX_DECLINED` (proxy to
/// the next target) or the status of the gateway's own answer.
///
/// # Safety
/// `r` must be the live main request of `ctx`, in its access phase.
pub unsafe fn next_attempt(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) -> ngx_int_t {
    // SAFETY: r is live; upstream_states and the old upstream (still attached until the proxy
    // module creates the next) are request-pool data.
    unsafe {
        let (status, retry_after) = last_attempt(r);
        let log = (*(*r).connection).log;
        let Some(snapshot) = ctx.snapshot.clone() else {
            return status as ngx_int_t;
        };
        let config = &snapshot.config;
        let Some(state) = ctx.route.as_mut() else {
            return status as ngx_int_t;
        };
        state.uri_changes = (*r).uri_changes();
        if let Some(t) = state.target() {
            record_outcome(r, config, t, true, retry_after.filter(|_| status == 429));
        }
        let Some(state) = ctx.route.as_mut() else {
            return status as ngx_int_t;
        };
        match decide::next_attempt(&config.routing, state, status, retry_after) {
            Next::Retry {
                failed,
                next,
                attempt,
            } => {
                ngx::ngx_log_error!(
                    NGX_LOG_WARN,
                    log,
                    "ai_gateway: target \"{}\" failed with {}, trying \"{}\" (attempt {})",
                    failed,
                    status,
                    next,
                    attempt
                );
                NGX_DECLINED as ngx_int_t
            }
            Next::Answer {
                failed,
                attempts,
                error,
            } => {
                ngx::ngx_log_error!(
                    NGX_LOG_WARN,
                    log,
                    "ai_gateway: target \"{}\" failed with {}, no target left after {} attempts",
                    failed,
                    status,
                    attempts
                );
                let code = error.status();
                ctx.error = Some(error);
                ctx.status = code as ngx_int_t;
                // the gateway's own answer must not go through error_page again
                (*r).set_error_page(1);
                code as ngx_int_t
            }
        }
    }
}

/// The status of the last upstream attempt (502 when it got no response) and the
/// provider's `Retry-After`, in seconds.
///
/// # Safety
/// `r` must be a live request.
unsafe fn last_attempt(r: *mut ngx_http_request_t) -> (u16, Option<u64>) {
    // SAFETY: upstream_states is null or an array in the request pool; r->upstream is null or
    // the last upstream, whose parsed headers live in the request pool.
    unsafe {
        let status = (*r)
            .upstream_states
            .as_ref()
            .filter(|s| s.nelts > 0 && !s.elts.is_null())
            .map(|s| {
                let states =
                    std::slice::from_raw_parts(s.elts as *const ngx_http_upstream_state_t, s.nelts);
                states.last().map_or(0, |st| st.status)
            })
            .unwrap_or(0);
        let status = if status == 0 {
            502
        } else {
            status.min(999) as u16
        };
        let retry_after = (*r).upstream.as_ref().and_then(|u| {
            find_header(&u.headers_in.headers, |h| {
                h.key
                    .as_bytes()
                    .eq_ignore_ascii_case(b"retry-after")
                    .then(|| {
                        std::str::from_utf8(h.value.as_bytes())
                            .ok()?
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
                    .flatten()
            })
        });
        (status, retry_after)
    }
}
