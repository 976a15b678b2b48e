//! Usage logs in each worker: the log phase writes each gateway request's record into the
//! worker's bounded buffer (`core::access_log::buffer`: no IO, no lock, no allocation once
//! warm); a timer every `flush` hands the filled batch to the shipper on the worker's
//! runtime (`runtime::access_log`) and moves the log counts into the metrics zone. Worker 0
//! of a node with MySQL also keeps the partitions, and with Redis too runs the ingestor.
//! At exit the batch being filled is handed over and the shipper is given a few seconds to
//! ship or spool what it holds.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ngx::ffi::{
    ngx_add_timer, ngx_cycle_t, ngx_del_timer, ngx_event_t, ngx_http_request_t,
    ngx_http_upstream_state_t, ngx_log_t, ngx_shm_zone_t, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::http::HttpModuleMainConf;
use tokio::sync::{mpsc, oneshot};

use super::bridge;
use super::conf::MainConf;
use super::ctx::RequestCtx;
use super::guard::guard;
use super::module::Module;
use super::shm;
use crate::core::access_log::buffer::{Batch, Buffer, Push};
use crate::core::access_log::record::{Record, Source, Tokens};
use crate::core::access_log::request_id::IdSource;
use crate::core::metrics::log_stats::Count;
use crate::core::usage::TokenUsage;
use crate::runtime::access_log::ingestor::{maintain_loop, Ingestor};
use crate::runtime::access_log::shipper::{Shipper, Sink};
use crate::runtime::access_log::spool::Spool;
use crate::runtime::access_log::stream::Stream;
use crate::runtime::access_log::{LogSettings, Say, STATS};
use crate::runtime::admin::db::Db;

thread_local! {
    static BUFFER: RefCell<Option<Buffer>> = const { RefCell::new(None) };
    static SENDER: RefCell<Option<mpsc::Sender<Batch>>> = const { RefCell::new(None) };
    static DONE: RefCell<Option<oneshot::Receiver<()>>> = const { RefCell::new(None) };
    static TIMER: RefCell<Option<Box<ngx_event_t>>> = const { RefCell::new(None) };
    static METRICS: Cell<Option<NonNull<ngx_shm_zone_t>>> = const { Cell::new(None) };
    static FLUSH_MS: Cell<u64> = const { Cell::new(1000) };
    static STOP: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
    static INGESTOR_DONE: RefCell<Option<oneshot::Receiver<()>>> = const { RefCell::new(None) };
    static IDS: RefCell<Option<IdSource>> = const { RefCell::new(None) };
}

/// The request's id (`$ai_gateway_request_id`, and its access-log record's), made once.
pub fn request_id(ctx: &mut RequestCtx) -> [u8; 32] {
    if let Some(id) = ctx.request_id {
        return id;
    }
    let id = IDS.with(|ids| {
        ids.borrow_mut()
            .get_or_insert_with(|| {
                let mut seed = [0u8; 16];
                // the OS's randomness; a failure still leaves the pid and the time apart
                if getrandom::getrandom(&mut seed).is_err() {
                    let t = crate::runtime::redis_source::unix_ms();
                    seed[..8].copy_from_slice(&t.to_le_bytes());
                    seed[8..12].copy_from_slice(&std::process::id().to_le_bytes());
                }
                IdSource::new(seed)
            })
            .next_id()
    });
    ctx.request_id = Some(id);
    id
}

fn say(log: usize) -> Say {
    Arc::new(move |warn: bool, message: String| {
        bridge::post(Box::new(move || {
            let level = if warn { NGX_LOG_WARN } else { NGX_LOG_NOTICE };
            ngx::ngx_log_error!(
                level as ngx::ffi::ngx_uint_t,
                log as *mut ngx_log_t,
                "ai_gateway: {}",
                message
            );
        }));
    })
}

/// Starts this worker's part (`init_process`).
///
/// # Safety
/// `cycle` must be the worker's cycle, on the nginx thread.
pub unsafe fn init_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: cycle is live (caller); its main conf lives as long as the worker.
    unsafe {
        let Some(mcf) = Module::main_conf(&*cycle) else {
            return;
        };
        let Some(settings) = mcf.usage_log.clone() else {
            return;
        };
        if !bridge::running() && !bridge::start(cycle) {
            return;
        }
        let log = (*cycle).log as usize;
        let say = say(log);
        let worker = ngx::ffi::ngx_worker;
        let db = mcf.mysql.as_ref().map(|m| {
            let mut m = m.clone();
            m.pool = 2;
            Arc::new(Db::new(&m))
        });
        let sink = match (&mcf.redis, &db) {
            (Some(redis), _) => Sink::Redis(Arc::new(Stream::new(redis.clone()))),
            (None, Some(db)) => Sink::Mysql(db.clone()),
            (None, None) => return,
        };
        let spool = Arc::new(Spool::new(settings.spool_dir.clone(), settings.spool_max));
        let shipper = Arc::new(Shipper {
            sink,
            spool,
            settings: settings.clone(),
            say: say.clone(),
            schema: AtomicBool::new(false),
        });
        let buffers = settings.buffer.div_ceil(settings.batch.max(1)).max(2) as usize;
        let (tx, rx) = mpsc::channel(buffers + 1);
        let (done_tx, done_rx) = oneshot::channel();
        bridge::spawn(shipper.run(rx, done_tx));
        SENDER.with(|s| *s.borrow_mut() = Some(tx));
        DONE.with(|d| *d.borrow_mut() = Some(done_rx));
        BUFFER.with(|b| *b.borrow_mut() = Some(Buffer::new(settings.batch, settings.buffer)));
        if worker == 0 {
            if let Some(db) = db {
                let stop = Arc::new(AtomicBool::new(false));
                STOP.with(|s| *s.borrow_mut() = Some(stop.clone()));
                match &mcf.redis {
                    Some(redis) => {
                        let me = format!(
                            "{}:{}:{}",
                            settings.node,
                            libc::getpid(),
                            crate::runtime::redis_source::unix_ms()
                        );
                        let ingestor = Arc::new(Ingestor {
                            stream: Arc::new(Stream::new(redis.clone())),
                            db,
                            settings: settings.clone(),
                            me,
                            say,
                            stop,
                            schema: AtomicBool::new(false),
                        });
                        let (done_tx, done_rx) = oneshot::channel();
                        INGESTOR_DONE.with(|d| *d.borrow_mut() = Some(done_rx));
                        bridge::spawn(ingestor.run(done_tx));
                    }
                    None => {
                        bridge::spawn(maintain_loop(db, settings.clone(), say, stop));
                    }
                }
            }
        }
        start_timer(cycle, mcf, &settings);
    }
}

unsafe fn start_timer(cycle: *mut ngx_cycle_t, mcf: &MainConf, settings: &LogSettings) {
    // SAFETY: the event lives in TIMER until `exit_process`.
    unsafe {
        METRICS.with(|m| m.set(mcf.metrics_zone));
        let every = (settings.flush.as_millis() as u64).max(10);
        FLUSH_MS.with(|f| f.set(every));
        let mut ev: Box<ngx_event_t> = Box::new(std::mem::zeroed());
        ev.handler = Some(tick);
        ev.log = (*cycle).log;
        ev.set_cancelable(1);
        let ptr: *mut ngx_event_t = &mut *ev;
        TIMER.with(|t| *t.borrow_mut() = Some(ev));
        ngx_add_timer(ptr, every as _);
    }
}

unsafe extern "C" fn tick(ev: *mut ngx_event_t) {
    // SAFETY: ev is our timer event, on the nginx thread.
    let log = unsafe { (*ev).log };
    guard(log, (), || {
        hand_over();
        drain_stats();
        // SAFETY: as above; re-armed unless the worker is going away.
        unsafe {
            if ngx::ffi::ngx_exiting == 0 && ngx::ffi::ngx_terminate == 0 {
                ngx_add_timer(ev, FLUSH_MS.with(Cell::get) as _);
            }
        }
    });
}

/// Hands the batch being filled to the shipper.
fn hand_over() {
    let batch = BUFFER.with(|b| b.borrow_mut().as_mut().and_then(Buffer::take));
    let Some(batch) = batch else { return };
    let records = u64::from(batch.records);
    let sent = SENDER.with(|s| match s.borrow().as_ref() {
        Some(tx) => tx.try_send(batch).is_ok(),
        None => false,
    });
    if !sent {
        STATS.add(Count::DroppedBuffer, records);
    }
}

fn drain_stats() {
    let Some(zone) = METRICS.with(Cell::get) else {
        return;
    };
    // SAFETY: the metrics zone of this worker's cycle, on the nginx thread.
    if let Some(store) = unsafe { shm::store(zone) } {
        STATS.drain_into(&store);
    }
}

/// Stops it (`exit_process`): the batch being filled goes to the shipper, which then ships
/// or spools everything it holds (a few seconds at most).
pub fn exit_process() {
    let _ = TIMER.try_with(|t| {
        if let Some(mut ev) = t.borrow_mut().take() {
            if ev.timer_set() != 0 {
                // SAFETY: the timer was armed on this thread; removed before the event goes.
                unsafe { ngx_del_timer(&mut *ev) };
            }
        }
    });
    let _ = BUFFER.try_with(|_| hand_over());
    let _ = SENDER.try_with(|s| s.borrow_mut().take());
    if let Some(stop) = STOP.try_with(|s| s.borrow_mut().take()).ok().flatten() {
        stop.store(true, Ordering::Release);
    }
    if let Some(done) = DONE.try_with(|d| d.borrow_mut().take()).ok().flatten() {
        let _ = bridge::block_on(done, Duration::from_secs(5));
    }
    // the ingestor ends its step and gives the lease up
    if let Some(done) = INGESTOR_DONE
        .try_with(|d| d.borrow_mut().take())
        .ok()
        .flatten()
    {
        let _ = bridge::block_on(done, Duration::from_secs(3));
    }
    drain_stats();
}

fn key_id(ctx: &RequestCtx, out: &mut [u8; 12]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let Some(k) = ctx.key.as_ref() else { return 0 };
    for (i, b) in k.sha256[..6].iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    12
}

/// Writes the request's record into the buffer (log phase, once the usage is settled).
///
/// # Safety
/// `r` must be the live main request in its log phase.
pub unsafe fn push(
    r: *mut ngx_http_request_t,
    mcf: &MainConf,
    ctx: &mut RequestCtx,
    status: u16,
    tokens: &TokenUsage,
    latency_ms: u64,
) {
    let Some(settings) = mcf.usage_log.as_ref() else {
        return;
    };
    let id = request_id(ctx);
    let request_id = std::str::from_utf8(&id).unwrap_or("");
    // SAFETY: r is live (caller).
    unsafe {
        let req = &*r;
        let mut attempts = 0usize;
        if let Some(states) = req.upstream_states.as_ref() {
            if states.nelts > 0 && !states.elts.is_null() {
                let s = std::slice::from_raw_parts(
                    states.elts as *const ngx_http_upstream_state_t,
                    states.nelts,
                );
                attempts = s.iter().filter(|s| !s.peer.is_null()).count();
            }
        }
        let config = ctx.config();
        let route = ctx.route.as_ref();
        let route_name = route
            .zip(config)
            .and_then(|(st, c)| c.routing.routes.get(st.route))
            .map_or("", |r| r.name.as_str());
        let target = route
            .and_then(|st| st.target().or_else(|| st.order.last().copied()))
            .zip(config)
            .and_then(|(t, c)| c.routing.targets.get(t))
            .map_or("", |t| t.name.as_str());
        let mut key = [0u8; 12];
        let key_len = key_id(ctx, &mut key);
        let record = Record {
            request_id: request_id.into(),
            ts_ms: (req.start_sec as u64) * 1000 + req.start_msec as u64,
            node: settings.node.as_str().into(),
            namespace: ctx.namespace_code().unwrap_or("").into(),
            key_id: std::str::from_utf8(&key[..key_len]).unwrap_or("").into(),
            model: ctx
                .summary
                .as_ref()
                .and_then(|s| s.model.as_deref())
                .unwrap_or("")
                .into(),
            route: route_name.into(),
            target: target.into(),
            status,
            error: ctx
                .error
                .as_ref()
                .or(ctx.rendered.as_ref())
                .map_or("", |e| e.code())
                .into(),
            latency_ms: latency_ms.min(u64::from(u32::MAX)) as u32,
            ttfb_ms: ctx.header_ms.map(|ms| ms.min(u64::from(u32::MAX)) as u32),
            tokens: Tokens {
                prompt: tokens.prompt,
                completion: tokens.completion,
                cached: tokens.cached,
                reasoning: tokens.reasoning,
            },
            source: Source::parse(tokens.source_str()).unwrap_or_default(),
            attempts: attempts.min(255) as u8,
            stream: ctx.summary.as_ref().is_some_and(|s| s.stream),
        };
        let pushed = BUFFER.with(|b| b.borrow_mut().as_mut().map(|b| b.push(&record)));
        match pushed {
            Some(Push::Queued) => STATS.add(Count::Queued, 1),
            Some(Push::Ready) => {
                STATS.add(Count::Queued, 1);
                hand_over();
            }
            Some(Push::Dropped) => STATS.add(Count::DroppedBuffer, 1),
            None => {}
        }
    }
}
