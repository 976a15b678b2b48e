//! Rewriting an event stream on its way to the client, in one body filter with buffers of
//! its own: the include_usage strip (`ai_gateway_stream_usage`: the client gets the stream it
//! asked for) and the output cap (`output_tokens` policies: the stream ends cleanly at the
//! cap). The tracker reads the provider's bytes before either (usage is the provider's).
//!
//! Buffers follow nginx's own discipline: the rewritten bytes go out in buffers of the request
//! pool tagged as the module's, taken from a free list (`ngx_chain_get_free_buf`) and moved
//! back to it once sent (`ngx_chain_update_chains`), as nginx's own filters do. Backpressure
//! works as for a stream nginx passes through unchanged: the provider's buffers are held (not
//! marked sent) while the rewritten bytes waiting for the client reach the location's
//! `proxy_buffer_size`, so nginx stops reading from the provider until the client takes more.
//! A rewritten stream holds at most: the provider's buffer (`proxy_buffer_size`), rewritten
//! bytes not yet sent (below `proxy_buffer_size` plus one provider buffer's worth, in buffers
//! of `proxy_buffer_size`), and the stages' one incomplete event (at most 1 MiB, see
//! `EVENT_MAX`).

use std::collections::VecDeque;

use ngx::ffi::{
    ngx_alloc_chain_link, ngx_buf_t, ngx_buf_tag_t, ngx_chain_get_free_buf, ngx_chain_t,
    ngx_chain_update_chains, ngx_http_request_t, ngx_int_t, ngx_palloc, NGX_ERROR, NGX_LOG_INFO,
};
use ngx::http::HttpModule;

use super::ctx::RequestCtx;
use super::module::Module;
use crate::core::policy::stream_cap::{StreamApi, StreamCap};
use crate::core::tokens::Encoding;
use crate::core::usage::{Framing, UsageStripper};

/// Rewritten bytes not yet sent past which no more of the provider's bytes are taken, when
/// the request has no upstream to take `proxy_buffer_size` from.
const DEFAULT_HOLD: usize = 16 * 1024;

/// Smallest output buffer.
const MIN_BUF: usize = 1024;

/// The stages, the provider's buffers not yet taken, and the module's output buffers.
pub struct RewriteState {
    stripper: Option<UsageStripper>,
    cap: Option<StreamCap>,
    /// Output buffers sent (free) and still going out (busy), as nginx's filters keep them.
    free: *mut ngx_chain_t,
    busy: *mut ngx_chain_t,
    /// The provider's buffers (in order) that arrived while the client was behind: left
    /// unsent, so nginx does not reuse their memory or read more than its buffer holds.
    held: VecDeque<*mut ngx_buf_t>,
    /// Unsent rewritten bytes past which `held` is not taken from; also the size of the
    /// output buffers.
    hold_at: usize,
    /// Output of the stages, reused from call to call.
    out: Vec<u8>,
    mid: Vec<u8>,
    /// Rewriting stopped (a buffer in a file came): the rest passes unchanged.
    off: bool,
    /// The stream was ended at the cap and its last buffer sent: the rest is dropped.
    done: bool,
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
    // SAFETY: headers_out is plain data of the live request; r->upstream is null or live,
    // its conf outlives the request.
    let hold_at = unsafe {
        let out = &mut (*r).headers_out;
        out.content_length_n = -1;
        if !out.content_length.is_null() {
            (*out.content_length).hash = 0;
            out.content_length = std::ptr::null_mut();
        }
        (*r).upstream
            .as_ref()
            .and_then(|u| u.conf.as_ref())
            .map_or(DEFAULT_HOLD, |c| c.buffer_size.max(MIN_BUF))
    };
    ctx.rewrite = Some(Box::new(RewriteState {
        stripper,
        cap,
        free: std::ptr::null_mut(),
        busy: std::ptr::null_mut(),
        held: VecDeque::new(),
        hold_at,
        out: Vec::new(),
        mid: Vec::new(),
        off: false,
        done: false,
    }));
}

impl RewriteState {
    /// Runs `data` through the stages into `out`.
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        match (&mut self.stripper, &mut self.cap) {
            (Some(s), Some(c)) => {
                self.mid.clear();
                s.feed(data, &mut self.mid);
                c.feed(&self.mid, out);
            }
            (Some(s), None) => s.feed(data, out),
            (None, Some(c)) => c.feed(data, out),
            (None, None) => out.extend_from_slice(data),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match (&mut self.stripper, &mut self.cap) {
            (Some(s), Some(c)) => {
                self.mid.clear();
                s.finish(&mut self.mid);
                c.feed(&self.mid, out);
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

    /// Rewritten bytes handed to nginx and not sent yet.
    ///
    /// # Safety
    /// The busy chain is live (its links and buffers are in the request pool).
    unsafe fn unsent(&self) -> usize {
        let mut n = 0;
        let mut cl = self.busy;
        // SAFETY: see above.
        unsafe {
            while let Some(link) = cl.as_ref() {
                let b = &*link.buf;
                n += b.last.offset_from(b.pos).max(0) as usize;
                cl = link.next;
            }
        }
        n
    }
}

/// The module's buffer tag (nginx moves only buffers of this tag to our free list).
fn tag() -> ngx_buf_tag_t {
    Module::module() as *const _ as ngx_buf_tag_t
}

/// A buffer nginx keeps in memory (not only in a file).
fn in_memory(b: &ngx_buf_t) -> bool {
    b.temporary() != 0 || b.memory() != 0 || b.mmap() != 0
}

/// Marks a buffer as consumed.
fn consume(b: &mut ngx_buf_t) {
    b.pos = b.last;
    if b.in_file() != 0 {
        b.file_pos = b.file_last;
    }
}

/// The rewriting body filter. The input's buffers join the held ones; as long as fewer than
/// `hold_at` rewritten bytes wait for the client, held buffers go through the stages (and are
/// then marked consumed) into buffers of our own, which go to `next`. `next` is called on
/// every call, with nothing new if need be, so that what waits is sent once the client can
/// take it. Once the cap ended the stream (its last buffer sent), whatever else the provider
/// sends is consumed and dropped.
///
/// # Safety
/// `r` and `input` as nginx passes them to a body filter; `next` is the next body filter.
pub unsafe fn filter(
    r: *mut ngx_http_request_t,
    st: &mut RewriteState,
    input: *mut ngx_chain_t,
    next: unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_chain_t) -> ngx_int_t,
) -> ngx_int_t {
    // SAFETY: the chain and its buffers are valid for the call; a held buffer stays valid
    // while it is unconsumed (nginx reuses a buffer only once its pos reached last, and the
    // request pool outlives the request). Our links, buffers and their memory live in the
    // request pool; a buffer is written again only once ngx_chain_update_chains moved it to
    // the free list (sent).
    unsafe {
        if st.off {
            return next(r, input);
        }
        let mut cl = input;
        while !cl.is_null() {
            let b = (*cl).buf;
            if st.done {
                consume(&mut *b);
            } else {
                st.held.push_back(b);
            }
            cl = (*cl).next;
        }
        let mut rc;
        loop {
            let (last, flush, passed) = take_held(r, st);
            let nothing = st.out.is_empty() && !last && !flush && passed.is_null();
            let mut chain = if nothing {
                std::ptr::null_mut()
            } else {
                let Some(head) = out_chain(r, st, last, passed) else {
                    return NGX_ERROR as ngx_int_t;
                };
                head
            };
            rc = next(r, chain);
            if rc == NGX_ERROR as ngx_int_t {
                return rc;
            }
            ngx_chain_update_chains((*r).pool, &mut st.free, &mut st.busy, &mut chain, tag());
            if st.held.is_empty() || st.unsent() >= st.hold_at || st.off {
                break;
            }
        }
        rc
    }
}

/// Takes held buffers through the stages (into `st.out`) while fewer than `hold_at` rewritten
/// bytes wait: whether it ends the stream, whether a buffer asked for a flush, and (when a
/// buffer in a file stopped the rewriting) the rest to pass on unchanged.
///
/// # Safety
/// As for [`filter`].
unsafe fn take_held(
    r: *mut ngx_http_request_t,
    st: &mut RewriteState,
) -> (bool, bool, *mut ngx_chain_t) {
    // SAFETY: as for filter.
    unsafe {
        let mut out = std::mem::take(&mut st.out);
        out.clear();
        let (mut last, mut flush) = (false, false);
        let waiting = st.unsent();
        while waiting + out.len() < st.hold_at {
            let Some(b) = st.held.pop_front() else {
                break;
            };
            let b = &mut *b;
            if b.in_file() != 0 && !in_memory(b) {
                // cannot happen for an unbuffered stream; if it does, stop rewriting and
                // pass this buffer and the rest on as they are
                st.held.push_front(b);
                st.off = true;
                st.finish(&mut out);
                st.out = out;
                return (false, true, held_chain(r, st));
            }
            if !b.pos.is_null() && b.last > b.pos && !st.capped() {
                let len = b.last.offset_from(b.pos) as usize;
                let data = std::slice::from_raw_parts(b.pos, len);
                st.feed(data, &mut out);
            }
            consume(b);
            if b.last_buf() != 0 || b.last_in_chain() != 0 && r != (*r).main {
                last = true;
                st.finish(&mut out);
            }
            if b.flush() != 0 {
                flush = true;
            }
            if st.capped() {
                // the stream is complete for the client
                if !last {
                    let oversized = st.cap.as_ref().is_some_and(StreamCap::oversized);
                    ngx::ngx_log_error!(
                        NGX_LOG_INFO,
                        (*(*r).connection).log,
                        "ai_gateway: stream ended at the output cap ({} tokens sent{})",
                        st.cap.as_ref().map_or(0, StreamCap::tokens_sent),
                        if oversized {
                            "; an event larger than 1 MiB cannot be counted before it goes out"
                        } else {
                            ""
                        }
                    );
                }
                last = true;
                st.done = true;
                for b in st.held.drain(..) {
                    consume(&mut *b);
                }
                break;
            }
            if last {
                break;
            }
        }
        st.out = out;
        (last, flush, std::ptr::null_mut())
    }
}

/// The held buffers as a chain of new links (once rewriting is off), emptying `held`.
///
/// # Safety
/// As for [`filter`].
unsafe fn held_chain(r: *mut ngx_http_request_t, st: &mut RewriteState) -> *mut ngx_chain_t {
    // SAFETY: pool allocations; the buffers are the provider's, valid while unconsumed.
    unsafe {
        let mut head: *mut ngx_chain_t = std::ptr::null_mut();
        let mut tail: *mut *mut ngx_chain_t = &mut head;
        for b in st.held.drain(..) {
            let cl = ngx_alloc_chain_link((*r).pool);
            if cl.is_null() {
                break;
            }
            (*cl).buf = b;
            (*cl).next = std::ptr::null_mut();
            *tail = cl;
            tail = &mut (*cl).next;
        }
        head
    }
}

/// `st.out` in output buffers of the module (from its free list, or new ones of `hold_at`
/// bytes from the request pool), flushed (events go out as they come), followed by `rest`.
/// An empty output still gives one (empty) buffer when it ends the stream or asks for a
/// flush.
///
/// # Safety
/// `r` must be a live request.
unsafe fn out_chain(
    r: *mut ngx_http_request_t,
    st: &mut RewriteState,
    last: bool,
    rest: *mut ngx_chain_t,
) -> Option<*mut ngx_chain_t> {
    // SAFETY: pool allocations; a free buffer's memory is ours and no longer sent.
    unsafe {
        let pool = (*r).pool;
        let mut head: *mut ngx_chain_t = std::ptr::null_mut();
        let mut tail: *mut *mut ngx_chain_t = &mut head;
        let mut at = 0;
        let mut final_link: *mut ngx_chain_t;
        loop {
            let link = ngx_chain_get_free_buf(pool, &mut st.free);
            if link.is_null() {
                return None;
            }
            let b = &mut *(*link).buf;
            if b.start.is_null() {
                let mem = ngx_palloc(pool, st.hold_at) as *mut u8;
                if mem.is_null() {
                    return None;
                }
                b.start = mem;
                b.end = mem.add(st.hold_at);
            }
            let n = (st.out.len() - at).min(b.end.offset_from(b.start) as usize);
            std::ptr::copy_nonoverlapping(st.out.as_ptr().add(at), b.start, n);
            at += n;
            b.pos = b.start;
            b.last = b.start.add(n);
            b.tag = tag();
            // an empty buffer must not say it is in memory (nginx takes it for a mistake):
            // it only carries the flush or the end of the stream
            b.set_temporary(if n > 0 { 1 } else { 0 });
            b.set_memory(0);
            b.set_flush(1);
            b.set_last_buf(0);
            b.set_last_in_chain(0);
            b.set_sync(0);
            (*link).next = std::ptr::null_mut();
            *tail = link;
            tail = &mut (*link).next;
            final_link = link;
            if at == st.out.len() {
                break;
            }
        }
        if last {
            let b = &mut *(*final_link).buf;
            b.set_last_buf(if r == (*r).main { 1 } else { 0 });
            b.set_last_in_chain(1);
        }
        *tail = rest;
        if st.out.capacity() > 4 * st.hold_at {
            // an unusually large output (a long event let through at the end): not kept
            st.out = Vec::new();
        }
        Some(head)
    }
}
