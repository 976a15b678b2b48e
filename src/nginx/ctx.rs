//! The per-request context: allocated from the request pool, dropped by a pool cleanup (so
//! whatever it owns is released however the request ends).

use std::sync::Arc;

use std::ffi::c_void;

use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, ngx_palloc, ngx_pool_cleanup_add, ngx_pool_t, NGX_DECLINED,
};
use ngx::http::HttpModule;

use super::mock::MockState;
use super::module::Module;
use crate::core::config::GatewayConfig;
use crate::core::error::GatewayError;
use crate::core::identify::{ClientKey, Via};
use crate::core::request::RequestSummary;

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
    pub config: Option<Arc<GatewayConfig>>,
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
}

impl RequestCtx {
    pub fn allowed(&self) -> bool {
        self.phase == Phase::Decided && self.status == NGX_DECLINED as ngx_int_t
    }

    pub fn namespace_code(&self) -> Option<&str> {
        let cfg = self.config.as_ref()?;
        Some(cfg.namespaces.get(self.namespace?)?.code.as_str())
    }

    pub fn namespace_name(&self) -> Option<&str> {
        let cfg = self.config.as_ref()?;
        Some(cfg.namespaces.get(self.namespace?)?.name.as_str())
    }
}

/// The module's context of `r`, if one was created.
///
/// # Safety
/// `r` must be a live request, used on the nginx worker thread. The returned reference must
/// not be held across calls that can re-enter the module for the same request.
pub unsafe fn get<'a>(r: *mut ngx_http_request_t) -> Option<&'a mut RequestCtx> {
    // SAFETY: r is live (caller); ctx[] has ngx_http_max_module slots, ctx_index is ours, and
    // the slot is either null or a RequestCtx we stored.
    unsafe {
        let p = *(*r).ctx.add(Module::module().ctx_index) as *mut RequestCtx;
        p.as_mut()
    }
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
        // SAFETY: data is the T written below, dropped exactly once by its pool.
        unsafe { std::ptr::drop_in_place(data as *mut T) }
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
