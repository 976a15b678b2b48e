//! Rewriting an event stream on its way to the client, in one body filter with buffers of
//! its own: the include_usage strip (`ai_gateway_stream_usage`: the client gets the stream it
//! asked for) and the output cap (`output_tokens` policies: the stream ends cleanly at the
//! cap), both in the core's [`StreamRewriter`], which also feeds the usage tracker: each
//! event is read once. Bytes the client never gets (after the cap's ending, or still held
//! when the request ends) are read by the tracker all the same (usage is the provider's).
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
use crate::core::stream_rewrite::StreamRewriter;
use crate::core::tokens::Encoding;
use crate::core::usage::{Framing, ResponseTracker};

/// Rewritten bytes not yet sent past which no more of the provider's bytes are taken, when
/// the request has no upstream to take `proxy_buffer_size` from.
const DEFAULT_HOLD: usize = 16 * 1024;

/// Smallest output buffer.
const MIN_BUF: usize = 1024;

/// The stages, the provider's buffers not yet taken, and the module's output buffers.
pub struct RewriteState {
    rewriter: StreamRewriter,
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
    /// Rewriting stopped (a buffer in a file came): the rest passes unchanged.
    pub off: bool,
    /// A buffer in a file went by: the tracker did not read it.
    pub missed: bool,
    /// The stream was ended at the cap and its last buffer sent: the rest is dropped.
    done: bool,
}

/// Sets up the rewriting of an event stream when the gateway added `include_usage` to an
/// OpenAI stream request, or a policy caps the output of a chat, messages or Responses
/// stream; the
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
            let mut cap = StreamCap::new(max, api, enc);
            cap.set_prompt_tokens(ctx.prompt.flatten().map(|c| c.tokens));
            Some(cap)
        }
        _ => None,
    };
    let strip = ctx.added_include_usage;
    if !strip && cap.is_none() {
        return;
    }
    let Some(tracker) = ctx.tracker.as_deref_mut() else {
        return;
    };
    let rewriter = StreamRewriter::new(strip, cap, tracker);
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
        rewriter,
        free: std::ptr::null_mut(),
        busy: std::ptr::null_mut(),
        held: VecDeque::new(),
        hold_at,
        // what a call's buffers of the provider's become (up to `hold_at` waiting plus one
        // buffer), without reallocating
        out: Vec::with_capacity(2 * hold_at),
        off: false,
        missed: false,
        done: false,
    }));
}

impl RewriteState {
    fn capped(&self) -> bool {
        self.rewriter.ended()
    }

    /// The provider's bytes still held when the request ends, and the rewriter's incomplete
    /// event, go to the tracker (the client never gets them; the usage is still the
    /// provider's). Called once, from the log phase, before the usage is settled.
    ///
    /// # Safety
    /// The held buffers are the provider's, unconsumed, in the request pool.
    pub unsafe fn track_unsent(&mut self, tracker: &mut ResponseTracker) {
        let held = std::mem::take(&mut self.held);
        for b in held {
            // SAFETY: see above.
            let b = unsafe { &mut *b };
            // SAFETY: an unconsumed in-memory buffer's bytes are valid.
            match unsafe { memory_of(b) } {
                Some(data) => self.rewriter.track_unsent(data, tracker),
                None => self.missed |= b.in_file() != 0,
            }
            consume(b);
        }
        self.rewriter.track_unsent(&[], tracker);
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

/// The bytes of an in-memory buffer (`None` for one only in a file).
///
/// # Safety
/// `b` is a live buffer whose pos..last are valid.
unsafe fn memory_of(b: &ngx_buf_t) -> Option<&[u8]> {
    if !in_memory(b) {
        return None;
    }
    if b.pos.is_null() || b.last <= b.pos {
        return Some(&[]);
    }
    // SAFETY: see above.
    unsafe {
        Some(std::slice::from_raw_parts(
            b.pos,
            b.last.offset_from(b.pos) as usize,
        ))
    }
}

/// The tracker reads a buffer that does not go through the stages (the stream was ended at
/// the cap, or rewriting stopped); the end of the provider's stream finishes the tracker.
///
/// # Safety
/// `b` is a live buffer of the provider's.
unsafe fn track_only(st: &mut RewriteState, tracker: &mut ResponseTracker, b: &ngx_buf_t) {
    // SAFETY: see above.
    match unsafe { memory_of(b) } {
        Some(data) => st.rewriter.track_unsent(data, tracker),
        None => st.missed |= b.in_file() != 0,
    }
    if b.last_buf() != 0 {
        tracker.finish();
    }
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
    tracker: &mut ResponseTracker,
    input: *mut ngx_chain_t,
    next: unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_chain_t) -> ngx_int_t,
) -> ngx_int_t {
    // SAFETY: the chain and its buffers are valid for the call; a held buffer stays valid
    // while it is unconsumed (nginx reuses a buffer only once its pos reached last, and the
    // request pool outlives the request). Our links, buffers and their memory live in the
    // request pool; a buffer is written again only once ngx_chain_update_chains moved it to
    // the free list (sent).
    unsafe {
        let mut cl = input;
        while !cl.is_null() {
            let b = (*cl).buf;
            if st.done {
                track_only(st, tracker, &*b);
                consume(&mut *b);
            } else {
                st.held.push_back(b);
            }
            cl = (*cl).next;
        }
        let mut rc;
        loop {
            let (last, flush, passed) = take_held(r, st, tracker);
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
    tracker: &mut ResponseTracker,
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
                st.rewriter.stop(tracker, &mut out);
                let passed: Vec<*mut ngx_buf_t> = st.held.iter().copied().collect();
                for b in passed {
                    track_only(st, tracker, &*b);
                }
                st.out = out;
                return (false, true, held_chain(r, st));
            }
            if let Some(data) = memory_of(b) {
                st.rewriter.feed(data, tracker, &mut out);
            }
            consume(b);
            if b.last_buf() != 0 || b.last_in_chain() != 0 && r != (*r).main {
                last = true;
                st.rewriter.finish(tracker, &mut out);
            }
            if b.flush() != 0 {
                flush = true;
            }
            if st.capped() {
                // the stream is complete for the client
                if !last {
                    let cap = st.rewriter.cap();
                    let oversized = cap.is_some_and(StreamCap::oversized);
                    ngx::ngx_log_error!(
                        NGX_LOG_INFO,
                        (*(*r).connection).log,
                        "ai_gateway: stream ended at the output cap ({} tokens sent{})",
                        cap.map_or(0, StreamCap::tokens_sent),
                        if oversized {
                            "; an event larger than 1 MiB cannot be counted before it goes out"
                        } else {
                            ""
                        }
                    );
                }
                last = true;
                st.done = true;
                for b in std::mem::take(&mut st.held) {
                    track_only(st, tracker, &*b);
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
