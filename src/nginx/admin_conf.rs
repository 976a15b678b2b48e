//! The config center's directives and its start in each worker:
//!
//! ```nginx
//! ai_gateway_mysql mysql://user@host:3306/db [pool=<n>] [timeout=<time>] [password_file=<path>];  # http
//! ai_gateway_admin_bootstrap [user=<name>] file=<path> | env=<NAME>;                              # http
//! ai_gateway_admin;                                                                               # location
//! ```
//!
//! Each worker gets its own `runtime::admin::Admin` (a MySQL pool on the worker's runtime);
//! worker 0 also migrates the schema at start, creates the bootstrap admin when there is no
//! user, and runs the reconciler that republishes the configuration when Redis is behind.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_log_t, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

use super::admin::ngx_http_ai_gateway_admin_handler;
use super::bridge;
use super::conf::{LocConf, MainConf};
use super::config_source::{full_path, param, time_ms};
use super::directives::{lossy, setter, SetError};
use super::module::Module;
use crate::runtime::admin::db::MysqlSettings;
use crate::runtime::admin::{accounts, sync, write, Admin, AdminSettings, Bootstrap};

/// This worker's config center (set in `init_process`).
static ADMIN: Mutex<Option<Arc<Admin>>> = Mutex::new(None);

pub fn admin() -> Option<Arc<Admin>> {
    ADMIN.lock().ok().and_then(|a| a.clone())
}

/// `ai_gateway_mysql <url> [pool=<n>] [timeout=<time>] [password_file=<path>];`
pub unsafe extern "C" fn cmd_mysql(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            if mcf.mysql.is_some() {
                return Err(SetError::Duplicate);
            }
            let url = lossy(&args[0]);
            let bad = |m: &str| SetError::Emerg(format!("ai_gateway_mysql: {m}"));
            if !url.starts_with("mysql://") {
                return Err(bad("the URL must start with mysql://"));
            }
            // the URL may hold a password: the message never repeats it
            let opts = mysql_async::Opts::from_url(&url)
                .map_err(|e| bad(&format!("invalid URL ({})", error_kind(&e))))?;
            if opts.db_name().is_none_or_empty() {
                return Err(bad(
                    "the URL must name a database (mysql://user@host:3306/<database>)",
                ));
            }
            let mut s = MysqlSettings {
                opts,
                pool: 4,
                timeout: Duration::from_secs(3),
            };
            for a in &args[1..] {
                let a = lossy(a);
                if let Some(v) = param(&a, "pool") {
                    s.pool = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or_else(|| {
                            bad(&format!(
                                "invalid pool \"{v}\" (1 to 64 connections per worker)"
                            ))
                        })?;
                } else if let Some(v) = param(&a, "timeout") {
                    s.timeout = Duration::from_millis(
                        time_ms(v).ok_or_else(|| bad(&format!("invalid timeout \"{v}\"")))?,
                    );
                } else if let Some(v) = param(&a, "password_file") {
                    let path = full_path(cf, v, true)?;
                    let raw = std::fs::read_to_string(&path)
                        .map_err(|e| bad(&format!("cannot read \"{path}\": {e}")))?;
                    let pw = raw.strip_suffix('\n').unwrap_or(&raw);
                    let pw = pw.strip_suffix('\r').unwrap_or(pw);
                    if pw.is_empty() || pw.contains(['\n', '\r']) {
                        return Err(bad(&format!(
                            "\"{path}\" must hold the password on one line"
                        )));
                    }
                    s.opts = mysql_async::OptsBuilder::from_opts(s.opts.clone())
                        .pass(Some(pw))
                        .into();
                } else {
                    return Err(bad(&format!("invalid parameter \"{a}\"")));
                }
            }
            mcf.mysql = Some(s);
            Ok(())
        })
    }
}

trait EmptyStr {
    fn is_none_or_empty(&self) -> bool;
}

impl EmptyStr for Option<&str> {
    fn is_none_or_empty(&self) -> bool {
        self.map_or(true, str::is_empty)
    }
}

/// What kind of URL error, without the URL (it may hold a password).
fn error_kind(e: &mysql_async::UrlError) -> &'static str {
    match e {
        mysql_async::UrlError::UnsupportedScheme { .. } => "unsupported scheme",
        mysql_async::UrlError::Parse(_) => "cannot parse it",
        mysql_async::UrlError::UnknownParameter { .. } => "unknown parameter in the query string",
        mysql_async::UrlError::InvalidParamValue { .. } => {
            "invalid parameter value in the query string"
        }
        _ => "invalid",
    }
}

/// `ai_gateway_admin_bootstrap [user=<name>] file=<path> | env=<NAME>;`
pub unsafe extern "C" fn cmd_admin_bootstrap(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            if mcf.bootstrap.is_some() {
                return Err(SetError::Duplicate);
            }
            let bad = |m: String| SetError::Emerg(format!("ai_gateway_admin_bootstrap: {m}"));
            let mut user = "admin".to_string();
            let mut password = None;
            for a in args {
                let a = lossy(a);
                if let Some(v) = param(&a, "user") {
                    crate::core::admin::auth::check_username(v)
                        .map_err(|_| bad(format!("invalid user \"{v}\"")))?;
                    user = v.to_string();
                } else if let Some(v) = param(&a, "file") {
                    let path = full_path(cf, v, true)?;
                    let raw = std::fs::read_to_string(&path)
                        .map_err(|e| bad(format!("cannot read \"{path}\": {e}")))?;
                    let pw = raw.strip_suffix('\n').unwrap_or(&raw);
                    password = Some((
                        pw.strip_suffix('\r').unwrap_or(pw).to_string(),
                        format!("\"{path}\""),
                    ));
                } else if let Some(v) = param(&a, "env") {
                    let pw = std::env::var(v)
                        .map_err(|_| bad(format!("environment variable \"{v}\" is not set")))?;
                    password = Some((pw, format!("environment variable \"{v}\"")));
                } else {
                    return Err(bad(format!("invalid parameter \"{a}\"")));
                }
            }
            let (password, source) =
                password.ok_or_else(|| bad("needs file=<path> or env=<NAME>".into()))?;
            crate::core::admin::auth::check_password("password", &password).map_err(|_| {
                bad(format!(
                    "the password in {source} must be {} to {} characters",
                    crate::core::admin::auth::PASSWORD_MIN,
                    crate::core::admin::auth::PASSWORD_MAX
                ))
            })?;
            mcf.bootstrap = Some(Bootstrap { user, password });
            Ok(())
        })
    }
}

/// `ai_gateway_admin;` serves the admin API from this location.
pub unsafe extern "C" fn cmd_admin(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our LocConf.
    unsafe {
        setter(cf, conf, |lcf: &mut LocConf, _args| {
            if lcf.admin {
                return Err(SetError::Duplicate);
            }
            lcf.admin = true;
            if let Some(mcf) = Module::main_conf_mut(&*cf) {
                mcf.admin_served = true;
            }
            let clcf = NgxHttpCoreModule::location_conf_mut(&*cf).ok_or(SetError::Failed)?;
            clcf.handler = Some(ngx_http_ai_gateway_admin_handler);
            Ok(())
        })
    }
}

/// The admin API needs MySQL (checked once the http block is parsed).
pub fn init_main_conf(mcf: &MainConf) -> Result<(), String> {
    if mcf.admin_served && mcf.mysql.is_none() {
        return Err("\"ai_gateway_admin\" needs \"ai_gateway_mysql\" in the http block".into());
    }
    Ok(())
}

fn log_at(log: usize, level: usize, message: &str) {
    let log = log as *mut ngx_log_t;
    // the cycle's log, on the nginx thread (a bridge job)
    ngx::ngx_log_error!(
        level as ngx::ffi::ngx_uint_t,
        log,
        "ai_gateway: {}",
        message
    );
}

/// Logs from the runtime: posted to the nginx thread.
fn post_log(log: usize, level: usize, message: String) {
    bridge::post(Box::new(move || log_at(log, level, &message)));
}

/// Starts this worker's config center (`init_process`, after the bridge).
///
/// # Safety
/// `cycle` must be the worker's cycle, on the nginx thread.
pub unsafe fn init_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: cycle is live (caller); its main conf lives as long as the worker.
    unsafe {
        let Some(mcf) = Module::main_conf(&*cycle) else {
            return;
        };
        let (true, Some(mysql)) = (mcf.admin_served, mcf.mysql.clone()) else {
            return;
        };
        if !bridge::running() && !bridge::start(cycle) {
            return;
        }
        let worker = ngx::ffi::ngx_worker;
        let log = (*cycle).log as usize;
        let settings = AdminSettings {
            mysql,
            redis: mcf.redis.clone(),
            seal_keys: mcf.seal_keys.clone(),
            bootstrap: mcf.bootstrap.clone(),
            config_dir: mcf
                .config_path
                .as_deref()
                .and_then(|p| std::path::Path::new(p).parent())
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            worker,
        };
        let admin = Arc::new(Admin::new(settings));
        if let Ok(mut a) = ADMIN.lock() {
            *a = Some(admin.clone());
        }
        if worker == 0 {
            bridge::spawn(background(admin, log, mcf.config_path.clone()));
        }
    }
}

/// Stops it (`exit_process`).
pub fn exit_process() {
    if let Ok(mut a) = ADMIN.lock() {
        *a = None;
    }
}

/// Worker 0's work: the schema (retried until MySQL answers), the bootstrap admin, the
/// first revision from the configuration file when there is none, then the reconciler
/// every two seconds.
async fn background(admin: Arc<Admin>, log: usize, config_file: Option<String>) {
    let mut delay = Duration::from_millis(200);
    let mut warned = false;
    loop {
        match admin.ensure_ready().await {
            Ok(()) => break,
            Err(e) => {
                if !warned {
                    post_log(log, NGX_LOG_WARN as usize, format!("config center: MySQL {} not ready ({}); the admin API answers 503 until it is", admin.db.address, e.message));
                    warned = true;
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    post_log(
        log,
        NGX_LOG_NOTICE as usize,
        format!("config center: MySQL {} schema ready", admin.db.address),
    );
    if let Some(b) = admin.settings.bootstrap.clone() {
        // Nodes started together race here (their inserts can deadlock each other in
        // MySQL): a MySQL failure is retried, told once as a warning; a user name or a
        // password the API would refuse is an error that no retry clears.
        let mut warned = false;
        loop {
            match accounts::bootstrap(&admin, &b).await {
                Ok(true) => {
                    post_log(
                        log,
                        NGX_LOG_NOTICE as usize,
                        format!("config center: created the first admin user \"{}\"", b.user),
                    );
                    break;
                }
                Ok(false) => break,
                Err(e) if e.status == 503 => {
                    if !warned {
                        post_log(
                            log,
                            NGX_LOG_WARN as usize,
                            format!(
                                "config center: cannot create the first admin yet ({}); retrying",
                                e.message
                            ),
                        );
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    post_log(
                        log,
                        NGX_LOG_ERR as usize,
                        format!(
                            "config center: cannot create the first admin: {}",
                            e.message
                        ),
                    );
                    break;
                }
            }
        }
    }
    if let Some(path) = config_file {
        match tokio::task::spawn_blocking(move || std::fs::read(&path)).await {
            Ok(Ok(bytes)) => match write::seed(&admin, &bytes).await {
                Ok(Some(v)) => post_log(log, NGX_LOG_NOTICE as usize, format!("config center: its first revision ({v}) is this node's ai_gateway_config file")),
                Ok(None) => {}
                Err(e) => post_log(log, NGX_LOG_ERR as usize, format!("config center: cannot take the ai_gateway_config file as its first revision: {}", e.message)),
            },
            _ => post_log(log, NGX_LOG_WARN as usize, "config center: cannot read the ai_gateway_config file for its first revision".into()),
        }
    }
    let mut failing = false;
    loop {
        match sync::reconcile(&admin).await {
            Ok(republished) => {
                failing = false;
                if let Some(v) = republished {
                    post_log(
                        log,
                        NGX_LOG_NOTICE as usize,
                        format!("config center: Redis was behind MySQL: republished version {v}"),
                    );
                }
            }
            Err(e) => {
                if !failing {
                    post_log(
                        log,
                        NGX_LOG_WARN as usize,
                        format!("config center: cannot check Redis against MySQL ({e}); retrying"),
                    );
                    failing = true;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
