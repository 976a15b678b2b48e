//! `ai_gateway_metrics_zone`: the shared memory zone holding the metrics store.
//!
//! The zone's slab pool hands out one block of words for `core::metrics::Store` and a small
//! root that points at it. On `nginx -s reload` with the same name and size nginx passes the
//! old root to `init`, and the store is reattached with the new `max_series` (counters kept,
//! as limit_req keeps its state); a new size means a new zone and fresh counters.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use ngx::ffi::{
    ngx_int_t, ngx_pagesize, ngx_shm_zone_t, ngx_slab_alloc, ngx_slab_pool_t, ngx_time, NGX_ERROR,
    NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_OK,
};

use super::guard::guard;
use crate::core::metrics::Store;

/// What the directive asked for; lives in the configuration pool of its cycle.
pub struct ZoneSettings {
    pub name: String,
    pub max_series: Option<usize>,
}

/// Lives in the zone: where the store's words are.
#[repr(C)]
struct ZoneRoot {
    words: *mut AtomicU64,
    len: usize,
}

const OK: ngx_int_t = NGX_OK as ngx_int_t;
const ERROR: ngx_int_t = NGX_ERROR as ngx_int_t;

/// The store of a zone whose `init` has run (`None` before that, or if it failed).
///
/// # Safety
/// `zone` must be the module's metrics zone of the running cycle. The store's memory stays
/// mapped for the life of the process (nginx unmaps shared memory only at exit).
pub unsafe fn store(zone: NonNull<ngx_shm_zone_t>) -> Option<Store<'static>> {
    // SAFETY: after init, data is the ZoneRoot in shared memory (caller).
    unsafe {
        let root = (zone.as_ref().data as *const ZoneRoot).as_ref()?;
        if root.words.is_null() {
            return None;
        }
        Store::open(std::slice::from_raw_parts(root.words, root.len))
    }
}

/// `ngx_shm_zone_t.init`: lays out the store, or reattaches to the previous cycle's.
pub unsafe extern "C" fn ngx_http_ai_gateway_init_metrics_zone(
    zone: *mut ngx_shm_zone_t,
    old: *mut c_void,
) -> ngx_int_t {
    // SAFETY: nginx passes the zone being initialised; its shm is mapped.
    let log = unsafe { (*zone).shm.log };
    guard(log, ERROR, || unsafe { init(zone, old) })
}

unsafe fn init(zone: *mut ngx_shm_zone_t, old: *mut c_void) -> ngx_int_t {
    // SAFETY: zone is being initialised by nginx; data holds the ZoneSettings the directive
    // stored (in the cycle pool); shm.addr is the slab pool nginx created in the zone, and
    // `old` is the previous cycle's root in the same (reused) mapping.
    unsafe {
        let log = (*zone).shm.log;
        let settings = &*((*zone).data as *const ZoneSettings);
        let name = settings.name.clone();
        let max = settings.max_series;
        let emerg = |msg: String| {
            ngx::ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "ai_gateway_metrics_zone \"{}\" {}",
                name,
                msg
            );
            ERROR
        };

        if let Some(root) = (old as *mut ZoneRoot).as_mut() {
            let words = std::slice::from_raw_parts(root.words, root.len);
            match Store::attach(words, max) {
                Ok(_) => {
                    (*zone).data = old;
                    return OK;
                }
                Err(crate::core::metrics::LayoutError::Incompatible) => {
                    ngx::ngx_log_error!(
                        NGX_LOG_NOTICE,
                        log,
                        "ai_gateway_metrics_zone \"{}\" held another layout, counters reset",
                        name
                    );
                    if let Err(e) = Store::create(words, ngx_time() as u64, max) {
                        return emerg(e.to_string());
                    }
                    (*zone).data = old;
                    return OK;
                }
                Err(e) => return emerg(e.to_string()),
            }
        }

        let shpool = (*zone).shm.addr as *mut ngx_slab_pool_t;
        let root = ngx_slab_alloc(shpool, std::mem::size_of::<ZoneRoot>()) as *mut ZoneRoot;
        if root.is_null() {
            return emerg("is too small".into());
        }
        // the largest page run the slab pool can give: start at the zone size and step down
        (*shpool).set_log_nomem(0);
        let page = ngx_pagesize.max(4096);
        let mut bytes = (*zone).shm.size / page * page;
        let mut words = std::ptr::null_mut::<AtomicU64>();
        while bytes >= page {
            words = ngx_slab_alloc(shpool, bytes) as *mut AtomicU64;
            if !words.is_null() {
                break;
            }
            bytes -= page;
        }
        (*shpool).set_log_nomem(1);
        if words.is_null() {
            return emerg("is too small".into());
        }
        let len = bytes / std::mem::size_of::<AtomicU64>();
        if let Err(e) = Store::create(
            std::slice::from_raw_parts(words, len),
            ngx_time() as u64,
            max,
        ) {
            return emerg(e.to_string());
        }
        root.write(ZoneRoot { words, len });
        (*shpool).data = root.cast();
        (*zone).data = root.cast();
        OK
    }
}
