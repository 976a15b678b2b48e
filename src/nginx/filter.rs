//! Header and body filters: in gateway locations, the error pages nginx generates itself
//! (the gateway's own rejections, 413 from `client_max_body_size`, 502/504 from the proxy,
//! ...) are replaced by JSON in the shape of the client's API (OpenAI's, or Anthropic's: see
//! `core::error_shape`), with the request's id in `x-request-id` / `request-id`. Pages an operator configured with `error_page`
//! (static files, other locations) are left alone, and every other response passes through
//! untouched.

use ngx::ffi::{
    ngx_alloc_chain_link, ngx_buf_t, ngx_chain_t, ngx_http_output_body_filter_pt,
    ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_int_t, ngx_pcalloc, ngx_str_t,
    NGX_ERROR, NGX_OK,
};
use ngx::http::HttpModuleLocationConf;

use super::ctx;
use super::guard::guard;
use super::headers::{add_response_header, request_header};
use super::module::Module;
use super::policy;
use super::rewrite;
use super::usage;
use super::usage_log;
use crate::core::admin::error::ApiError;
use crate::core::error::GatewayError;
use crate::core::error_shape::ErrorShape;

static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;
static mut NEXT_BODY_FILTER: ngx_http_output_body_filter_pt = None;

const ERROR: ngx_int_t = NGX_ERROR as ngx_int_t;

/// Puts the filters on top of nginx's chains (called from postconfiguration).
///
/// # Safety
/// Only during configuration, on the nginx thread.
pub unsafe fn install() {
    // SAFETY: configuration runs single-threaded; this is how every nginx filter registers.
    unsafe {
        NEXT_HEADER_FILTER = ngx::ffi::ngx_http_top_header_filter;
        ngx::ffi::ngx_http_top_header_filter = Some(ngx_http_ai_gateway_header_filter);
        NEXT_BODY_FILTER = ngx::ffi::ngx_http_top_body_filter;
        ngx::ffi::ngx_http_top_body_filter = Some(ngx_http_ai_gateway_body_filter);
    }
}

unsafe extern "C" fn ngx_http_ai_gateway_header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    if !guard(log, false, || unsafe { prepare_json_error(r) }) {
        return ERROR;
    }
    let headers_ok = guard(log, false, || unsafe {
        match ctx::get(r).filter(|_| r == (*r).main) {
            Some(ctx) => {
                let limited = ctx
                    .policy
                    .as_deref()
                    .is_some_and(|s| s.retry_after_s.is_some());
                let policy_ok = match ctx.policy.as_deref() {
                    Some(state) => policy::add_headers(r, state),
                    None => true,
                };
                // every target failed with 429: the last provider's Retry-After
                let provider_retry = ctx
                    .route
                    .as_ref()
                    .and_then(|s| s.retry_after_s)
                    .filter(|_| !limited && (*r).headers_out.status == 429);
                match provider_retry {
                    Some(s) => policy_ok && add_response_header(r, "Retry-After", &s.to_string()),
                    None => policy_ok,
                }
            }
            None => true,
        }
    });
    if !headers_ok {
        return ERROR;
    }
    guard(log, (), || unsafe {
        if r == (*r).main {
            if let Some(ctx) = ctx::get(r) {
                ctx.header_ms = Some(super::log_phase::elapsed_ms(&*r));
                usage::start_tracking(r, ctx);
                rewrite::start(r, ctx);
                usage::stream_unbuffered(r, ctx);
            }
        }
    });
    // SAFETY: NEXT_HEADER_FILTER was set at configuration time.
    unsafe {
        match NEXT_HEADER_FILTER {
            Some(next) => next(r),
            None => ERROR,
        }
    }
}

unsafe extern "C" fn ngx_http_ai_gateway_body_filter(
    r: *mut ngx_http_request_t,
    input: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    guard(log, ERROR, || unsafe { body_filter(r, input) })
}

/// Is this one of nginx's built-in error pages, in a place where JSON is wanted?
///
/// # Safety
/// `r` must be a live request.
unsafe fn is_nginx_error_page(r: &ngx_http_request_t) -> bool {
    if r.err_status < 400 || !std::ptr::eq(r, r.main) {
        return false;
    }
    let out = &r.headers_out;
    let builtin_page = out.content_type.as_bytes() == b"text/html"
        || (out.content_type.len == 0 && out.content_length_n == 0);
    builtin_page && out.last_modified_time == -1 && out.etag.is_null()
}

/// Switches an nginx error page to JSON: content type and length now, body in the body filter.
/// Returns false only when memory runs out.
unsafe fn prepare_json_error(r: *mut ngx_http_request_t) -> bool {
    // SAFETY: r is live; headers_out fields are plain data owned by the request.
    unsafe {
        if !is_nginx_error_page(&*r) {
            return true;
        }
        let own_error = ctx::get(r).is_some_and(|c| c.error.is_some());
        let lcf = Module::location_conf(&*r);
        let enabled = lcf.is_some_and(|l| l.is_enabled());
        let admin = lcf.is_some_and(|l| l.admin);
        if !own_error && !enabled && !admin {
            return true;
        }
        let Some(ctx) = ctx::get_or_create(r) else {
            return false;
        };
        let status = (*r).err_status as u16;
        let body = if admin && !own_error {
            // the admin API's own error shape
            let mut b = admin_error(status).to_json().to_string().into_bytes();
            b.push(b'\n');
            b
        } else {
            let err = match &ctx.error {
                Some(e) if e.status() == status => e.clone(),
                _ => GatewayError::Http(status),
            };
            let shape = error_shape(&*r);
            let sent = shape.status(status);
            let id = usage_log::request_id(ctx);
            let id = std::str::from_utf8(&id).unwrap_or("");
            if !add_response_header(r, shape.request_id_header(), id) {
                return false;
            }
            if sent != status {
                // Anthropic's 529: nginx has no reason phrase for it
                (*r).headers_out.status = sent as usize;
                (*r).headers_out.status_line = ngx_str_t {
                    len: OVERLOADED_LINE.len(),
                    data: OVERLOADED_LINE.as_ptr().cast_mut(),
                };
            }
            let body = err.render(shape, sent, id);
            ctx.rendered = Some(err);
            body
        };

        let out = &mut (*r).headers_out;
        out.content_type = ngx_str_t {
            len: JSON_TYPE.len(),
            data: JSON_TYPE.as_ptr().cast_mut(),
        };
        out.content_type_len = JSON_TYPE.len();
        out.content_type_lowcase = std::ptr::null_mut();
        out.charset.len = 0;
        out.content_length_n = body.len() as i64;
        if !out.content_length.is_null() {
            (*out.content_length).hash = 0;
            out.content_length = std::ptr::null_mut();
        }
        ctx.error_body = Some(body);
        ctx.error_body_sent = false;
        true
    }
}

const JSON_TYPE: &[u8] = b"application/json";
const OVERLOADED_LINE: &[u8] = b"529 Overloaded";

/// The error shape the client expects, from its request.
///
/// # Safety
/// `r` must be a live request.
unsafe fn error_shape(r: &ngx_http_request_t) -> ErrorShape {
    // SAFETY: as the caller's.
    let version = unsafe { request_header(r, b"anthropic-version").is_some() };
    ErrorShape::of_request(r.uri.as_bytes(), version)
}

/// An error page nginx makes in an admin API location (413 from `client_max_body_size`,
/// 400 for a malformed request, ...), as the admin API's error.
fn admin_error(status: u16) -> ApiError {
    let (code, message) = match status {
        413 => (
            "request_too_large",
            "the request body is larger than this location's client_max_body_size",
        ),
        400 => ("bad_request", "the request is malformed"),
        408 => ("timeout", "the request was not received in time"),
        _ => ("http_error", "the request failed"),
    };
    ApiError::new(status, code, message)
}

unsafe fn body_filter(r: *mut ngx_http_request_t, input: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: r is live; the chain we build lives in the request pool and points at the
    // JSON owned by the request context, which lives as long as the pool.
    unsafe {
        let Some(next) = NEXT_BODY_FILTER else {
            return ERROR;
        };
        let Some(ctx) = ctx::get(r) else {
            return next(r, input);
        };
        if r == (*r).main {
            // a rewritten stream is read by the tracker as it is rewritten (one pass)
            if let (Some(st), Some(tracker)) =
                (ctx.rewrite.as_deref_mut(), ctx.tracker.as_deref_mut())
            {
                if !st.off {
                    let rc = rewrite::filter(r, st, tracker, input, next);
                    ctx.tracker_skipped |= st.missed;
                    return rc;
                }
            }
            usage::feed(ctx, input);
            if ctx.rewrite.is_some() {
                return next(r, input);
            }
        }
        let Some(body) = ctx.error_body.as_ref() else {
            return next(r, input);
        };
        if ctx.error_body_sent {
            // the rest of nginx's HTML page is dropped
            return NGX_OK as ngx_int_t;
        }
        ctx.error_body_sent = true;
        let Some(cl) = memory_chain(r, body, true) else {
            return ERROR;
        };
        next(r, cl)
    }
}

/// A one-buffer chain over `bytes` (not copied: they must outlive the request's output).
///
/// # Safety
/// `r` must be a live request; `bytes` must stay valid until the request pool is destroyed.
pub unsafe fn memory_chain(
    r: *mut ngx_http_request_t,
    bytes: &[u8],
    last: bool,
) -> Option<*mut ngx_chain_t> {
    // SAFETY: pool allocations; the buffer only reads `bytes`.
    unsafe {
        let pool = (*r).pool;
        let b = ngx_pcalloc(pool, std::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
        let cl = ngx_alloc_chain_link(pool);
        if b.is_null() || cl.is_null() {
            return None;
        }
        (*b).pos = bytes.as_ptr().cast_mut();
        (*b).last = (*b).pos.add(bytes.len());
        (*b).set_memory(1);
        if last {
            (*b).set_last_buf(if r == (*r).main { 1 } else { 0 });
            (*b).set_last_in_chain(1);
        } else {
            (*b).set_flush(1);
        }
        (*cl).buf = b;
        (*cl).next = std::ptr::null_mut();
        Some(cl)
    }
}
