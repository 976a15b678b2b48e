//! The cluster limits' timer in each worker, every `sync` ms: it moves the worker's Redis
//! call counts into the metrics zone, and on worker 0 syncs the node's approximate cluster
//! counters (`core::policy::approx`; one sync per node, not per worker: the counters are in
//! the node's zone): a snapshot of the zone's approximate counters under its lock, sent to
//! Redis by the worker's runtime, the answers applied to the zone back on the nginx thread.
//! One sync is out at a time; a sync that fails leaves the deltas to the next.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

use ngx::ffi::{ngx_add_timer, ngx_cycle_t, ngx_del_timer, ngx_event_t, ngx_shm_zone_t};

use super::bridge;
use super::guard::guard;
use super::limit_zone::{now_ms, LimitZone};
use super::shm;
use crate::core::policy::approx::{apply, collect};
use crate::runtime::cluster::{installed, STATS};

thread_local! {
    static TIMER: RefCell<Option<Box<ngx_event_t>>> = const { RefCell::new(None) };
    static BUSY: Cell<bool> = const { Cell::new(false) };
    static ZONE: Cell<Option<LimitZone>> = const { Cell::new(None) };
    static METRICS: Cell<Option<NonNull<ngx_shm_zone_t>>> = const { Cell::new(None) };
    /// This worker syncs the node's approximate counters (worker 0).
    static SYNCS: Cell<bool> = const { Cell::new(false) };
    static EVERY_MS: Cell<u64> = const { Cell::new(100) };
    /// How old an idle counter's view may get before it is synced anyway.
    static REFRESH_MS: Cell<u64> = const { Cell::new(300) };
}

/// Starts the timer (`init_process`, after the client is installed).
///
/// # Safety
/// `cycle` must be the worker's cycle, on the nginx thread; the zones belong to it.
pub unsafe fn start(
    cycle: *mut ngx_cycle_t,
    zone: Option<LimitZone>,
    metrics: Option<NonNull<ngx_shm_zone_t>>,
    every_ms: u64,
    stale_ms: u64,
) {
    // SAFETY: reading nginx's worker number; the event lives in TIMER until `stop`.
    unsafe {
        SYNCS.with(|s| s.set(ngx::ffi::ngx_worker == 0 && zone.is_some()));
        METRICS.with(|m| m.set(metrics));
        let mut ev: Box<ngx_event_t> = Box::new(std::mem::zeroed());
        ev.handler = Some(tick);
        ev.log = (*cycle).log;
        // a worker that exits does not wait for it
        ev.set_cancelable(1);
        ZONE.with(|z| z.set(zone));
        EVERY_MS.with(|e| e.set(every_ms.max(10)));
        REFRESH_MS.with(|e| e.set(stale_ms / 2));
        let ptr: *mut ngx_event_t = &mut *ev;
        TIMER.with(|t| *t.borrow_mut() = Some(ev));
        ngx_add_timer(ptr, every_ms.max(10) as _);
    }
}

/// Stops the sync (`exit_process`).
pub fn stop() {
    let _ = TIMER.try_with(|t| {
        if let Some(mut ev) = t.borrow_mut().take() {
            if ev.timer_set() != 0 {
                // SAFETY: the timer was armed on this thread; removed before the event goes.
                unsafe { ngx_del_timer(&mut *ev) };
            }
        }
    });
}

unsafe extern "C" fn tick(ev: *mut ngx_event_t) {
    // SAFETY: ev is our timer event (start), on the nginx thread.
    let log = unsafe { (*ev).log };
    guard(log, (), || {
        drain_stats();
        if SYNCS.with(Cell::get) && !BUSY.with(Cell::get) {
            sync_once();
        }
        // SAFETY: as above; re-armed unless the worker is going away.
        unsafe {
            if ngx::ffi::ngx_exiting == 0 && ngx::ffi::ngx_terminate == 0 {
                ngx_add_timer(ev, EVERY_MS.with(Cell::get) as _);
            }
        }
    });
}

/// Moves this worker's Redis call counts into the metrics zone (also done when a parked
/// request resumes).
pub fn drain_stats() {
    let Some(zone) = METRICS.with(Cell::get) else {
        return;
    };
    // SAFETY: the metrics zone of this worker's cycle (start), on the nginx thread.
    if let Some(store) = unsafe { shm::store(zone) } {
        STATS.drain_into(&store);
    }
}

fn sync_once() {
    let (Some(zone), Some(client)) = (ZONE.with(Cell::get), installed()) else {
        return;
    };
    let items = zone
        .with_table(|t| collect(t, now_ms(), REFRESH_MS.with(Cell::get)))
        .unwrap_or_default();
    if items.is_empty() {
        return;
    }
    BUSY.with(|b| b.set(true));
    let spawned = bridge::spawn(async move {
        let answers = client.sync(items.clone()).await;
        bridge::post(Box::new(move || {
            let now = now_ms();
            if let Some(zone) = ZONE.with(Cell::get) {
                zone.with_table(|t| {
                    for (item, answer) in items.iter().zip(answers) {
                        apply(t, item, answer, now);
                    }
                });
            }
            let _ = BUSY.try_with(|b| b.set(false));
        }));
    });
    if !spawned {
        BUSY.with(|b| b.set(false));
    }
}
