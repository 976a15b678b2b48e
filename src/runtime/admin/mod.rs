//! The config center on each worker's runtime: an API request (carried in by the nginx
//! content handler of `ai_gateway_admin`, as plain data) is served here, against MySQL and
//! Redis, and its answer carried back. Nothing here touches nginx.
//!
//! - [`db`], [`schema`]: MySQL (pool, timeouts, migrations, the state of record's tables);
//! - [`publish`]: Redis (publishing revisions, nodes' heartbeats, propagation);
//! - [`auth`], [`accounts`], [`password`]: who a request is, sessions, login lockout; users
//!   and API tokens; argon2id off the runtime thread;
//! - [`config_api`] (reads, dispatch), [`write`], [`history`] (export, revisions, diff,
//!   audit log), [`sync`] (nodes, the reconciler): the configuration;
//! - [`usage_api`]: usage and access logs (read through `runtime::access_log::store`).

pub mod accounts;
pub mod auth;
pub mod config_api;
pub mod db;
pub mod history;
#[cfg(test)]
mod openapi_check;
pub mod password;
pub mod publish;
pub mod schema;
pub mod sync;
pub mod usage_api;
pub mod write;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::core::admin::auth::{authorize, csrf_holds, Via, CSRF_HEADER};
use crate::core::admin::endpoint::{self, allow_header, Endpoint, Method};
use crate::core::admin::error::ApiError;
use crate::core::admin::state::State;
use crate::core::seal::SealKey;
use crate::runtime::redis_source::{unix_ms, RedisSettings};
use db::{Db, MysqlSettings};
use publish::Publisher;

/// Unix milliseconds now.
pub fn now() -> i64 {
    unix_ms() as i64
}

/// The OpenAPI document of the API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The first admin, created when there is no user at all.
#[derive(Clone)]
pub struct Bootstrap {
    pub user: String,
    /// Never logged.
    pub password: String,
}

/// What `ai_gateway_mysql`, `ai_gateway_redis`, `ai_gateway_secret_key` and
/// `ai_gateway_admin_bootstrap` say.
#[derive(Clone)]
pub struct AdminSettings {
    pub mysql: MysqlSettings,
    pub redis: Option<RedisSettings>,
    /// The first seals provider credentials; all of them open (validation).
    pub seal_keys: Vec<SealKey>,
    pub bootstrap: Option<Bootstrap>,
    /// Where relative credential files of a document are read from when it is validated.
    pub config_dir: PathBuf,
    pub worker: usize,
}

/// A request as the nginx layer hands it over.
#[derive(Debug, Default, Clone)]
pub struct ApiRequest {
    pub method: String,
    /// The decoded path (`$uri`).
    pub path: String,
    /// The raw query string (`$args`).
    pub query: String,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub cookie: Option<String>,
    pub if_match: Option<String>,
    pub csrf: Option<String>,
    pub accept: Option<String>,
    pub client_ip: String,
    /// Served over TLS (the session cookie gets `Secure`).
    pub secure: bool,
    pub body: Vec<u8>,
}

/// An answer for the nginx layer to send.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn json(status: u16, v: &Value) -> ApiResponse {
        let mut body = serde_json::to_vec(v).unwrap_or_default();
        body.push(b'\n');
        ApiResponse {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    /// A CSV export, offered as a file to save.
    pub fn csv(text: String, name: &str) -> ApiResponse {
        ApiResponse {
            status: 200,
            content_type: "text/csv; charset=utf-8",
            headers: vec![(
                "Content-Disposition".into(),
                format!("attachment; filename=\"{name}.csv\""),
            )],
            body: text.into_bytes(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> ApiResponse {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn error(e: &ApiError) -> ApiResponse {
        let mut r = ApiResponse::json(e.status, &e.to_json());
        if let Some(s) = e.retry_after_s {
            r = r.header("Retry-After", s.to_string());
        }
        r
    }
}

/// The config center of one worker.
pub struct Admin {
    pub settings: AdminSettings,
    pub db: Db,
    pub publisher: Option<Publisher>,
    /// The schema is migrated.
    ready: AtomicBool,
    /// The state of record at (epoch, version): reads at the same version need no load.
    cache: Mutex<Option<(String, u64, Arc<State>)>>,
    /// One write at a time per worker: the others wait here, in memory, not holding a
    /// pooled connection while the config head's lock is taken.
    pub write_gate: tokio::sync::Semaphore,
}

impl Admin {
    pub fn new(settings: AdminSettings) -> Admin {
        Admin {
            db: Db::new(&settings.mysql),
            publisher: settings.redis.clone().map(Publisher::new),
            settings,
            ready: AtomicBool::new(false),
            cache: Mutex::new(None),
            write_gate: tokio::sync::Semaphore::new(1),
        }
    }

    /// The schema migrated (done once per worker; again after a failure).
    pub async fn ensure_ready(&self) -> Result<(), ApiError> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let epoch = password::random_secret(12)?;
        self.db.migrate(&epoch, unix_ms() as i64).await?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    pub fn cached(&self, epoch: &str, version: u64) -> Option<Arc<State>> {
        let c = self.cache.lock().ok()?;
        c.as_ref()
            .filter(|(e, v, _)| e == epoch && *v == version)
            .map(|(_, _, s)| s.clone())
    }

    pub fn remember(&self, epoch: &str, version: u64, state: Arc<State>) {
        if let Ok(mut c) = self.cache.lock() {
            *c = Some((epoch.to_string(), version, state));
        }
    }

    pub fn seal(&self, plaintext: &str) -> Result<String, String> {
        match self.settings.seal_keys.first() {
            Some(k) => k.seal_random(plaintext),
            None => Err("the config center has no \"ai_gateway_secret_key\" to seal provider credentials with: give the credential as {\"env\": ...} or {\"file\": ...}, or configure a key".into()),
        }
    }
}

/// Serves one request. A panic in it is a 500 JSON (the request is never left waiting).
pub async fn serve(admin: Arc<Admin>, req: ApiRequest) -> ApiResponse {
    use futures_util::FutureExt;
    let served = std::panic::AssertUnwindSafe(handle(&admin, &req))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(ApiError::internal("internal error (panic caught)")));
    match served {
        Ok(r) => r,
        Err(e) => {
            let mut r = ApiResponse::error(&e);
            if e.status == 405 {
                if let Some(allow) = allow_header(&req.path) {
                    r = r.header("Allow", allow);
                }
            }
            r
        }
    }
}

/// The request body as JSON: `{}` when empty (calls without a body), else it must say
/// `application/json` and be one JSON value with no key twice in an object.
pub fn json_body(req: &ApiRequest) -> Result<Value, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let ct = req.content_type.as_deref().unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "the body must be JSON, sent with Content-Type: application/json",
        ));
    }
    crate::core::strict_json::parse(&req.body).map_err(|e| {
        ApiError::new(
            400,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
        .with_detail(e.path.clone(), e.message.clone())
    })
}

async fn handle(admin: &Admin, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let method = Method::parse(&req.method);
    let ep = endpoint::route(method, &req.path).map_err(|mut e| {
        // the router knows a method it does not take only as "OTHER": name the one sent
        if e.status == 405 && method == Method::Other {
            e.message = e.message.replacen("OTHER", &req.method, 1);
        }
        e
    })?;
    if ep == Endpoint::OpenApi {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap_or(Value::Null);
        return Ok(ApiResponse::json(200, &doc));
    }
    admin.ensure_ready().await?;
    let body = if method.is_safe() || method == Method::Delete {
        Value::Null
    } else {
        json_body(req)?
    };
    if ep == Endpoint::Login {
        return auth::login(admin, req, &body).await;
    }
    let session = auth::principal(admin, req).await?;
    let who = session.as_ref().map(|s| &s.principal);
    authorize(ep.need(method), who)?;
    if let Some(s) = &session {
        if s.principal.via == Via::Session
            && !method.is_safe()
            && !csrf_holds(&s.csrf, req.csrf.as_deref())
        {
            return Err(ApiError::new(
                403,
                "csrf_failed",
                format!("a call with a session cookie must send the session's CSRF token in {CSRF_HEADER} (from the login answer or GET /api/v1/auth/me)"),
            ));
        }
    }
    let Some(session) = session else {
        return Err(ApiError::internal("no principal"));
    };
    match &ep {
        Endpoint::Logout | Endpoint::Me | Endpoint::Password => {
            auth::own(admin, req, &ep, &session, &body).await
        }
        Endpoint::Users | Endpoint::User(_) => {
            accounts::users(admin, req, method, &ep, &session.principal, &body).await
        }
        Endpoint::Tokens | Endpoint::Token(_) => {
            accounts::tokens(admin, req, method, &ep, &session.principal, &body).await
        }
        _ => config_api::serve(admin, req, method, &ep, &session.principal, body).await,
    }
}

/// A duration of `?wait_applied=`, at most a minute.
pub fn wait_arg(q: &crate::core::admin::query::Query) -> Result<Option<Duration>, ApiError> {
    match q.get("wait_applied") {
        None => Ok(None),
        Some(v) => match crate::core::admin::clock::duration_arg(v) {
            Some(ms) if ms <= 60_000 => Ok(Some(Duration::from_millis(ms))),
            _ => Err(ApiError::invalid(
                "?wait_applied",
                "must be a duration of at most 60s (\"500ms\", \"5s\", or milliseconds)",
            )),
        },
    }
}
