//! Run-time configuration in nginx: the directives `ai_gateway_redis` and
//! `ai_gateway_config_source`, the last-known-good file read at start, the source task
//! started in each worker (`runtime::redis_source`) and what its results do on the nginx
//! thread (install the snapshot, log, count).

use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ngx::ffi::{
    ngx_command_t, ngx_conf_full_name, ngx_conf_t, ngx_cycle_t, ngx_log_t, ngx_parse_time,
    ngx_str_t, ngx_uint_t, NGX_ERROR, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK,
};
use ngx::http::HttpModuleMainConf;
use redis::IntoConnectionInfo;

use super::bridge;
use super::conf::MainConf;
use super::directives::{lossy, setter, SetError};
use super::module::Module;
use super::shm;
use super::snapshot;
use super::target_health;
use crate::core::routing::health::HealthView;
use crate::core::snapshot::head::lkg_decode;
use crate::core::snapshot::{Snapshot, Source};
use crate::runtime::load;
use crate::runtime::redis_source::{
    self, Level, RedisSettings, Shared, Sink, SourceSettings, SyncError,
};

/// The worker's source state (set in `init_process`).
static SHARED: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

/// The source's shared state in this worker, when it runs.
pub fn shared() -> Option<Arc<Shared>> {
    SHARED.lock().ok().and_then(|s| s.clone())
}

/// A `name=value` argument's value, if `arg` has that name.
pub(super) fn param<'a>(arg: &'a str, name: &str) -> Option<&'a str> {
    arg.strip_prefix(name)?.strip_prefix('=')
}

/// A key prefix or node name: 1 to `max` printable ASCII bytes, no spaces.
fn is_label(v: &str, max: usize) -> bool {
    !v.is_empty() && v.len() <= max && v.bytes().all(|b| b.is_ascii_graphic())
}

/// A time argument (`5s`, `500ms`) in milliseconds.
pub(super) fn time_ms(value: &str) -> Option<u64> {
    let mut s = ngx_str_t {
        len: value.len(),
        data: value.as_ptr().cast_mut(),
    };
    // SAFETY: ngx_parse_time only reads the string.
    let ms = unsafe { ngx_parse_time(&mut s, 0) };
    (ms != NGX_ERROR as isize && ms > 0).then_some(ms as u64)
}

/// A path argument, relative to nginx's prefix/conf directory as nginx resolves them.
///
/// # Safety
/// `cf` must be the configuration being parsed.
pub(super) unsafe fn full_path(
    cf: *mut ngx_conf_t,
    value: &str,
    conf_prefix: bool,
) -> Result<String, SetError> {
    let mut name = ngx_str_t {
        len: value.len(),
        data: value.as_ptr().cast_mut(),
    };
    // SAFETY: cf is live; nginx allocates the full name from the cycle pool.
    if unsafe { ngx_conf_full_name((*cf).cycle, &mut name, conf_prefix as ngx_uint_t) }
        != NGX_OK as isize
    {
        return Err(SetError::Failed);
    }
    Ok(lossy(&name))
}

/// `ai_gateway_redis <url> [prefix=<p>] [timeout=<time>] [password_file=<path>];`
pub unsafe extern "C" fn cmd_redis(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            if mcf.redis.is_some() {
                return Err(SetError::Duplicate);
            }
            let url = lossy(&args[0]);
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(SetError::Emerg(
                    "ai_gateway_redis: the URL must start with redis:// or rediss://".into(),
                ));
            }
            // the URL may hold a password: the message never repeats it
            let mut info = url.as_str().into_connection_info().map_err(|e| {
                SetError::Emerg(format!("ai_gateway_redis: invalid URL ({:?})", e.kind()))
            })?;
            let mut prefix = "ai_gateway".to_string();
            let mut timeout = Duration::from_secs(1);
            for a in &args[1..] {
                let a = lossy(a);
                if let Some(v) = param(&a, "prefix") {
                    if !is_label(v, 64) {
                        return Err(SetError::Emerg(format!(
                            "ai_gateway_redis: invalid prefix \"{v}\""
                        )));
                    }
                    prefix = v.to_string();
                } else if let Some(v) = param(&a, "timeout") {
                    let ms = time_ms(v).ok_or_else(|| {
                        SetError::Emerg(format!("ai_gateway_redis: invalid timeout \"{v}\""))
                    })?;
                    timeout = Duration::from_millis(ms);
                } else if let Some(v) = param(&a, "password_file") {
                    let path = full_path(cf, v, true)?;
                    let raw = std::fs::read_to_string(&path).map_err(|e| {
                        SetError::Emerg(format!("ai_gateway_redis: cannot read \"{path}\": {e}"))
                    })?;
                    let pw = raw.strip_suffix('\n').unwrap_or(&raw);
                    let pw = pw.strip_suffix('\r').unwrap_or(pw);
                    if pw.is_empty() || pw.contains(['\n', '\r']) {
                        return Err(SetError::Emerg(format!(
                            "ai_gateway_redis: \"{path}\" must hold the password on one line"
                        )));
                    }
                    info.redis.password = Some(pw.to_string());
                } else {
                    return Err(SetError::Emerg(format!(
                        "ai_gateway_redis: invalid parameter \"{a}\""
                    )));
                }
            }
            mcf.redis = Some(RedisSettings {
                info,
                prefix,
                timeout,
            });
            Ok(())
        })
    }
}

/// `ai_gateway_config_source redis [poll=<time>] [heartbeat=<time>] [lkg=<path>]
/// [node=<name>];`
pub unsafe extern "C" fn cmd_config_source(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            if mcf.source.is_some() {
                return Err(SetError::Duplicate);
            }
            if lossy(&args[0]) != "redis" {
                return Err(SetError::Emerg(format!(
                    "ai_gateway_config_source: unknown source \"{}\" (only \"redis\")",
                    lossy(&args[0])
                )));
            }
            let host = lossy(&(*(*cf).cycle).hostname);
            let mut s = SourceSettings {
                poll: Duration::from_secs(5),
                heartbeat: Duration::from_secs(5),
                lkg: None,
                node: host,
                config_dir: PathBuf::new(),
                seal_keys: Vec::new(),
            };
            for a in &args[1..] {
                let a = lossy(a);
                let bad = || {
                    SetError::Emerg(format!(
                        "ai_gateway_config_source: invalid parameter \"{a}\""
                    ))
                };
                if let Some(v) = param(&a, "poll") {
                    s.poll = Duration::from_millis(time_ms(v).ok_or_else(bad)?);
                } else if let Some(v) = param(&a, "heartbeat") {
                    s.heartbeat = Duration::from_millis(time_ms(v).ok_or_else(bad)?.max(1000));
                } else if let Some(v) = param(&a, "lkg") {
                    if v.is_empty() {
                        return Err(bad());
                    }
                    s.lkg = Some(PathBuf::from(full_path(cf, v, false)?));
                } else if let Some(v) = param(&a, "node") {
                    if !is_label(v, 128) {
                        return Err(bad());
                    }
                    s.node = v.to_string();
                } else {
                    return Err(bad());
                }
            }
            mcf.source = Some(s);
            Ok(())
        })
    }
}

/// Completes the source's configuration once the http block is parsed (`init_main_conf`):
/// it needs `ai_gateway_redis` and the file (the fallback); a last-known-good file that is
/// there and valid replaces the file's snapshot as what workers start with.
///
/// # Safety
/// `cf` must be the configuration being parsed.
pub unsafe fn init_main_conf(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    let Some(source) = mcf.source.as_mut() else {
        return Ok(());
    };
    if mcf.redis.is_none() {
        return Err(
            "\"ai_gateway_config_source redis\" needs \"ai_gateway_redis\" in the http block"
                .into(),
        );
    }
    let (Some(file), Some(path)) = (&mcf.snapshot, &mcf.config_path) else {
        return Err("\"ai_gateway_config_source\" needs \"ai_gateway_config\" (the configuration served until Redis answers, and without a last-known-good file)".into());
    };
    let dir = Path::new(path)
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    source.config_dir = dir.clone();
    source.seal_keys = mcf.seal_keys.clone();
    let Some(lkg) = source.lkg.clone() else {
        return Ok(());
    };
    let bytes = match std::fs::read(&lkg) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            ngx::ngx_conf_log_error!(
                NGX_LOG_WARN,
                cf,
                "ai_gateway: cannot read the last-known-good file \"{}\": {}; starting from \"{}\"",
                lkg.display(),
                e,
                path
            );
            return Ok(());
        }
    };
    let loaded = lkg_decode(&bytes).and_then(|(head, doc)| {
        let s = load::snapshot(
            doc,
            Source::LastKnownGood,
            head.version,
            &head.epoch,
            &dir,
            &mcf.seal_keys,
        )?;
        s.fits(mcf.limit_zone.is_some(), mcf.route_anywhere)?;
        Ok(s)
    });
    match loaded {
        Ok(s) => {
            let _ = file;
            mcf.snapshot = Some(Arc::new(s));
        }
        Err(e) => {
            ngx::ngx_conf_log_error!(NGX_LOG_WARN, cf, "ai_gateway: the last-known-good file \"{}\" is not usable ({}); starting from \"{}\"", lkg.display(), e, path);
        }
    }
    Ok(())
}

/// Starts the bridge and the source in a worker (`init_process`).
///
/// # Safety
/// `cycle` must be the worker's cycle, on the nginx thread.
pub unsafe fn init_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: cycle is live (caller); its main conf lives as long as the worker.
    unsafe {
        let Some(mcf) = Module::main_conf(&*cycle) else {
            return;
        };
        let Some(redis) = mcf.redis.clone() else {
            return;
        };
        if !bridge::running() && !bridge::start(cycle) {
            return;
        }
        let (Some(source), Some(start)) = (mcf.source.clone(), snapshot::of_conf(mcf)) else {
            return;
        };
        let shared = Arc::new(Shared::default());
        if let Ok(mut s) = SHARED.lock() {
            *s = Some(shared.clone());
        }
        let sink: Arc<dyn Sink> = Arc::new(NginxSink {
            mcf: mcf as *const MainConf as usize,
            log: (*cycle).log as usize,
        });
        let worker = ngx::ffi::ngx_worker;
        let origin = start.origin.clone();
        let log = (*cycle).log;
        ngx::ngx_log_error!(
            NGX_LOG_NOTICE,
            log,
            "ai_gateway: configuration from Redis {} (prefix \"{}\", node \"{}\"), starting with {} {}",
            redis.address(),
            redis.prefix,
            source.node,
            origin.source.as_str(),
            start.label()
        );
        bridge::spawn(redis_source::run(
            redis, source, worker, origin, shared, sink,
        ));
    }
}

/// Stops the bridge (`exit_process`).
///
/// # Safety
/// nginx thread, in `exit_process`.
pub unsafe fn exit_process() {
    if let Ok(mut s) = SHARED.lock() {
        *s = None;
    }
    // SAFETY: as the caller's.
    unsafe { bridge::stop() };
}

/// The source's results, carried to the nginx thread.
struct NginxSink {
    /// The worker's `MainConf` (lives as long as the worker).
    mcf: usize,
    log: usize,
}

impl NginxSink {
    /// # Safety
    /// On the nginx thread, while the worker runs (jobs are dropped at exit).
    unsafe fn conf(mcf: usize) -> &'static MainConf {
        // SAFETY: see the type: the main conf outlives every job of the bridge.
        unsafe { &*(mcf as *const MainConf) }
    }
}

fn log_at(log: usize, level: Level, message: &str) {
    let level = match level {
        Level::Notice => NGX_LOG_NOTICE,
        Level::Warn => NGX_LOG_WARN,
        Level::Error => NGX_LOG_ERR,
    };
    let log = log as *mut ngx_log_t;
    // the cycle's log, on the nginx thread (a bridge job)
    ngx::ngx_log_error!(level, log, "ai_gateway: {}", message);
}

impl Sink for NginxSink {
    fn apply(&self, snap: Arc<Snapshot>) -> tokio::sync::oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (mcf, log) = (self.mcf, self.log);
        bridge::post(Box::new(move || {
            // SAFETY: a bridge job runs on the nginx thread while the worker runs.
            let mcf = unsafe { NginxSink::conf(mcf) };
            let fits = snap.fits(mcf.limit_zone.is_some(), mcf.route_anywhere);
            if fits.is_ok() {
                let label = snap.label();
                let old = snapshot::install(mcf, snap);
                log_at(
                    log,
                    Level::Notice,
                    &format!(
                        "applied configuration snapshot {} (was {})",
                        label,
                        old.map_or_else(
                            || "-".to_string(),
                            |o| format!("{} {}", o.origin.source.as_str(), o.label())
                        )
                    ),
                );
                // SAFETY: the zone belongs to this worker's cycle.
                if let Some(store) = mcf.metrics_zone.and_then(|z| unsafe { shm::store(z) }) {
                    store.sync_applied();
                }
            }
            let _ = tx.send(fits);
        }));
        rx
    }

    fn log(&self, level: Level, message: String) {
        let log = self.log;
        bridge::post(Box::new(move || log_at(log, level, &message)));
    }

    fn success(&self, unix_ms: u64) {
        let mcf = self.mcf;
        bridge::post(Box::new(move || {
            // SAFETY: a bridge job runs on the nginx thread while the worker runs.
            let mcf = unsafe { NginxSink::conf(mcf) };
            // SAFETY: the zone belongs to this worker's cycle.
            if let Some(store) = mcf.metrics_zone.and_then(|z| unsafe { shm::store(z) }) {
                store.sync_success(unix_ms);
            }
        }));
    }

    fn targets(&self) -> tokio::sync::oneshot::Receiver<HealthView> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mcf = self.mcf;
        bridge::post(Box::new(move || {
            // SAFETY: a bridge job runs on the nginx thread while the worker runs; the main
            // conf is the running cycle's.
            let view = unsafe { target_health::read(NginxSink::conf(mcf)) };
            let _ = tx.send(view);
        }));
        rx
    }

    fn error(&self, error: SyncError) {
        let mcf = self.mcf;
        bridge::post(Box::new(move || {
            // SAFETY: a bridge job runs on the nginx thread while the worker runs.
            let mcf = unsafe { NginxSink::conf(mcf) };
            // SAFETY: the zone belongs to this worker's cycle.
            if let Some(store) = mcf.metrics_zone.and_then(|z| unsafe { shm::store(z) }) {
                store.sync_error(error.index());
            }
        }));
    }
}

/// How long this worker has been behind the published snapshot (seconds), when the source
/// runs.
pub fn seconds_behind() -> Option<u64> {
    let shared = shared()?;
    let s = shared.status.lock().ok()?.clone();
    let behind = s.behind_since_ms.map_or(0, |since| {
        redis_source::unix_ms().saturating_sub(since) / 1000
    });
    Some(behind)
}
