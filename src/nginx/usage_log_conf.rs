//! `ai_gateway_usage_log` (http level):
//!
//! ```nginx
//! ai_gateway_usage_log [batch=500] [buffer=10000] [flush=1s] [spool=<dir>] [spool_size=256m]
//!                      [stream_max=5000000] [retention=30d] [aggregates=400d] [lease=10s]
//!                      [node=<name>];
//! ```
//!
//! Records go to the Redis stream when `ai_gateway_redis` is set, else straight to the
//! MySQL of `ai_gateway_mysql`; a node with both runs an ingestor (one holds the lease at a
//! time). Its start in each worker is in `usage_log`.

use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::time::Duration;

use ngx::ffi::{ngx_command_t, ngx_conf_t, ngx_parse_size, ngx_str_t, NGX_ERROR};

use super::conf::MainConf;
use super::config_source::{full_path, param, time_ms};
use super::directives::{lossy, setter, SetError};
use crate::runtime::access_log::LogSettings;

const DAY_MS: u64 = 86_400_000;

fn size(value: &str) -> Option<u64> {
    let mut s = ngx_str_t {
        len: value.len(),
        data: value.as_ptr().cast_mut(),
    };
    // SAFETY: ngx_parse_size only reads the string.
    let n = unsafe { ngx_parse_size(&mut s) };
    (n != NGX_ERROR as isize && n > 0).then_some(n as u64)
}

fn count(value: &str, min: u64, max: u64) -> Option<u64> {
    value.parse().ok().filter(|n| (min..=max).contains(n))
}

/// Whole days (`30d`).
fn days(value: &str) -> Option<u32> {
    let ms = time_ms(value)?;
    (ms % DAY_MS == 0 && ms / DAY_MS <= 3650).then_some((ms / DAY_MS) as u32)
}

/// The directive's handler.
pub unsafe extern "C" fn cmd_usage_log(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf; cf is being parsed.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            if mcf.usage_log.is_some() {
                return Err(SetError::Duplicate);
            }
            let mut s = LogSettings {
                node: lossy(&(*(*cf).cycle).hostname),
                ..LogSettings::default()
            };
            let mut spool = None;
            for a in args {
                let a = lossy(a);
                let bad =
                    || SetError::Emerg(format!("ai_gateway_usage_log: invalid parameter \"{a}\""));
                if let Some(v) = param(&a, "batch") {
                    s.batch = count(v, 1, 10_000).ok_or_else(bad)? as u32;
                } else if let Some(v) = param(&a, "buffer") {
                    s.buffer = count(v, 1, 1_000_000).ok_or_else(bad)? as u32;
                } else if let Some(v) = param(&a, "flush") {
                    s.flush =
                        Duration::from_millis(time_ms(v).filter(|ms| *ms >= 10).ok_or_else(bad)?);
                } else if let Some(v) = param(&a, "spool") {
                    spool = Some(full_path(cf, v, false)?);
                } else if let Some(v) = param(&a, "spool_size") {
                    s.spool_max = size(v).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "stream_max") {
                    s.stream_max = count(v, 1, u64::from(u32::MAX)).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "retention") {
                    s.retention_days = days(v).filter(|d| *d >= 1).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "aggregates") {
                    s.aggregate_days = days(v).filter(|d| *d >= 1).ok_or_else(bad)?;
                } else if let Some(v) = param(&a, "lease") {
                    s.lease =
                        Duration::from_millis(time_ms(v).filter(|ms| *ms >= 1000).ok_or_else(bad)?);
                } else if let Some(v) = param(&a, "node") {
                    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(bad());
                    }
                    s.node = v.to_string();
                } else {
                    return Err(bad());
                }
            }
            if s.buffer < s.batch {
                return Err(SetError::Emerg(format!(
                    "ai_gateway_usage_log: buffer={} holds less than one batch (batch={})",
                    s.buffer, s.batch
                )));
            }
            s.node = crate::core::access_log::record::cut(&s.node, 64).to_string();
            s.spool_dir = PathBuf::from(match spool {
                Some(p) => p,
                None => full_path(cf, "logs/ai_gateway_spool", false)?,
            });
            mcf.usage_log = Some(s);
            Ok(())
        })
    }
}

/// The directive needs a store (checked once the http block is parsed).
pub fn init_main_conf(mcf: &MainConf) -> Result<(), String> {
    if mcf.usage_log.is_some() && mcf.redis.is_none() && mcf.mysql.is_none() {
        return Err("\"ai_gateway_usage_log\" needs \"ai_gateway_redis\" (records go to a stream) or \"ai_gateway_mysql\" (records go straight to MySQL) in the http block".into());
    }
    Ok(())
}
