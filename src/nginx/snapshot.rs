//! The worker's current snapshot and the routing state that outlives snapshots. Both are
//! touched only on the nginx thread. A request takes the snapshot once ([`current`]) and
//! keeps its `Arc` in its context to the end; [`install`] replaces it for the requests that
//! start later (the Redis source delivers new ones through the bridge).

use std::cell::RefCell;
use std::sync::Arc;

use ngx::ffi::ngx_http_request_t;
use ngx::http::HttpModuleMainConf;

use super::conf::MainConf;
use super::module::Module;
use crate::core::routing::worker::WorkerRouting;
use crate::core::snapshot::Snapshot;

struct Current {
    /// The main conf the snapshot replaced the start snapshot of (so a snapshot installed
    /// for one configuration is never served by the next, with `master_process off`).
    conf: usize,
    snapshot: Arc<Snapshot>,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
    static ROUTING: RefCell<WorkerRouting> = RefCell::new(WorkerRouting::default());
}

/// The snapshot requests of `mcf` start with now.
pub fn of_conf(mcf: &MainConf) -> Option<Arc<Snapshot>> {
    let key = mcf as *const MainConf as usize;
    let installed = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|c| c.conf == key)
            .map(|c| c.snapshot.clone())
    });
    installed.or_else(|| mcf.snapshot.clone())
}

/// The snapshot a request starting now is served with.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn current(r: *mut ngx_http_request_t) -> Option<Arc<Snapshot>> {
    // SAFETY: r is live (caller); its main conf belongs to the running cycle.
    unsafe { Module::main_conf(&*r).and_then(of_conf) }
}

/// Makes `snapshot` the one requests of `mcf` start with; returns the one it replaced.
pub fn install(mcf: &MainConf, snapshot: Arc<Snapshot>) -> Option<Arc<Snapshot>> {
    let old = of_conf(mcf);
    ROUTING.with(|r| r.borrow_mut().retain(&snapshot.config.routing));
    CURRENT.with(|c| {
        *c.borrow_mut() = Some(Current {
            conf: mcf as *const MainConf as usize,
            snapshot,
        })
    });
    old
}

/// Runs `f` with the worker's routing state.
pub fn with_routing<T>(f: impl FnOnce(&mut WorkerRouting) -> T) -> T {
    ROUTING.with(|r| f(&mut r.borrow_mut()))
}
