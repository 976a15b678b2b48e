//! The per-request context: allocated from the request pool, dropped by a pool cleanup (so
//! whatever it owns is released however the request ends).

use std::sync::Arc;

use std::ffi::c_void;

use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, ngx_palloc, ngx_pool_cleanup_add, ngx_pool_t, NGX_DECLINED,
};
use ngx::http::HttpModule;

use super::log_phase::Inflight;
use super::mock::MockState;
use super::module::Module;
use super::policy::PolicyState;
use super::rewrite::RewriteState;
use crate::core::config::GatewayConfig;
use crate::core::error::GatewayError;
use crate::core::identify::{ClientKey, Via};
use crate::core::pipeline::RouteState;
use crate::core::request::RequestSummary;
use crate::core::snapshot::Snapshot;
use crate::core::tokens::PromptCount;
use crate::core::usage::{ResponseTracker, TokenUsage};

/// Where the access handler is for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Not seen by the access handler yet.
    #[default]
    New,
    /// Waiting for nginx to finish reading the body.
    ReadingBody,
    /// Decided; `status` is what the access handler returns from now on.
    Decided,
}

#[derive(Default)]
pub struct RequestCtx {
    pub phase: Phase,
    /// `NGX_DECLINED` to let the request through, or the HTTP status of a rejection.
    pub status: ngx_int_t,
    /// The snapshot the request is served with, taken once at its start.
    pub snapshot: Option<Arc<Snapshot>>,
    pub summary: Option<RequestSummary>,
    pub namespace: Option<usize>,
    pub via: Option<Via>,
    /// The client key the request presented (as its hash).
    pub key: Option<ClientKey>,
    /// The gateway's own rejection, rendered by the error filter.
    pub error: Option<GatewayError>,
    /// The error the filter rendered as JSON (the gateway's own, or nginx's 413/502/...).
    pub rendered: Option<GatewayError>,
    /// JSON that replaces nginx's HTML error page, and whether it went out.
    pub error_body: Option<Vec<u8>>,
    pub error_body_sent: bool,
    /// State of `ai_gateway_mock_provider` for this request.
    pub mock: Option<Box<MockState>>,
    /// Time spent in the module's handlers so far (for `gateway_overhead_seconds`).
    pub overhead_ns: u64,
    /// The request's place in `gateway_requests_in_flight`, left when the ctx is dropped.
    pub inflight: Option<Inflight>,
    /// Reads the response's usage as it streams to the client.
    pub tracker: Option<Box<ResponseTracker>>,
    /// The response had buffers in a file, which the tracker did not read.
    pub tracker_skipped: bool,
    /// The gateway's own count of the prompt, once made.
    pub prompt: Option<Option<PromptCount>>,
    /// The usage settled in the log phase.
    pub usage: Option<TokenUsage>,
    /// The gateway added `stream_options.include_usage` to the request.
    pub added_include_usage: bool,
    /// Rewrites the response stream (include_usage strip, output cap).
    pub rewrite: Option<Box<RewriteState>>,
    /// What the namespace's policies decided and took (given back when this is dropped).
    pub policy: Option<Box<PolicyState>>,
    /// The route and the targets to try (`ai_gateway_route on`).
    pub route: Option<RouteState>,
    /// When the response header went out, ms after the request started.
    pub header_ms: Option<u64>,
    /// `$ai_gateway_request_id`, made when first needed (`usage_log::request_id`).
    pub request_id: Option<[u8; 32]>,
    /// The gateway's own answer (the model list), sent by the content handler.
    pub answer: Option<Vec<u8>>,
}

impl RequestCtx {
    pub fn allowed(&self) -> bool {
        self.phase == Phase::Decided && self.status == NGX_DECLINED as ngx_int_t
    }

    /// The configuration of the request's snapshot.
    pub fn config(&self) -> Option<&GatewayConfig> {
        self.snapshot.as_deref().map(|s| &s.config)
    }

    pub fn namespace_code(&self) -> Option<&str> {
        let cfg = self.config()?;
        Some(cfg.namespaces.get(self.namespace?)?.code.as_str())
    }

    pub fn namespace_name(&self) -> Option<&str> {
        let cfg = self.config()?;
        Some(cfg.namespaces.get(self.namespace?)?.name.as_str())
    }
}

/// The module's context of `r`, if one was created. nginx clears module contexts on an
/// internal redirect (`error_page`, `try_files`, named locations); the context then is found
/// again through the request pool's cleanup list (as lua-nginx-module does) and put back.
///
/// # Safety
/// `r` must be a live request, used on the nginx worker thread. The returned reference must
/// not be held across calls that can re-enter the module for the same request.
pub unsafe fn get<'a>(r: *mut ngx_http_request_t) -> Option<&'a mut RequestCtx> {
    // SAFETY: r is live (caller); ctx[] has ngx_http_max_module slots, ctx_index is ours, and
    // the slot is either null or a RequestCtx we stored. A cleanup entry whose handler is
    // `ngx_http_ai_gateway_ctx_cleanup` always holds a live RequestCtx of this pool.
    unsafe {
        let slot = (*r).ctx.add(Module::module().ctx_index);
        if let Some(ctx) = (*slot as *mut RequestCtx).as_mut() {
            return Some(ctx);
        }
        let mut c = (*(*r).pool).cleanup;
        while !c.is_null() {
            let ours = ngx_http_ai_gateway_ctx_cleanup as *const () as usize;
            if (*c).handler.map(|h| h as *const () as usize) == Some(ours) {
                *slot = (*c).data;
                return ((*c).data as *mut RequestCtx).as_mut();
            }
            c = (*c).next;
        }
        None
    }
}

/// Pool cleanup of a [`RequestCtx`] (its own function, so [`get`] can recognise it).
unsafe extern "C" fn ngx_http_ai_gateway_ctx_cleanup(data: *mut c_void) {
    // SAFETY: data is the RequestCtx written by get_or_create, dropped once by its pool.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
        std::ptr::drop_in_place(data as *mut RequestCtx)
    }));
}

/// The module's context of `r`, created on first use. `None` if the pool is exhausted.
///
/// # Safety
/// As for [`get`].
pub unsafe fn get_or_create<'a>(r: *mut ngx_http_request_t) -> Option<&'a mut RequestCtx> {
    // SAFETY: as in `get`; the value is written into fresh pool memory and dropped by the
    // pool cleanup registered right after, when the request pool is destroyed.
    unsafe {
        if let Some(ctx) = get(r) {
            return Some(ctx);
        }
        let p = pool_allocate((*r).pool, RequestCtx::default())?;
        if let Some(c) = (*(*r).pool).cleanup.as_mut() {
            // the entry pool_allocate just added: mark it as the context's
            if c.data == p.cast() {
                c.handler = Some(ngx_http_ai_gateway_ctx_cleanup);
            }
        }
        *(*r).ctx.add(Module::module().ctx_index) = p.cast();
        p.as_mut()
    }
}

/// Moves `value` into `pool`, to be dropped when the pool is destroyed.
///
/// # Safety
/// `pool` must be a live nginx pool.
pub unsafe fn pool_allocate<T>(pool: *mut ngx_pool_t, value: T) -> Option<*mut T> {
    unsafe extern "C" fn drop_value<T>(data: *mut c_void) {
        // SAFETY: data is the T written below, dropped exactly once by its pool. A panic in a
        // destructor must not unwind into nginx.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
            std::ptr::drop_in_place(data as *mut T)
        }));
    }
    // SAFETY: pool is live (caller). ngx_palloc aligns to NGX_ALIGNMENT (a pointer), enough
    // for our types; the cleanup is added before the value is written, so a failure leaves
    // nothing to drop.
    unsafe {
        debug_assert!(std::mem::align_of::<T>() <= std::mem::size_of::<usize>());
        let cln = ngx_pool_cleanup_add(pool, 0);
        if cln.is_null() {
            return None;
        }
        let p = ngx_palloc(pool, std::mem::size_of::<T>()) as *mut T;
        if p.is_null() {
            return None;
        }
        p.write(value);
        (*cln).handler = Some(drop_value::<T>);
        (*cln).data = p.cast();
        Some(p)
    }
}
