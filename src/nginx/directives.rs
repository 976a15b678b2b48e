//! The directive table and its setters.
//!
//! ```nginx
//! ai_gateway_config <file>;                 # http
//! ai_gateway on | off;                      # http, server, location (default off)
//! ai_gateway_mock_provider [latency=<time>] [interval=<time>];   # location
//! ai_gateway_metrics_zone <name> <size> [max_series=<n>];        # http
//! ai_gateway_metrics;                                            # location
//! ai_gateway_limit_zone <name> <size>;                           # http
//! ai_gateway_policy_log_level info | notice | warn | error;      # http, server, location
//! ai_gateway_route on | off;                                     # http, server, location
//! ai_gateway_upstream;                                           # upstream
//! ai_gateway_redis <url> [prefix=<p>] [timeout=<time>] [password_file=<path>];   # http
//! ai_gateway_config_source redis [poll=<time>] [heartbeat=<time>] [lkg=<path>] [node=<name>];
//! ai_gateway_secret_key <file> | env=<NAME>;                     # http, repeatable
//! ai_gateway_mysql <url> [pool=] [timeout=] [password_file=];    # http (admin_conf.rs)
//! ai_gateway_admin_bootstrap [user=] file=<path> | env=<NAME>;   # http
//! ai_gateway_admin;                                              # location
//! ai_gateway_config_status;                                      # location
//! ```

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use ngx::core::NGX_CONF_ERROR;
use ngx::ffi::{
    ngx_command_t, ngx_conf_full_name, ngx_conf_t, ngx_pagesize, ngx_parse_size, ngx_parse_time,
    ngx_shared_memory_add, ngx_str_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_ANY, NGX_CONF_FLAG,
    NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE2, NGX_CONF_TAKE23, NGX_ERROR, NGX_HTTP_LOC_CONF,
    NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF,
    NGX_HTTP_SRV_CONF_OFFSET, NGX_HTTP_UPS_CONF, NGX_LOG_EMERG, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use super::admin_conf::{cmd_admin, cmd_admin_bootstrap, cmd_mysql};
use super::cluster_conf::cmd_cluster_limits;
use super::conf::{LocConf, MainConf, MockSettings};
use super::config_source::{cmd_config_source, cmd_redis};
use super::config_status::ngx_http_ai_gateway_config_status_handler;
use super::ctx::pool_allocate;
use super::guard::guard;
use super::limit_zone::{ngx_http_ai_gateway_init_limit_zone, LimitZoneSettings};
use super::metrics::ngx_http_ai_gateway_metrics_handler;
use super::mock::ngx_http_ai_gateway_mock_handler;
use super::module::Module;
use super::route::cmd_upstream;
use super::secret_key::cmd_secret_key;
use super::shm::{ngx_http_ai_gateway_init_metrics_zone, ZoneSettings};
use super::token_service::ngx_http_ai_gateway_token_service_handler;
use super::usage_log_conf::cmd_usage_log;
use crate::core::snapshot::Source;
use crate::runtime::load;

pub static mut COMMANDS: [ngx_command_t; 21] = [
    ngx_command_t {
        name: ngx_string!("ai_gateway_config"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(cmd_config),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG)
            as ngx_uint_t,
        set: Some(cmd_enable),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_stream_usage"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG)
            as ngx_uint_t,
        set: Some(cmd_stream_usage),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_mock_provider"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_ANY) as ngx_uint_t,
        set: Some(cmd_mock_provider),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_metrics_zone"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE23) as ngx_uint_t,
        set: Some(cmd_metrics_zone),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_metrics"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(cmd_metrics),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_token_service"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(cmd_token_service),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_limit_zone"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
        set: Some(cmd_limit_zone),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_policy_log_level"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1)
            as ngx_uint_t,
        set: Some(cmd_policy_log_level),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_route"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG)
            as ngx_uint_t,
        set: Some(cmd_route),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_upstream"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(cmd_upstream),
        conf: NGX_HTTP_SRV_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_redis"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(cmd_redis),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_cluster_limits"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_ANY) as ngx_uint_t,
        set: Some(cmd_cluster_limits),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_usage_log"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_ANY) as ngx_uint_t,
        set: Some(cmd_usage_log),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_config_source"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(cmd_config_source),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_secret_key"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(cmd_secret_key),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_config_status"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(cmd_config_status),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_mysql"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(cmd_mysql),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_admin_bootstrap"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(cmd_admin_bootstrap),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("ai_gateway_admin"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(cmd_admin),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

/// Why a directive setter refused its arguments.
pub(super) enum SetError {
    /// nginx prints `"<directive>" directive is duplicate`.
    Duplicate,
    /// Logged as `[emerg]` with the file and line.
    Emerg(String),
    /// Already logged (or out of memory).
    Failed,
}

/// Runs a setter body under the panic guard with the module's configuration struct `T`,
/// mapping its result to what nginx expects.
///
/// # Safety
/// `cf` must be the configuration being parsed and `conf` a `T` of this module.
pub(super) unsafe fn setter<T>(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    body: impl FnOnce(&mut T, &[ngx_str_t]) -> Result<(), SetError>,
) -> *mut c_char {
    // SAFETY: nginx passes the conf being parsed and our configuration struct; cf->args holds
    // the directive name followed by its arguments.
    unsafe {
        let log = (*cf).log;
        let args = &(*(*cf).args).as_slice::<ngx_str_t>()[1..];
        let result = guard(log, Err(SetError::Failed), || {
            body(&mut *(conf as *mut T), args)
        });
        match result {
            Ok(()) => std::ptr::null_mut(),
            Err(SetError::Duplicate) => c"is duplicate".as_ptr().cast_mut(),
            Err(SetError::Emerg(msg)) => {
                ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", msg);
                NGX_CONF_ERROR as *mut c_char
            }
            Err(SetError::Failed) => NGX_CONF_ERROR as *mut c_char,
        }
    }
}

pub(super) fn lossy(s: &ngx_str_t) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

/// `ai_gateway_config <file>;` loads and validates the JSON config (a relative path is
/// relative to the nginx configuration directory, like `include`).
unsafe extern "C" fn cmd_config(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            if mcf.snapshot.is_some() {
                return Err(SetError::Duplicate);
            }
            let mut name = args[0];
            // SAFETY: cf is live; nginx allocates the full name from the cycle pool.
            if ngx_conf_full_name((*cf).cycle, &mut name, 1) != NGX_OK as isize {
                return Err(SetError::Failed);
            }
            let path = lossy(&name);
            let text = std::fs::read(&path).map_err(|e| {
                SetError::Emerg(format!("ai_gateway: cannot read config \"{path}\": {e}"))
            })?;
            let dir = std::path::Path::new(&path)
                .parent()
                .unwrap_or(std::path::Path::new("/"));
            // sealed credentials open with the keys of the ai_gateway_secret_key lines above
            let snapshot = load::snapshot(&text, Source::File, 0, "", dir, &mcf.seal_keys)
                .map_err(|e| {
                    SetError::Emerg(format!("ai_gateway: invalid config \"{path}\": {e}"))
                })?;
            mcf.snapshot = Some(Arc::new(snapshot));
            mcf.config_path = Some(path);
            Ok(())
        })
    }
}

/// `ai_gateway on|off;`
unsafe extern "C" fn cmd_enable(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our LocConf.
    unsafe {
        setter(cf, conf, |lcf: &mut LocConf, args| {
            if set_flag(&mut lcf.enabled, "ai_gateway", &args[0])? {
                if let Some(mcf) = Module::main_conf_mut(&*cf) {
                    mcf.enabled_anywhere = true;
                }
            }
            Ok(())
        })
    }
}

/// Sets an `on|off` directive's value once; returns it.
fn set_flag(slot: &mut Option<bool>, directive: &str, arg: &ngx_str_t) -> Result<bool, SetError> {
    if slot.is_some() {
        return Err(SetError::Duplicate);
    }
    let on = match arg.as_bytes() {
        v if v.eq_ignore_ascii_case(b"on") => true,
        v if v.eq_ignore_ascii_case(b"off") => false,
        _ => {
            return Err(SetError::Emerg(format!(
                "invalid value \"{}\" in \"{directive}\" directive, it must be \"on\" or \"off\"",
                lossy(arg)
            )))
        }
    };
    *slot = Some(on);
    Ok(on)
}

/// `ai_gateway_stream_usage on|off;`
unsafe extern "C" fn cmd_stream_usage(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our LocConf.
    unsafe {
        setter(cf, conf, |lcf: &mut LocConf, args| {
            set_flag(&mut lcf.stream_usage, "ai_gateway_stream_usage", &args[0])?;
            Ok(())
        })
    }
}

/// `ai_gateway_route on | off;`
unsafe extern "C" fn cmd_route(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our LocConf.
    unsafe {
        setter(cf, conf, |lcf: &mut LocConf, args| {
            if set_flag(&mut lcf.route, "ai_gateway_route", &args[0])? {
                if let Some(mcf) = Module::main_conf_mut(&*cf) {
                    mcf.route_anywhere = true;
                }
            }
            Ok(())
        })
    }
}

/// `ai_gateway_mock_provider [latency=<time>] [interval=<time>];`
unsafe extern "C" fn cmd_mock_provider(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our LocConf.
    unsafe {
        setter(cf, conf, |lcf: &mut LocConf, args| {
            if lcf.mock.is_some() {
                return Err(SetError::Duplicate);
            }
            let mut settings = MockSettings::default();
            for arg in args {
                let invalid = || SetError::Emerg(format!("invalid parameter \"{}\"", lossy(arg)));
                let text = arg.as_bytes();
                let (slot, value) = if let Some(v) = text.strip_prefix(b"latency=") {
                    (&mut settings.latency_ms, v)
                } else if let Some(v) = text.strip_prefix(b"interval=") {
                    (&mut settings.interval_ms, v)
                } else {
                    return Err(invalid());
                };
                let mut s = ngx_str_t {
                    len: value.len(),
                    data: value.as_ptr().cast_mut(),
                };
                // SAFETY: ngx_parse_time only reads the string.
                let ms = ngx_parse_time(&mut s, 0);
                if ms == NGX_ERROR as isize {
                    return Err(invalid());
                }
                *slot = ms as u64;
            }
            lcf.mock = Some(settings);
            let clcf = NgxHttpCoreModule::location_conf_mut(&*cf).ok_or(SetError::Failed)?;
            clcf.handler = Some(ngx_http_ai_gateway_mock_handler);
            Ok(())
        })
    }
}

/// `ai_gateway_metrics_zone <name> <size> [max_series=<n>];`
unsafe extern "C" fn cmd_metrics_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            if mcf.metrics_zone.is_some() {
                return Err(SetError::Duplicate);
            }
            let mut name = args[0];
            if name.len == 0 {
                return Err(SetError::Emerg(format!(
                    "invalid zone name \"{}\"",
                    lossy(&name)
                )));
            }
            let mut size_arg = args[1];
            let size = ngx_parse_size(&mut size_arg);
            if size == NGX_ERROR as isize {
                return Err(SetError::Emerg(format!(
                    "invalid zone size \"{}\"",
                    lossy(&args[1])
                )));
            }
            if (size as usize) < 8 * ngx_pagesize {
                return Err(SetError::Emerg(format!(
                    "zone \"{}\" is too small",
                    lossy(&name)
                )));
            }
            let mut max_series = None;
            for arg in &args[2..] {
                let value = arg
                    .as_bytes()
                    .strip_prefix(b"max_series=")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|n| *n > 0);
                match value {
                    Some(n) => max_series = Some(n),
                    None => {
                        return Err(SetError::Emerg(format!(
                            "invalid parameter \"{}\"",
                            lossy(arg)
                        )))
                    }
                }
            }
            let zone = ngx_shared_memory_add(
                cf,
                &mut name,
                size as usize,
                std::ptr::addr_of_mut!(super::module::ngx_http_ai_gateway_module).cast(),
            );
            let zone = std::ptr::NonNull::new(zone).ok_or(SetError::Failed)?;
            if !zone.as_ref().data.is_null() {
                return Err(SetError::Emerg(format!(
                    "zone \"{}\" is already used",
                    lossy(&name)
                )));
            }
            let settings = ZoneSettings {
                name: lossy(&name),
                max_series,
            };
            let settings = pool_allocate((*cf).pool, settings).ok_or(SetError::Failed)?;
            (*zone.as_ptr()).data = settings.cast();
            (*zone.as_ptr()).init = Some(ngx_http_ai_gateway_init_metrics_zone);
            mcf.metrics_zone = Some(zone);
            Ok(())
        })
    }
}

/// `ai_gateway_metrics;` serves the exposition from this location.
unsafe extern "C" fn cmd_metrics(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our LocConf.
    unsafe {
        setter(cf, conf, |lcf: &mut LocConf, _args| {
            if lcf.metrics {
                return Err(SetError::Duplicate);
            }
            lcf.metrics = true;
            if let Some(mcf) = Module::main_conf_mut(&*cf) {
                mcf.metrics_served = true;
            }
            let clcf = NgxHttpCoreModule::location_conf_mut(&*cf).ok_or(SetError::Failed)?;
            clcf.handler = Some(ngx_http_ai_gateway_metrics_handler);
            Ok(())
        })
    }
}

/// `ai_gateway_config_status;` serves this worker's configuration status.
unsafe extern "C" fn cmd_config_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our LocConf.
    unsafe {
        setter(cf, conf, |_lcf: &mut LocConf, _args| {
            let clcf = NgxHttpCoreModule::location_conf_mut(&*cf).ok_or(SetError::Failed)?;
            if clcf.handler.is_some() {
                return Err(SetError::Duplicate);
            }
            clcf.handler = Some(ngx_http_ai_gateway_config_status_handler);
            Ok(())
        })
    }
}

/// `ai_gateway_token_service;`
unsafe extern "C" fn cmd_token_service(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive; the core location conf is the current one.
    unsafe {
        setter(cf, _conf, |lcf: &mut LocConf, _args| {
            let clcf = NgxHttpCoreModule::location_conf_mut(&*cf).ok_or(SetError::Failed)?;
            if lcf.token_service {
                return Err(SetError::Duplicate);
            }
            lcf.token_service = true;
            clcf.handler = Some(ngx_http_ai_gateway_token_service_handler);
            if let Some(mcf) = Module::main_conf_mut(&*cf) {
                mcf.token_service = true;
            }
            Ok(())
        })
    }
}

/// A zone name and size as `*_zone` directives take them; `min_pages` pages at least.
///
/// # Safety
/// `args` are the directive's arguments.
unsafe fn zone_name_size(
    args: &[ngx_str_t],
    min_pages: usize,
) -> Result<(ngx_str_t, usize), SetError> {
    let name = args[0];
    if name.len == 0 {
        return Err(SetError::Emerg(format!(
            "invalid zone name \"{}\"",
            lossy(&name)
        )));
    }
    let mut size_arg = args[1];
    // SAFETY: ngx_parse_size reads the string.
    let size = unsafe { ngx_parse_size(&mut size_arg) };
    if size == NGX_ERROR as isize {
        return Err(SetError::Emerg(format!(
            "invalid zone size \"{}\"",
            lossy(&args[1])
        )));
    }
    // SAFETY: ngx_pagesize is set before configuration is parsed.
    if (size as usize) < min_pages * unsafe { ngx_pagesize } {
        return Err(SetError::Emerg(format!(
            "zone \"{}\" is too small",
            lossy(&name)
        )));
    }
    Ok((name, size as usize))
}

/// `ai_gateway_limit_zone <name> <size>;`
unsafe extern "C" fn cmd_limit_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            if mcf.limit_zone.is_some() {
                return Err(SetError::Duplicate);
            }
            let (mut name, size) = zone_name_size(args, 8)?;
            let zone = ngx_shared_memory_add(
                cf,
                &mut name,
                size,
                std::ptr::addr_of_mut!(super::module::ngx_http_ai_gateway_module).cast(),
            );
            let zone = std::ptr::NonNull::new(zone).ok_or(SetError::Failed)?;
            if !zone.as_ref().data.is_null() {
                return Err(SetError::Emerg(format!(
                    "zone \"{}\" is already used",
                    lossy(&name)
                )));
            }
            let settings = LimitZoneSettings { name: lossy(&name) };
            let settings = pool_allocate((*cf).pool, settings).ok_or(SetError::Failed)?;
            (*zone.as_ptr()).data = settings.cast();
            (*zone.as_ptr()).init = Some(ngx_http_ai_gateway_init_limit_zone);
            mcf.limit_zone = Some(zone);
            Ok(())
        })
    }
}

/// `ai_gateway_policy_log_level info | notice | warn | error;`
unsafe extern "C" fn cmd_policy_log_level(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our LocConf.
    unsafe {
        setter(cf, conf, |lcf: &mut LocConf, args| {
            if lcf.policy_log_level.is_some() {
                return Err(SetError::Duplicate);
            }
            let level = match args[0].as_bytes() {
                b"info" => ngx::ffi::NGX_LOG_INFO,
                b"notice" => ngx::ffi::NGX_LOG_NOTICE,
                b"warn" => ngx::ffi::NGX_LOG_WARN,
                b"error" => ngx::ffi::NGX_LOG_ERR,
                _ => {
                    return Err(SetError::Emerg(format!(
                        "invalid value \"{}\" in \"ai_gateway_policy_log_level\" directive, it must be \"info\", \"notice\", \"warn\" or \"error\"",
                        lossy(&args[0])
                    )))
                }
            };
            lcf.policy_log_level = Some(level as ngx_uint_t);
            Ok(())
        })
    }
}
