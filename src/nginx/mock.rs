//! `ai_gateway_mock_provider`: the built-in mock LLM provider as a content handler.
//!
//! The reply comes from `core::mock`; this file only sends it, honouring the configured
//! latency (before the header) and interval (between streamed events) with nginx timers, so
//! the worker never sleeps.

use std::sync::atomic::{AtomicU64, Ordering};

use ngx::ffi::{
    ngx_chain_t, ngx_del_timer, ngx_event_t, ngx_http_finalize_request,
    ngx_http_read_client_request_body, ngx_http_request_t, ngx_http_run_posted_requests,
    ngx_http_send_header, ngx_int_t, ngx_str_t, ngx_time, NGX_DONE, NGX_ERROR,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_ERR, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, Request};

use super::body::request_body;
use super::conf::MockSettings;
use super::ctx;
use super::filter::memory_chain;
use super::guard::guard;
use super::headers::request_header;
use super::module::Module;
use crate::core::mock::{reply, MockReply, MockRequest};

const ERROR: ngx_int_t = NGX_ERROR as ngx_int_t;
const SERVER_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// Numbers the mock's responses (per worker) for ids.
static SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// A reply being sent.
pub struct MockState {
    reply: MockReply,
    next: usize,
    header_sent: bool,
    settings: MockSettings,
    timer: Box<ngx_event_t>,
}

impl Drop for MockState {
    fn drop(&mut self) {
        if self.timer.timer_set() != 0 {
            // SAFETY: the timer was armed by us on this thread; removing it before the memory
            // goes away keeps the timer tree valid.
            unsafe { ngx_del_timer(&mut *self.timer) };
        }
    }
}

/// The content handler.
pub unsafe extern "C" fn ngx_http_ai_gateway_mock_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    guard(log, SERVER_ERROR, || unsafe {
        let rc = ngx_http_read_client_request_body(r, Some(mock_body_handler));
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        NGX_DONE as ngx_int_t
    })
}

unsafe extern "C" fn mock_body_handler(r: *mut ngx_http_request_t) {
    // SAFETY: nginx passes a live request whose body has been read.
    let log = unsafe { (*(*r).connection).log };
    let rc = guard(log, Some(SERVER_ERROR), || unsafe { start(r) });
    if let Some(rc) = rc {
        // SAFETY: ends the request, balancing the reference taken by the body reader.
        unsafe { ngx_http_finalize_request(r, rc) };
    }
}

/// Builds the reply and sends what can be sent now; `Some(rc)` when the request is complete.
unsafe fn start(r: *mut ngx_http_request_t) -> Option<ngx_int_t> {
    // SAFETY: r is live; its body has been read.
    unsafe {
        let settings = Module::location_conf(&*r)
            .and_then(|l| l.mock)
            .unwrap_or_default();
        let body = match request_body(&*r) {
            Ok(b) => b,
            Err(msg) => {
                ngx::ngx_log_error!(NGX_LOG_ERR, (*(*r).connection).log, "ai_gateway: {}", msg);
                return Some(SERVER_ERROR);
            }
        };
        // `X-Mock-Created` / `X-Mock-Seq` fix the timestamp and the id, so that tests can
        // compare two answers byte for byte
        let header_number = |name: &[u8]| {
            request_header(&*r, name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let reply = reply(&MockRequest {
            method: (*r).method_name.as_bytes(),
            path: (*r).uri.as_bytes(),
            body: &body,
            now: header_number(b"x-mock-created").unwrap_or(ngx_time() as u64),
            seq: header_number(b"x-mock-seq")
                .unwrap_or_else(|| SEQUENCE.fetch_add(1, Ordering::Relaxed)),
        });
        drop(body);

        let ctx = ctx::get_or_create(r)?;
        let mut timer: Box<ngx_event_t> = Box::new(std::mem::zeroed());
        timer.handler = Some(mock_timer_handler);
        timer.data = r.cast();
        timer.log = (*(*r).connection).log;
        ctx.mock = Some(Box::new(MockState {
            reply,
            next: 0,
            header_sent: false,
            settings,
            timer,
        }));
        if settings.latency_ms > 0 {
            arm(r, settings.latency_ms);
            return None;
        }
        advance(r)
    }
}

unsafe fn arm(r: *mut ngx_http_request_t, ms: u64) {
    // SAFETY: the event lives in the request context until the request pool is destroyed,
    // and Drop removes it from the timer tree.
    unsafe {
        if let Some(state) = ctx::get(r).and_then(|c| c.mock.as_mut()) {
            ngx::ffi::ngx_add_timer(&mut *state.timer, ms as _);
        }
    }
}

unsafe extern "C" fn mock_timer_handler(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is the request that armed it; the timer is removed before
    // that request is freed.
    unsafe {
        let r = (*ev).data as *mut ngx_http_request_t;
        let c = (*r).connection;
        let rc = guard((*c).log, Some(ERROR), || advance(r));
        if let Some(rc) = rc {
            ngx_http_finalize_request(r, rc);
        }
        ngx_http_run_posted_requests(c);
    }
}

/// Sends the header if needed, then the next event (streams with an interval) or everything
/// left. Returns `Some(rc)` when the response is complete or failed.
unsafe fn advance(r: *mut ngx_http_request_t) -> Option<ngx_int_t> {
    // SAFETY: r is live; chunks are owned by the context and outlive the output.
    unsafe {
        let state = ctx::get(r)?.mock.as_mut()?;
        if !state.header_sent {
            state.header_sent = true;
            let rc = send_header(r, &state.reply);
            if rc == ERROR || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
                return Some(rc);
            }
        }
        let state = ctx::get(r)?.mock.as_mut()?;
        let total = state.reply.chunks.len();
        let paced = state.reply.stream && state.settings.interval_ms > 0;
        let end = if paced { state.next + 1 } else { total };

        let mut head: *mut ngx_chain_t = std::ptr::null_mut();
        let mut tail: *mut *mut ngx_chain_t = &mut head;
        for i in state.next..end.min(total) {
            let cl = memory_chain(r, &state.reply.chunks[i], i + 1 == total)?;
            *tail = cl;
            tail = &mut (*cl).next;
        }
        if total == 0 {
            *tail = memory_chain(r, &[], true)?;
        }
        state.next = end.min(total);
        let done = state.next >= total;
        let interval = state.settings.interval_ms;

        let rc = Request::from_ngx_http_request(r)
            .output_filter(&mut *head)
            .0;
        if done || rc == ERROR {
            return Some(rc);
        }
        arm(r, interval);
        None
    }
}

unsafe fn send_header(r: *mut ngx_http_request_t, reply: &MockReply) -> ngx_int_t {
    // SAFETY: r is live; static strings outlive the request.
    unsafe {
        let out = &mut (*r).headers_out;
        out.status = reply.status as usize;
        out.content_type = ngx_str_t {
            len: reply.content_type.len(),
            data: reply.content_type.as_ptr().cast_mut(),
        };
        out.content_type_len = reply.content_type.len();
        out.content_type_lowcase = std::ptr::null_mut();
        if reply.stream {
            out.content_length_n = -1;
            let req = Request::from_ngx_http_request(r);
            if req.add_header_out("Cache-Control", "no-cache").is_none() {
                return ERROR;
            }
        } else {
            out.content_length_n = reply.chunks.iter().map(Vec::len).sum::<usize>() as i64;
        }
        ngx_http_send_header(r)
    }
}
