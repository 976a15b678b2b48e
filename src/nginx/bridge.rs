//! The async bridge: the one way work leaves the event loop and comes back.
//!
//! Each worker runs a small tokio runtime (started in `init_process`, after the fork; stopped
//! in `exit_process`). Work on it never touches nginx memory; what it has for nginx it
//! [`post`]s: a job queued here, and a write to the module's own eventfd, which is registered
//! with nginx's event loop like a connection (not `ngx_notify`, whose one handler slot is
//! shared with thread pools). The eventfd's read handler runs the queued jobs on the nginx
//! thread.
//!
//! A request that waits for a result is [`park`]ed: its count is raised, a timer is armed
//! (the wait's bound, and what keeps a gracefully exiting worker alive until the request is
//! done), and the result is delivered only if the request is still parked
//! (`core::parked`): the first of result, timer and request end unparks it; a request freed
//! while parked (client gone) leaves its late result to be dropped.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::c_void;
use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use ngx::ffi::{
    ngx_close_connection, ngx_connection_t, ngx_cycle_t, ngx_del_timer, ngx_event_t,
    ngx_get_connection, ngx_handle_read_event, ngx_http_finalize_request, ngx_http_request_t,
    ngx_http_run_posted_requests, ngx_http_test_reading, ngx_int_t, ngx_log_t, NGX_ERROR,
    NGX_LOG_ALERT, NGX_LOG_NOTICE, NGX_OK,
};

use super::ctx::pool_allocate;
use super::guard::guard;
use crate::core::parked::Parked;

/// A job for the nginx thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// What a parked request does with its result (`None`: its timer fired first); returns the
/// code its request is finalized with.
pub type Resume =
    Box<dyn FnOnce(*mut ngx_http_request_t, Option<Box<dyn Any + Send>>) -> ngx_int_t>;

static RUNTIME: Mutex<Option<tokio::runtime::Runtime>> = Mutex::new(None);
static QUEUE: Mutex<Vec<Job>> = Mutex::new(Vec::new());
/// The eventfd, -1 when the bridge is not running.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

struct Waiting {
    r: *mut ngx_http_request_t,
    timer: *mut ngx_event_t,
    resume: Resume,
}

thread_local! {
    /// The eventfd's connection (nginx thread only).
    static CONNECTION: RefCell<*mut ngx_connection_t> = const { RefCell::new(std::ptr::null_mut()) };
    static PARKED: RefCell<Parked<Waiting>> = RefCell::new(Parked::default());
}

/// Starts the runtime and the wake-up of this worker (`init_process`). False on failure
/// (logged).
///
/// # Safety
/// `cycle` must be the worker's cycle; nginx thread.
pub unsafe fn start(cycle: *mut ngx_cycle_t) -> bool {
    // SAFETY: cycle is live (caller); the connection comes from its free list and is given
    // back in `stop`.
    unsafe {
        let log = (*cycle).log;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .thread_name("ai-gateway-rt")
            .enable_all()
            .build();
        let rt = match rt {
            Ok(rt) => rt,
            Err(e) => {
                ngx::ngx_log_error!(NGX_LOG_ALERT, log, "ai_gateway: runtime not started: {}", e);
                return false;
            }
        };
        let fd = libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC);
        if fd < 0 {
            ngx::ngx_log_error!(
                NGX_LOG_ALERT,
                log,
                "ai_gateway: eventfd() failed: {}",
                std::io::Error::last_os_error()
            );
            return false;
        }
        let c = ngx_get_connection(fd, log);
        if c.is_null() {
            libc::close(fd);
            return false;
        }
        let rev = (*c).read;
        (*rev).handler = Some(wake_handler);
        (*rev).log = log;
        (*c).log = log;
        if ngx_handle_read_event(rev, 0) != NGX_OK as ngx_int_t {
            ngx_close_connection(c);
            return false;
        }
        CONNECTION.with(|k| *k.borrow_mut() = c);
        if let Ok(mut slot) = RUNTIME.lock() {
            *slot = Some(rt);
        }
        WAKE_FD.store(fd, Ordering::Release);
        ngx::ngx_log_error!(
            NGX_LOG_NOTICE,
            log,
            "ai_gateway: worker runtime started (pid {})",
            std::process::id()
        );
        true
    }
}

/// Stops the runtime and closes the wake-up (`exit_process`): tasks are dropped where they
/// wait, queued jobs are dropped unrun.
///
/// # Safety
/// nginx thread, in `exit_process`.
pub unsafe fn stop() {
    WAKE_FD.store(-1, Ordering::Release);
    if let Some(rt) = RUNTIME.lock().ok().and_then(|mut r| r.take()) {
        rt.shutdown_background();
    }
    if let Ok(mut q) = QUEUE.lock() {
        q.clear();
    }
    let c = CONNECTION.with(|k| std::mem::replace(&mut *k.borrow_mut(), std::ptr::null_mut()));
    if !c.is_null() {
        // SAFETY: the connection is ours (start); closing it removes its event and the fd,
        // so nginx finds no socket left open at exit.
        unsafe { ngx_close_connection(c) };
    }
}

/// Runs `fut` on the worker's runtime and waits for it, at most `max` (the nginx thread
/// blocks: only for a worker that exits). `None` when it did not end in time or the bridge
/// is not running.
pub fn block_on<F: Future>(fut: F, max: std::time::Duration) -> Option<F::Output> {
    // the handle, not the runtime: tasks may take the runtime's lock meanwhile
    let handle = RUNTIME
        .lock()
        .ok()
        .and_then(|rt| rt.as_ref().map(|rt| rt.handle().clone()))?;
    handle
        .block_on(async move { tokio::time::timeout(max, fut).await })
        .ok()
}

/// Whether the bridge runs in this process.
pub fn running() -> bool {
    WAKE_FD.load(Ordering::Acquire) >= 0
}

/// Runs `fut` on the worker's runtime. False when the bridge is not running.
pub fn spawn<F>(fut: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    match RUNTIME.lock() {
        Ok(rt) => match rt.as_ref() {
            Some(rt) => {
                rt.spawn(fut);
                true
            }
            None => false,
        },
        Err(_) => false,
    }
}

/// Queues `job` for the nginx thread and wakes it (any thread). Dropped when the bridge has
/// stopped.
pub fn post(job: Job) {
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd < 0 {
        return;
    }
    if let Ok(mut q) = QUEUE.lock() {
        q.push(job);
    } else {
        return;
    }
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a local to the eventfd; EAGAIN (counter full) still
    // leaves it readable, which is all the wake-up needs.
    unsafe {
        libc::write(fd, (&one as *const u64).cast(), 8);
    }
}

unsafe extern "C" fn wake_handler(ev: *mut ngx_event_t) {
    // SAFETY: ev is the eventfd connection's read event (start).
    let log = unsafe { (*ev).log };
    guard(log, (), || {
        let fd = WAKE_FD.load(Ordering::Acquire);
        if fd >= 0 {
            let mut buf = [0u8; 8];
            // SAFETY: reading into a local buffer; non-blocking fd.
            unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 8) };
        }
        // jobs queued while these run wake the handler again (the write above re-arms the
        // edge-triggered event)
        let jobs = QUEUE
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        for job in jobs {
            guard(log, (), job);
        }
    });
}

/// The state of a parked request, in its pool: dropping it (the pool is destroyed) unparks
/// the request and removes its timer.
struct ParkState {
    token: u64,
    timer: Box<ngx_event_t>,
}

impl Drop for ParkState {
    fn drop(&mut self) {
        if self.timer.timer_set() != 0 {
            // SAFETY: armed by `park` on this thread; removed before the memory goes.
            unsafe { ngx_del_timer(&mut *self.timer) };
        }
        let _ = PARKED.try_with(|p| p.borrow_mut().unpark(self.token));
    }
}

/// Parks `r` until `fut` has a result or `timeout_ms` passed, then calls `resume` on the
/// nginx thread and finalizes the request with what it returns. The caller returns
/// `NGX_DONE` from its handler. False (nothing parked) when the bridge is not running or
/// memory ran out.
///
/// # Safety
/// `r` must be a live main request on the nginx thread, in a content handler (its body read
/// or discarded).
pub unsafe fn park<T, F>(
    r: *mut ngx_http_request_t,
    timeout_ms: u64,
    fut: F,
    resume: Resume,
) -> bool
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    if !running() {
        return false;
    }
    // SAFETY: r is live (caller); the state lives in its pool and its Drop unparks.
    unsafe {
        let mut timer: Box<ngx_event_t> = Box::new(std::mem::zeroed());
        timer.handler = Some(park_timer_handler);
        timer.log = (*(*r).connection).log;
        let timer_ptr: *mut ngx_event_t = &mut *timer;
        let token = PARKED.with(|p| {
            p.borrow_mut().park(Waiting {
                r,
                timer: timer_ptr,
                resume,
            })
        });
        (*timer_ptr).data = token as usize as *mut c_void;
        if pool_allocate((*r).pool, ParkState { token, timer }).is_none() {
            PARKED.with(|p| p.borrow_mut().unpark(token));
            return false;
        }
        let spawned = spawn(async move {
            let out = fut.await;
            post(Box::new(move || deliver(token, Some(Box::new(out)))));
        });
        if !spawned {
            PARKED.with(|p| p.borrow_mut().unpark(token));
            return false;
        }
        ngx::ffi::ngx_add_timer(timer_ptr, timeout_ms.max(1) as _);
        (*(*r).main).set_count((*(*r).main).count() + 1);
        // a client that goes away while the request waits ends it (nginx frees it; the
        // late result is then dropped)
        (*r).read_event_handler = Some(ngx_http_test_reading);
        true
    }
}

unsafe extern "C" fn park_timer_handler(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is the token of a parked request; the timer is removed when
    // the request's pool goes, so the request is live while it can fire.
    let (log, token) = unsafe { ((*ev).log, (*ev).data as usize as u64) };
    guard(log, (), || deliver(token, None));
}

/// Delivers a result (or the timeout, `None`) to a request still parked under `token`.
fn deliver(token: u64, value: Option<Box<dyn Any + Send>>) {
    let Some(w) = PARKED.with(|p| p.borrow_mut().unpark(token)) else {
        // the request ended, or its timer fired: the value is dropped here
        return;
    };
    // SAFETY: an entry still parked means its request's pool (and the timer in it) is
    // live: the pool's cleanup unparks before freeing.
    unsafe {
        if (*w.timer).timer_set() != 0 {
            ngx_del_timer(w.timer);
        }
        let r = w.r;
        let c = (*r).connection;
        let log: *mut ngx_log_t = (*c).log;
        let rc = guard(log, NGX_ERROR as ngx_int_t, || (w.resume)(r, value));
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }
}

/// Requests parked in this worker now.
pub fn parked() -> usize {
    PARKED.with(|p| p.borrow().len())
}
