//! `ai_gateway_limit_zone`: the shared memory zone holding the policy counters.
//!
//! The zone's slab pool hands out one block: a [`TableHeader`] followed by the slots. Every
//! use of the table holds the slab pool's mutex (as nginx's `limit_req` does): if a worker
//! dies holding it, the master releases it (`ngx_unlock_mutexes`), so a crash never wedges
//! the other workers. On `nginx -s reload` with the same name and size nginx passes the old
//! root to `init`: counters, reservations and in-flight counts carry over.

use std::ffi::c_void;
use std::ptr::NonNull;

use ngx::ffi::{
    ngx_int_t, ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_alloc, ngx_slab_pool_t,
    ngx_timeofday, NGX_ERROR, NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_OK,
};

use super::guard::guard;
use crate::core::policy::slot::Slot;
use crate::core::policy::{Table, TableHeader};

/// What the directive asked for; lives in the configuration pool of its cycle.
pub struct LimitZoneSettings {
    pub name: String,
}

/// Lives in the zone: where the table is.
#[repr(C)]
struct LimitRoot {
    header: *mut TableHeader,
    slots: *mut Slot,
    len: usize,
}

/// A handle on an initialised zone; copyable, valid for the life of the process (nginx
/// unmaps shared memory only at exit), so a request that outlives a reload can still give
/// back what it took.
#[derive(Clone, Copy)]
pub struct LimitZone {
    shpool: *mut ngx_slab_pool_t,
    root: *mut LimitRoot,
}

impl LimitZone {
    /// The zone's handle once its `init` has run.
    ///
    /// # Safety
    /// `zone` must be the module's limit zone of the running cycle.
    pub unsafe fn open(zone: NonNull<ngx_shm_zone_t>) -> Option<LimitZone> {
        // SAFETY: after init, data is the LimitRoot in shared memory and shm.addr the pool.
        unsafe {
            let root = zone.as_ref().data as *mut LimitRoot;
            if root.is_null() || (*root).header.is_null() {
                return None;
            }
            Some(LimitZone {
                shpool: zone.as_ref().shm.addr as *mut ngx_slab_pool_t,
                root,
            })
        }
    }

    /// Runs `f` on the table with the zone locked. A panic in `f` is caught before the lock
    /// is released (and reported as `None`).
    pub fn with_table<R>(&self, f: impl FnOnce(&mut Table) -> R) -> Option<R> {
        // SAFETY: the pool and root are in the zone's mapping (see `open`); the mutex makes
        // this the only reference to the table's memory until unlock.
        unsafe {
            ngx_shmtx_lock(&mut (*self.shpool).mutex);
            let root = &*self.root;
            let header = &mut *root.header;
            let slots = std::slice::from_raw_parts_mut(root.slots, root.len);
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut table = Table::open(header, slots);
                f(&mut table)
            }));
            ngx_shmtx_unlock(&mut (*self.shpool).mutex);
            out.ok()
        }
    }
}

/// Milliseconds since the epoch, from nginx's cached time (updated every event loop turn).
pub fn now_ms() -> u64 {
    let tp = ngx_timeofday();
    tp.sec as u64 * 1000 + tp.msec as u64
}

const OK: ngx_int_t = NGX_OK as ngx_int_t;
const ERROR: ngx_int_t = NGX_ERROR as ngx_int_t;

/// `ngx_shm_zone_t.init`: lays out the table, or keeps the previous cycle's.
pub unsafe extern "C" fn ngx_http_ai_gateway_init_limit_zone(
    zone: *mut ngx_shm_zone_t,
    old: *mut c_void,
) -> ngx_int_t {
    // SAFETY: nginx passes the zone being initialised; its shm is mapped.
    let log = unsafe { (*zone).shm.log };
    guard(log, ERROR, || unsafe { init(zone, old) })
}

unsafe fn init(zone: *mut ngx_shm_zone_t, old: *mut c_void) -> ngx_int_t {
    // SAFETY: as for the metrics zone: data holds our settings until replaced by the root,
    // shm.addr is the zone's slab pool, `old` the previous cycle's root in the same mapping.
    unsafe {
        if !old.is_null() {
            (*zone).data = old;
            return OK;
        }
        let log = (*zone).shm.log;
        let settings = &*((*zone).data as *const LimitZoneSettings);
        let shpool = (*zone).shm.addr as *mut ngx_slab_pool_t;
        if (*zone).shm.exists != 0 {
            // Windows-style re-attach: the pool's data is our root
            (*zone).data = (*shpool).data;
            return OK;
        }
        let root = ngx_slab_alloc(shpool, std::mem::size_of::<LimitRoot>()) as *mut LimitRoot;
        if root.is_null() {
            ngx::ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "ai_gateway_limit_zone \"{}\" is too small",
                settings.name
            );
            return ERROR;
        }
        // the largest block the slab pool gives, stepping down a page at a time
        (*shpool).set_log_nomem(0);
        let page = ngx::ffi::ngx_pagesize.max(4096);
        let mut bytes = (*zone).shm.size / page * page;
        let mut mem = std::ptr::null_mut::<u8>();
        while bytes >= page {
            mem = ngx_slab_alloc(shpool, bytes) as *mut u8;
            if !mem.is_null() {
                break;
            }
            bytes -= page;
        }
        (*shpool).set_log_nomem(1);
        let header_bytes = std::mem::size_of::<TableHeader>();
        let len = bytes.saturating_sub(header_bytes) / std::mem::size_of::<Slot>();
        if mem.is_null() || len < 4 {
            ngx::ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "ai_gateway_limit_zone \"{}\" is too small",
                settings.name
            );
            return ERROR;
        }
        // fresh slab memory is zeroed by nothing: Table::open lays out header and slots
        let header = mem as *mut TableHeader;
        header.write(TableHeader::default());
        let slots = mem.add(header_bytes) as *mut Slot;
        for i in 0..len {
            slots.add(i).write(Slot::default());
        }
        root.write(LimitRoot { header, slots, len });
        ngx::ngx_log_error!(
            NGX_LOG_NOTICE,
            log,
            "ai_gateway_limit_zone \"{}\": {} counters (up to {} in use at once)",
            settings.name,
            len,
            len - len / 4
        );
        (*shpool).data = root.cast();
        (*zone).data = root.cast();
        OK
    }
}
