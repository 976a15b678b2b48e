//! `ai_gateway_cluster_limits`: the directive, its checks once the http block is parsed,
//! and the worker's cluster limits client (`runtime::cluster`) started in `init_process`,
//! with what it reports (metrics, log lines) applied on the nginx thread.
//!
//! ```nginx
//! ai_gateway_cluster_limits [mode=exact|approximate|local] [timeout=100ms]
//!                           [on_failure=fail_open|fail_closed] [fail_open_fraction=0.5]
//!                           [breaker=3] [probe=1s] [lease=10s] [sync=100ms] [node=<name>];
//! ```

use std::ffi::{c_char, c_void};
use std::time::Duration;

use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_log_t, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::http::HttpModuleMainConf;

use super::bridge;
use super::cluster_sync;
use super::conf::MainConf;
use super::config_source::{param, time_ms};
use super::directives::{lossy, setter, SetError};
use super::limit_zone::LimitZone;
use super::module::Module;
use super::shm;
use crate::core::cluster::{fraction_of, parse_mode, parse_on_failure, Node};
use crate::runtime::cluster::{self, Client, Report};

/// The directive's handler (http level).
pub unsafe extern "C" fn cmd_cluster_limits(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            if mcf.cluster.is_some() {
                return Err(SetError::Duplicate);
            }
            let mut node = Node::new("");
            for a in args {
                let a = lossy(a);
                let bad = || {
                    SetError::Emerg(format!(
                        "ai_gateway_cluster_limits: invalid parameter \"{a}\""
                    ))
                };
                if let Some(v) = param(&a, "mode") {
                    node.defaults.mode = parse_mode(v).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "on_failure") {
                    node.defaults.on_failure = parse_on_failure(v).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "fail_open_fraction") {
                    let f = v.parse::<f64>().ok().and_then(fraction_of);
                    node.defaults.fraction = f.ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "timeout") {
                    node.timeout_ms = time_ms(v).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "probe") {
                    node.probe_ms = time_ms(v).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "lease") {
                    node.lease_ms = time_ms(v).filter(|ms| *ms >= 1000).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "sync") {
                    node.sync_ms = time_ms(v).filter(|ms| *ms >= 10).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "node") {
                    let ok =
                        !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
                    node.name = ok.then(|| v.to_string()).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "breaker") {
                    let n = v.parse::<u32>().ok().filter(|n| (1..=1000).contains(n));
                    node.breaker = n.ok_or_else(bad)?;
                } else {
                    return Err(bad());
                }
            }
            mcf.cluster = Some(node);
            Ok(())
        })
    }
}

/// Completes the directive once the http block is parsed: it needs `ai_gateway_redis` (its
/// prefix names the keys) and a limit zone (degraded limits live there).
pub fn init_main_conf(mcf: &mut MainConf) -> Result<(), String> {
    let Some(node) = mcf.cluster.as_mut() else {
        return Ok(());
    };
    let Some(redis) = &mcf.redis else {
        return Err(
            "\"ai_gateway_cluster_limits\" needs \"ai_gateway_redis\" in the http block".into(),
        );
    };
    if mcf.limit_zone.is_none() {
        return Err("\"ai_gateway_cluster_limits\" needs \"ai_gateway_limit_zone\" (limits while Redis is unreachable, and local policies)".into());
    }
    node.prefix = redis.prefix.clone();
    node.defaults.stale_ms = node.stale_ms();
    Ok(())
}

/// What the worker's client reports, applied on the nginx thread.
struct NginxReport {
    /// The main conf (outlives every bridge job: jobs are dropped at exit).
    mcf: usize,
    log: usize,
}

impl NginxReport {
    fn with_store(mcf: usize, f: impl FnOnce(&crate::core::metrics::Store)) {
        // SAFETY: a bridge job runs on the nginx thread while the worker runs.
        let mcf = unsafe { &*(mcf as *const MainConf) };
        // SAFETY: the zone belongs to this worker's cycle.
        if let Some(store) = mcf.metrics_zone.and_then(|z| unsafe { shm::store(z) }) {
            f(&store);
        }
    }
}

impl Report for NginxReport {
    fn breaker(&self, opened: bool, why: String) {
        let (mcf, log) = (self.mcf, self.log);
        bridge::post(Box::new(move || {
            let log = log as *mut ngx_log_t;
            if opened {
                NginxReport::with_store(mcf, |s| s.breaker_opened());
                ngx::ngx_log_error!(
                    NGX_LOG_ERR,
                    log,
                    "ai_gateway: Redis unreachable for cluster limits ({}): breaker open, limits decided without Redis",
                    why
                );
            } else {
                ngx::ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "ai_gateway: Redis reachable again: cluster limits back"
                );
            }
        }));
    }

    fn warn(&self, message: String) {
        let log = self.log;
        bridge::post(Box::new(move || {
            let log = log as *mut ngx_log_t;
            ngx::ngx_log_error!(NGX_LOG_WARN, log, "ai_gateway: {}", message);
        }));
    }
}

/// Starts the worker's client (`init_process`).
///
/// # Safety
/// `cycle` must be the worker's cycle, on the nginx thread.
pub unsafe fn init_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: cycle is live (caller); its main conf lives as long as the worker.
    unsafe {
        let Some(mcf) = Module::main_conf(&*cycle) else {
            return;
        };
        let (Some(node), Some(redis)) = (mcf.cluster.clone(), mcf.redis.as_ref()) else {
            return;
        };
        if !bridge::running() && !bridge::start(cycle) {
            return;
        }
        let report = NginxReport {
            mcf: mcf as *const MainConf as usize,
            log: (*cycle).log as usize,
        };
        let mut node = node;
        if node.name.is_empty() {
            // the host and the master's pid: nodes on one host differ, reloads keep it
            node.name = format!("{}:{}", lossy(&(*cycle).hostname), libc::getppid());
        }
        let (every, stale) = (node.sync_ms, node.stale_ms());
        let client = Client::new(redis.info.clone(), node, Box::new(report));
        cluster::install(Some(client.clone()));
        bridge::spawn(client.tick());
        let zone = mcf.limit_zone.and_then(|z| LimitZone::open(z));
        let metrics = mcf.metrics_zone;
        cluster_sync::start(cycle, zone, metrics, every, stale);
    }
}

/// Drops the worker's client (`exit_process`), once the settlements of the requests it
/// served went out (bounded: Redis may be gone).
pub fn exit_process() {
    cluster_sync::stop();
    if let Some(client) = cluster::installed() {
        let max = Duration::from_millis((client.node.timeout_ms * 5 + 500).min(3000));
        let _ = bridge::block_on(client.settle_all(), max);
    }
    cluster::install(None);
}
