//! Rewriting an event stream on its way to the client, in one body filter with buffers of
//! its own: the include_usage strip (`ai_gateway_stream_usage`: the client gets the stream it
//! asked for) and the output cap (`output_tokens` policies: the stream ends cleanly at the
//! cap). The tracker reads the provider's bytes before either (usage is the provider's).

use ngx::ffi::{
    ngx_alloc_chain_link, ngx_buf_t, ngx_chain_t, ngx_http_request_t, ngx_int_t, ngx_pcalloc,
    NGX_ERROR, NGX_LOG_INFO, NGX_OK,
};

use super::ctx::RequestCtx;
use crate::core::policy::stream_cap::{StreamApi, StreamCap};
use crate::core::tokens::Encoding;
use crate::core::usage::{Framing, UsageStripper};

/// The stages, and output buffers: memory the module owns, reused once nginx has sent what
/// they held.
pub struct RewriteState {
    stripper: Option<UsageStripper>,
    cap: Option<StreamCap>,
    bufs: Vec<OutBuf>,
    /// Rewriting stopped (a buffer in a file came): the rest passes unchanged.
    off: bool,
    /// The stream was ended at the cap and its last buffer sent: the rest is dropped.
    done: bool,
}

struct OutBuf {
    cl: *mut ngx_chain_t,
    mem: Vec<u8>,
}

/// Sets up the rewriting of an event stream when the gateway added `include_usage` to an
/// OpenAI stream request, or a policy caps the output of a chat or messages stream; the
/// length then changes, so the response loses its `Content-Length`. Called from the header
/// filter after `usage::start_tracking`.
///
/// # Safety
/// `r` must be a live request in its header filter.
pub unsafe fn start(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) {
    let sse = ctx
        .tracker
        .as_ref()
        .is_some_and(|t| t.framing() == Framing::Sse);
    if !sse || ctx.rewrite.is_some() {
        return;
    }
    // SAFETY: r is live (caller).
    let api = unsafe { StreamApi::of_path((*r).uri.as_bytes()) };
    let cap = match (ctx.policy.as_ref().and_then(|p| p.output_cap), api) {
        (Some(max), Some(api)) => {
            let model = ctx.summary.as_ref().and_then(|s| s.model.as_deref());
            let enc = model
                .and_then(Encoding::for_model)
                .unwrap_or(Encoding::O200k);
            Some(StreamCap::new(max, api, enc))
        }
        _ => None,
    };
    let stripper = ctx.added_include_usage.then(UsageStripper::default);
    if stripper.is_none() && cap.is_none() {
        return;
    }
    // SAFETY: headers_out is plain data of the live request.
    unsafe {
        let out = &mut (*r).headers_out;
        out.content_length_n = -1;
        if !out.content_length.is_null() {
            (*out.content_length).hash = 0;
            out.content_length = std::ptr::null_mut();
        }
    }
    ctx.rewrite = Some(Box::new(RewriteState {
        stripper,
        cap,
        bufs: Vec::new(),
        off: false,
        done: false,
    }));
}

impl RewriteState {
    /// Runs `data` through the stages into `out`.
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        match (&mut self.stripper, &mut self.cap) {
            (Some(s), Some(c)) => {
                let mut mid = Vec::new();
                s.feed(data, &mut mid);
                c.feed(&mid, out);
            }
            (Some(s), None) => s.feed(data, out),
            (None, Some(c)) => c.feed(data, out),
            (None, None) => out.extend_from_slice(data),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match (&mut self.stripper, &mut self.cap) {
            (Some(s), Some(c)) => {
                let mut mid = Vec::new();
                s.finish(&mut mid);
                c.feed(&mid, out);
                c.finish(out);
            }
            (Some(s), None) => s.finish(out),
            (None, Some(c)) => c.finish(out),
            (None, None) => {}
        }
    }

    fn capped(&self) -> bool {
        self.cap.as_ref().is_some_and(StreamCap::ended)
    }
}

/// The rewriting body filter: the input's bytes go through the stages into buffers of our
/// own (the input buffers are marked consumed), which go to `next`. Once the cap ended the
/// stream (its last buffer sent), whatever else the provider sends is consumed and dropped.
///
/// # Safety
/// `r` and `input` as nginx passes them to a body filter; `next` is the next body filter.
pub unsafe fn filter(
    r: *mut ngx_http_request_t,
    st: &mut RewriteState,
    input: *mut ngx_chain_t,
    next: unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_chain_t) -> ngx_int_t,
) -> ngx_int_t {
    // SAFETY: the chain and its buffers are valid for the call; our chain links and buffers
    // live in the request pool, and their memory (OutBuf::mem) is only rewritten once nginx
    // has consumed it (pos == last), and lives in the request context, dropped with the pool.
    unsafe {
        if st.done {
            let mut cl = input;
            while !cl.is_null() {
                let b = &mut *(*cl).buf;
                b.pos = b.last;
                if b.in_file() != 0 {
                    b.file_pos = b.file_last;
                }
                cl = (*cl).next;
            }
            return NGX_OK as ngx_int_t;
        }
        if st.off {
            return next(r, input);
        }
        let mut out = Vec::new();
        let (mut last, mut flush) = (false, false);
        let mut cl = input;
        while !cl.is_null() {
            let b = &mut *(*cl).buf;
            if b.in_file() != 0 && b.temporary() == 0 && b.memory() == 0 && b.mmap() == 0 {
                // cannot happen for an unbuffered stream; if it does, stop rewriting and
                // pass the rest on as it is
                st.off = true;
                st.finish(&mut out);
                break;
            }
            if !b.pos.is_null() && b.last > b.pos && !st.capped() {
                let len = b.last.offset_from(b.pos) as usize;
                st.feed(std::slice::from_raw_parts(b.pos, len), &mut out);
            }
            b.pos = b.last;
            if b.last_buf() != 0 || b.last_in_chain() != 0 && r != (*r).main {
                last = true;
                st.finish(&mut out);
            }
            if b.flush() != 0 {
                flush = true;
            }
            cl = (*cl).next;
        }
        let mut rest = cl;
        if st.capped() {
            // the stream is complete for the client
            if !last {
                ngx::ngx_log_error!(
                    NGX_LOG_INFO,
                    (*(*r).connection).log,
                    "ai_gateway: stream ended at the output cap ({} tokens sent)",
                    st.cap.as_ref().map_or(0, StreamCap::tokens_sent)
                );
            }
            last = true;
            st.done = true;
            while !rest.is_null() {
                let b = &mut *(*rest).buf;
                b.pos = b.last;
                rest = (*rest).next;
            }
        }
        if out.is_empty() && !last && !flush && rest.is_null() {
            return NGX_OK as ngx_int_t;
        }
        let Some(head) = out_buf(r, st, out, last) else {
            return NGX_ERROR as ngx_int_t;
        };
        (*head).next = rest;
        next(r, head)
    }
}

/// A free output buffer holding `bytes` (flushed: events go out as they come).
///
/// # Safety
/// `r` must be a live request.
unsafe fn out_buf(
    r: *mut ngx_http_request_t,
    st: &mut RewriteState,
    bytes: Vec<u8>,
    last: bool,
) -> Option<*mut ngx_chain_t> {
    // SAFETY: see strip_filter.
    unsafe {
        let free = st.bufs.iter().position(|o| {
            let b = &*(*o.cl).buf;
            b.pos == b.last
        });
        let i = match free {
            Some(i) => i,
            None => {
                let pool = (*r).pool;
                let b = ngx_pcalloc(pool, std::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
                let cl = ngx_alloc_chain_link(pool);
                if b.is_null() || cl.is_null() {
                    return None;
                }
                (*cl).buf = b;
                st.bufs.push(OutBuf {
                    cl,
                    mem: Vec::new(),
                });
                st.bufs.len() - 1
            }
        };
        let o = &mut st.bufs[i];
        o.mem = bytes;
        let b = &mut *(*o.cl).buf;
        *b = std::mem::zeroed();
        b.start = o.mem.as_mut_ptr();
        b.pos = b.start;
        b.last = b.start.add(o.mem.len());
        b.end = b.last;
        if o.mem.is_empty() {
            b.set_sync(1);
        } else {
            b.set_memory(1);
        }
        b.set_flush(1);
        if last {
            b.set_last_buf(if r == (*r).main { 1 } else { 0 });
            b.set_last_in_chain(1);
        }
        (*o.cl).next = std::ptr::null_mut();
        Some(o.cl)
    }
}
