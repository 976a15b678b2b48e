//! The directive table and its setters.
//!
//! ```nginx
//! ai_gateway_config <file>;                 # http
//! ai_gateway on | off;                      # http, server, location (default off)
//! ai_gateway_mock_provider [latency=<time>] [interval=<time>];   # location
//! ```

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use ngx::core::NGX_CONF_ERROR;
use ngx::ffi::{
    ngx_command_t, ngx_conf_full_name, ngx_conf_t, ngx_parse_time, ngx_str_t, ngx_uint_t,
    NGX_CONF_ANY, NGX_CONF_FLAG, NGX_CONF_TAKE1, NGX_ERROR, NGX_HTTP_LOC_CONF,
    NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF,
    NGX_LOG_EMERG, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use super::conf::{LocConf, MainConf, MockSettings};
use super::guard::guard;
use super::mock::ngx_http_ai_gateway_mock_handler;
use super::module::Module;
use crate::core::config::GatewayConfig;

pub static mut COMMANDS: [ngx_command_t; 4] = [
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
        name: ngx_string!("ai_gateway_mock_provider"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_ANY) as ngx_uint_t,
        set: Some(cmd_mock_provider),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

const CONF_OK: *mut c_char = std::ptr::null_mut();

fn conf_error() -> *mut c_char {
    NGX_CONF_ERROR as *mut c_char
}

/// The directive's arguments after its name.
///
/// # Safety
/// `cf` must be the configuration being parsed, inside a directive handler.
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: cf->args is an array of ngx_str_t whose first element is the directive name.
    unsafe { &(*(*cf).args).as_slice::<ngx_str_t>()[1..] }
}

fn lossy(s: &ngx_str_t) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

/// `ai_gateway_config <file>;` loads and validates the JSON config (a relative path is
/// relative to the nginx configuration directory, like `include`).
unsafe extern "C" fn cmd_config(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the conf being parsed and our MainConf.
    let log = unsafe { (*cf).log };
    guard(log, conf_error(), || unsafe {
        let mcf = &mut *(conf as *mut MainConf);
        if mcf.config.is_some() {
            return c"is duplicate".as_ptr().cast_mut();
        }
        let mut name = args(cf)[0];
        if ngx_conf_full_name((*cf).cycle, &mut name, 1) != NGX_OK as isize {
            return conf_error();
        }
        let path = lossy(&name);
        let loaded = std::fs::read(&path)
            .map_err(|e| format!("cannot read config \"{path}\": {e}"))
            .and_then(|text| {
                GatewayConfig::from_json(&text)
                    .map_err(|e| format!("invalid config \"{path}\": {e}"))
            });
        match loaded {
            Ok(cfg) => {
                mcf.config = Some(Arc::new(cfg));
                mcf.config_path = Some(path);
                CONF_OK
            }
            Err(msg) => {
                ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "ai_gateway: {}", msg);
                conf_error()
            }
        }
    })
}

/// `ai_gateway on|off;`
unsafe extern "C" fn cmd_enable(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the conf being parsed and our LocConf.
    let log = unsafe { (*cf).log };
    guard(log, conf_error(), || unsafe {
        let lcf = &mut *(conf as *mut LocConf);
        if lcf.enabled.is_some() {
            return c"is duplicate".as_ptr().cast_mut();
        }
        let value = args(cf)[0];
        let on = match value.as_bytes() {
            v if v.eq_ignore_ascii_case(b"on") => true,
            v if v.eq_ignore_ascii_case(b"off") => false,
            _ => {
                ngx::ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "invalid value \"{}\" in \"ai_gateway\" directive, it must be \"on\" or \"off\"",
                    lossy(&value)
                );
                return conf_error();
            }
        };
        lcf.enabled = Some(on);
        if on {
            if let Some(mcf) = Module::main_conf_mut(&*cf) {
                mcf.enabled_anywhere = true;
            }
        }
        CONF_OK
    })
}

/// `ai_gateway_mock_provider [latency=<time>] [interval=<time>];`
unsafe extern "C" fn cmd_mock_provider(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the conf being parsed and our LocConf.
    let log = unsafe { (*cf).log };
    guard(log, conf_error(), || unsafe {
        let lcf = &mut *(conf as *mut LocConf);
        if lcf.mock.is_some() {
            return c"is duplicate".as_ptr().cast_mut();
        }
        let mut settings = MockSettings::default();
        for arg in args(cf) {
            let text = arg.as_bytes();
            let (slot, value) = if let Some(v) = text.strip_prefix(b"latency=") {
                (&mut settings.latency_ms, v)
            } else if let Some(v) = text.strip_prefix(b"interval=") {
                (&mut settings.interval_ms, v)
            } else {
                ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid parameter \"{}\"", lossy(arg));
                return conf_error();
            };
            let mut s = ngx_str_t {
                len: value.len(),
                data: value.as_ptr().cast_mut(),
            };
            let ms = ngx_parse_time(&mut s, 0);
            if ms == NGX_ERROR as isize {
                ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid parameter \"{}\"", lossy(arg));
                return conf_error();
            }
            *slot = ms as u64;
        }
        lcf.mock = Some(settings);
        match NgxHttpCoreModule::location_conf_mut(&*cf) {
            Some(clcf) => {
                clcf.handler = Some(ngx_http_ai_gateway_mock_handler);
                CONF_OK
            }
            None => conf_error(),
        }
    })
}
