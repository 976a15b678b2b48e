//! The module definition: statics nginx looks up, configuration hooks, handler registration.

use std::ffi::{c_char, c_void};
use std::ptr::{addr_of, addr_of_mut};

use ngx::core::NGX_CONF_ERROR;
use ngx::ffi::{
    ngx_array_push, ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_phases_NGX_HTTP_LOG_PHASE, ngx_int_t,
    ngx_module_t, NGX_ERROR, NGX_HTTP_MODULE, NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_OK,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

use super::access::ngx_http_ai_gateway_access_handler;
use super::conf::{LocConf, MainConf};
use super::directives::COMMANDS;
use super::guard::guard;
use super::log_phase::ngx_http_ai_gateway_log_handler;
use super::{
    admin_conf, cluster_conf, config_source, filter, peer_guard, usage_log, usage_log_conf, vars,
};

pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the static is only written by nginx while loading modules (ctx_index).
        unsafe { &*addr_of!(ngx_http_ai_gateway_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes the configuration being parsed.
        let log = unsafe { (*cf).log };
        guard(log, NGX_ERROR as ngx_int_t, || unsafe {
            vars::register(cf)
        })
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes the configuration being parsed; registration is the standard
        // phase-array push and filter chaining.
        let log = unsafe { (*cf).log };
        guard(log, NGX_ERROR as ngx_int_t, || unsafe {
            let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(&*cf) else {
                return NGX_ERROR as ngx_int_t;
            };
            let h = ngx_array_push(
                &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize].handlers,
            ) as *mut ngx_http_handler_pt;
            if h.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            *h = Some(ngx_http_ai_gateway_access_handler);
            // first in the log phase: the access log (registered before us) reads the usage
            // this handler settles
            let handlers = &mut cmcf.phases[ngx_http_phases_NGX_HTTP_LOG_PHASE as usize].handlers;
            let h = ngx_array_push(handlers) as *mut ngx_http_handler_pt;
            if h.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            let first = handlers.elts as *mut ngx_http_handler_pt;
            let n = handlers.nelts;
            std::ptr::copy(first, first.add(1), n - 1);
            *first = Some(ngx_http_ai_gateway_log_handler);
            filter::install();
            if !peer_guard::install(cf) {
                return NGX_ERROR as ngx_int_t;
            }
            NGX_OK as ngx_int_t
        })
    }

    unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
        // SAFETY: nginx passes our MainConf after the whole http block was parsed.
        let log = unsafe { (*cf).log };
        guard(log, NGX_CONF_ERROR as *mut c_char, || unsafe {
            let mcf = &mut *(conf as *mut MainConf);
            if let Err(e) = config_source::init_main_conf(cf, mcf)
                .and_then(|()| admin_conf::init_main_conf(mcf))
                .and_then(|()| cluster_conf::init_main_conf(mcf))
                .and_then(|()| usage_log_conf::init_main_conf(mcf))
            {
                ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
                return NGX_CONF_ERROR as *mut c_char;
            }
            let config = mcf.snapshot.as_ref().map(|s| &s.config);
            if mcf.enabled_anywhere && config.is_none() {
                ngx::ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "\"ai_gateway\" is on but no \"ai_gateway_config\" is set in the http block"
                );
                return NGX_CONF_ERROR as *mut c_char;
            }
            if let Some(snapshot) = &mcf.snapshot {
                if let Err(e) = snapshot.fits(mcf.limit_zone.is_some(), mcf.route_anywhere) {
                    ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
                    return NGX_CONF_ERROR as *mut c_char;
                }
            }
            if mcf.metrics_served && mcf.metrics_zone.is_none() {
                ngx::ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "\"ai_gateway_metrics\" is used but no \"ai_gateway_metrics_zone\" is set in the http block"
                );
                return NGX_CONF_ERROR as *mut c_char;
            }
            std::ptr::null_mut()
        })
    }
}

/// Runs in the master for every configuration that loads (start, reload, `nginx -t`): says
/// which config the gateway serves, so an operator sees a reload take effect.
unsafe extern "C" fn ngx_http_ai_gateway_init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the new cycle; its http configuration is complete.
    let log = unsafe { (*cycle).log };
    guard(log, NGX_OK as ngx_int_t, || unsafe {
        let Some(mcf) = Module::main_conf(&*cycle) else {
            return NGX_OK as ngx_int_t;
        };
        if mcf.enabled_anywhere || mcf.token_service {
            // built in the master, before the workers fork: they share the tables and no
            // request pays for building them; a reload finds them built
            let started = std::time::Instant::now();
            if crate::core::tokens::warm_up() {
                ngx::ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "ai_gateway: token encoders o200k_base and cl100k_base built in {} ms",
                    started.elapsed().as_millis()
                );
            }
        }
        if let (Some(snapshot), Some(path)) = (&mcf.snapshot, &mcf.config_path) {
            let cfg = &snapshot.config;
            // key ids only: which keys this node has, never the keys
            let seal_keys = if mcf.seal_keys.is_empty() {
                String::new()
            } else {
                let ids: Vec<&str> = mcf.seal_keys.iter().map(|k| k.id()).collect();
                format!(", secret keys {}", ids.join(" "))
            };
            ngx::ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "ai_gateway: {} {} (built for {}), config \"{}\" (version {}): namespaces {}, keys {}, matchers {}, policies {}{}",
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
                env!("AI_GATEWAY_NGINX_VERSION"),
                path,
                cfg.version.as_deref().unwrap_or("-"),
                cfg.namespaces.len(),
                cfg.key_count(),
                cfg.matchers().len(),
                cfg.policy_count(),
                seal_keys
            );
        }
        NGX_OK as ngx_int_t
    })
}

/// Runs in each worker after the fork: the async bridge and the configuration source start
/// here (never in the master: a fork does not carry threads).
unsafe extern "C" fn ngx_http_ai_gateway_init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the worker's cycle.
    let log = unsafe { (*cycle).log };
    guard(log, NGX_OK as ngx_int_t, || unsafe {
        config_source::init_process(cycle);
        admin_conf::init_process(cycle);
        cluster_conf::init_process(cycle);
        usage_log::init_process(cycle);
        NGX_OK as ngx_int_t
    })
}

unsafe extern "C" fn ngx_http_ai_gateway_exit_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: nginx passes the worker's cycle, on its thread.
    let log = unsafe { (*cycle).log };
    guard(log, (), || unsafe {
        usage_log::exit_process();
        admin_conf::exit_process();
        cluster_conf::exit_process();
        config_source::exit_process()
    });
}

// SAFETY: the types match what create_main_conf/create_loc_conf allocate.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

static NGX_HTTP_AI_GATEWAY_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: Some(Module::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(Module::merge_loc_conf),
};

ngx::ngx_modules!(ngx_http_ai_gateway_module);

#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_ai_gateway_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_AI_GATEWAY_MODULE_CTX) as *mut c_void,
    // SAFETY: taking the address of the static table; nginx reads it while loading.
    commands: unsafe { addr_of_mut!(COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as usize,
    init_module: Some(ngx_http_ai_gateway_init_module),
    init_process: Some(ngx_http_ai_gateway_init_process),
    exit_process: Some(ngx_http_ai_gateway_exit_process),
    ..ngx_module_t::default()
};
