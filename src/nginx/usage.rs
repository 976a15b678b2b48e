//! Token usage of a gateway request: the response body is read as it goes to the client
//! (header filter picks JSON or SSE, body filter feeds every in-memory buffer to the core's
//! tracker, untouched), and the usage is settled once, first thing in the log phase (before
//! the access log reads the variables).

use ngx::ffi::{ngx_chain_t, ngx_http_request_t, NGX_LOG_INFO};

use super::body::request_body;
use super::ctx::RequestCtx;
use crate::core::tokens::{count_prompt, Encoding, PromptCount};
use crate::core::usage::{settle, Framing, ResponseTracker, TokenUsage, USAGE_MAX};

/// Starts reading the response of an allowed gateway request, if it is JSON or an event
/// stream (called from the header filter, for the main request).
///
/// # Safety
/// `r` must be a live request in its header filter.
pub unsafe fn start_tracking(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) {
    if !ctx.allowed() || ctx.error_body.is_some() || ctx.tracker.is_some() {
        return;
    }
    // SAFETY: headers_out is plain data of the live request.
    unsafe {
        let out = &(*r).headers_out;
        let Some(framing) = Framing::of_content_type(out.content_type.as_bytes()) else {
            return;
        };
        if let Some(ce) = out.content_encoding.as_ref() {
            let ce = ce.value.as_bytes();
            if !ce.is_empty() && ce != b"identity" {
                ngx::ngx_log_error!(
                    NGX_LOG_INFO,
                    (*(*r).connection).log,
                    "ai_gateway: response is \"{}\"-encoded, its usage is not read",
                    String::from_utf8_lossy(ce)
                );
                return;
            }
        }
        let model = ctx.summary.as_ref().and_then(|s| s.model.as_deref());
        let enc = model.and_then(Encoding::for_model);
        let mut tracker = ResponseTracker::new(framing, enc);
        if let Ok(len) = u64::try_from(out.content_length_n) {
            tracker.expect_len(len);
        }
        ctx.tracker = Some(Box::new(tracker));
    }
}

/// Feeds the buffers of `chain` to the tracker (a body filter call). Buffers in files (a
/// response nginx spilled to a temporary file) are not read: the tracker then lacks them.
///
/// # Safety
/// `chain` must be the chain nginx passed to the body filter.
pub unsafe fn feed(ctx: &mut RequestCtx, chain: *mut ngx_chain_t) {
    let Some(tracker) = ctx.tracker.as_mut() else {
        return;
    };
    // SAFETY: a body filter's chain links and buffers are valid for the call.
    unsafe {
        let mut cl = chain;
        while !cl.is_null() {
            let b = &*(*cl).buf;
            let in_memory = b.temporary() != 0 || b.memory() != 0 || b.mmap() != 0;
            if in_memory && !b.pos.is_null() && b.last > b.pos {
                let len = b.last.offset_from(b.pos) as usize;
                tracker.feed(std::slice::from_raw_parts(b.pos, len));
            } else if b.in_file() != 0 && b.file_last > b.file_pos {
                ctx.tracker_skipped = true;
            }
            if b.last_buf() != 0 {
                tracker.finish();
            }
            cl = (*cl).next;
        }
    }
}

/// The prompt's own count, made once per request and only when asked for (the provider did
/// not report its prompt tokens, or a variable wants them before it did).
///
/// # Safety
/// `r` must be a live request whose body was read.
unsafe fn prompt_count(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) -> Option<PromptCount> {
    if let Some(memo) = ctx.prompt {
        return memo;
    }
    let model = ctx.summary.as_ref().filter(|s| s.is_json)?.model.clone();
    // SAFETY: r is live and its body was read in the access phase.
    let counted = match unsafe { request_body(&*r) } {
        Ok(body) => count_prompt(&body, model.as_deref()),
        Err(_) => None,
    };
    ctx.prompt = Some(counted);
    counted
}

/// The request's usage so far (for variables read before the request ends), or the settled
/// usage once the log phase has settled it.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn current(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) -> TokenUsage {
    if let Some(u) = ctx.usage {
        return u;
    }
    if !ctx.allowed() {
        return TokenUsage::default();
    }
    // SAFETY: r is live (caller).
    if unsafe { refused(&*r) }
        && ctx
            .tracker
            .as_ref()
            .map_or(true, |t| t.reported().is_empty())
    {
        // a provider that refused the request (or no provider answered) billed nothing
        return TokenUsage::default();
    }
    let tracker = ctx.tracker.take();
    // SAFETY: r is live (caller).
    let u = settle(tracker.as_deref(), || unsafe { prompt_count(r, ctx) });
    ctx.tracker = tracker;
    u
}

/// Whether the response is an error (a provider's 4xx/5xx, or the gateway's 502/504 when
/// none answered), other than the client's own 499.
fn refused(r: &ngx_http_request_t) -> bool {
    let status = if r.headers_out.status != 0 {
        r.headers_out.status
    } else {
        r.err_status
    };
    status >= 400 && status != 499
}

/// Settles the usage for good (log phase, before the access log).
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn settle_final(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) -> TokenUsage {
    if ctx.usage.is_none() {
        if let (Some(st), Some(t)) = (ctx.rewrite.as_deref_mut(), ctx.tracker.as_deref_mut()) {
            // SAFETY: the held buffers are the provider's, unconsumed, in the live pool.
            unsafe { st.track_unsent(t) };
            ctx.tracker_skipped |= st.missed;
        }
        if ctx.tracker_skipped {
            // part of the body was never seen: what was seen is not the whole completion
            if let Some(t) = ctx.tracker.as_mut() {
                t.mark_incomplete();
            }
        }
        // SAFETY: r is live (caller).
        let u = unsafe { current(r, ctx) };
        if let Some(bad) = u.implausible {
            // SAFETY: r is live (caller).
            let log = unsafe { (*(*r).connection).log };
            ngx::ngx_log_error!(
                ngx::ffi::NGX_LOG_WARN,
                log,
                "ai_gateway: the provider reported {} {} tokens, more than the {} a request can use: its usage is not believed, the gateway's own count is used",
                bad.value,
                bad.field,
                USAGE_MAX
            );
        }
        ctx.usage = Some(u);
    }
    ctx.usage.unwrap_or_default()
}

/// An event stream answers as it comes: never buffered to a file (where the body filter
/// could not read it). Set in the header filter; nginx's upstream reads `buffering` after
/// sending the header, as for `X-Accel-Buffering: no`.
///
/// # Safety
/// `r` must be a live request in its header filter.
pub unsafe fn stream_unbuffered(r: *mut ngx_http_request_t, ctx: &RequestCtx) {
    let sse = ctx
        .tracker
        .as_ref()
        .is_some_and(|t| t.framing() == Framing::Sse);
    // SAFETY: r->upstream is null or the request's live upstream.
    unsafe {
        if let Some(u) = (*r).upstream.as_mut() {
            if sse {
                u.set_buffering(0);
            }
        }
    }
}
