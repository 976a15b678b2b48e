//! Routing: which provider target serves a request, in which order targets are tried, the
//! upstream URI and the credential headers of each provider type.
//!
//! ```json
//! "targets": [
//!   {"name": "openai", "provider": "openai", "base_url": "https://api.openai.com/v1",
//!    "credential": {"env": "OPENAI_API_KEY"}},
//!   {"name": "azure-east", "provider": "azure",
//!    "base_url": "https://east.openai.azure.com/openai/deployments/gpt-4o",
//!    "api_version": "2024-10-21", "credential": {"file": "/etc/nginx/keys/azure"}}
//! ],
//! "routes": [
//!   {"name": "gpt", "path_prefix": "/v1/", "models": ["gpt-4o*"],
//!    "targets": [{"target": "openai", "weight": 3}, {"target": "azure-east", "weight": 1}]}
//! ]
//! ```
//!
//! The upstream path is the target's base path followed by the request path after the
//! route's `path_prefix` (or after `rewrite.from`, replaced by `rewrite.to`); the query string
//! is kept (Azure's `api-version` is added).

pub mod health;
mod parse;
pub mod resolved;
mod select;
pub mod trust;
pub mod worker;

pub use parse::parse_routing;
pub use select::{attempt_order, credential_headers, upstream_uri};

/// The key a credential holds, as read from its source: a file may end with one line break
/// (editors add one); what remains, and an environment variable's value, must be one
/// header-safe token (printable ASCII, no spaces): a second line (an old rotated key) or a
/// CR/LF would put more than one value, or a header of its own, into the provider request.
/// The error names the problem, never the value.
pub fn credential_secret(raw: &str, from_file: bool) -> Result<&str, &'static str> {
    let s = if from_file {
        raw.strip_suffix("\r\n")
            .or_else(|| raw.strip_suffix('\n'))
            .unwrap_or(raw)
    } else {
        raw
    };
    match crate::core::fields::token_problem(s) {
        Some(problem) => Err(problem),
        None => Ok(s),
    }
}

use super::policy::glob::Glob;

/// The API family of a target: decides the credential header and request details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Azure,
    Anthropic,
    OpenAiCompatible,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Azure => "azure",
            Provider::Anthropic => "anthropic",
            Provider::OpenAiCompatible => "openai-compatible",
        }
    }
}

/// Where a target's key comes from (resolved by the nginx layer when the config loads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The key itself, in the config file.
    Inline(String),
    /// An environment variable of the nginx master.
    Env(String),
    /// A file holding the key (surrounding whitespace ignored).
    File(String),
    /// The key sealed with a node key (`v1:<key id>:<data>`, see `core::seal`), opened with
    /// the keys of `ai_gateway_secret_key`.
    Sealed(String),
}

/// A provider endpoint.
#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub provider: Provider,
    pub https: bool,
    /// Host name or address, without port or brackets.
    pub host: String,
    pub port: u16,
    /// Path of the base URL, without a trailing slash (may be empty).
    pub base_path: String,
    pub credential: Option<Credential>,
    /// Azure `api-version` query argument; Anthropic `anthropic-version` header.
    pub api_version: Option<String>,
    /// Consecutive failed attempts that start a cool-down (default 3).
    pub max_failures: u32,
    /// How long a cool-down lasts, in milliseconds (default 30 s).
    pub cooldown_ms: u64,
    /// `proxy_connect_timeout`, `proxy_send_timeout`, `proxy_read_timeout` for this target
    /// (milliseconds; `None`: the location's).
    pub connect_timeout_ms: Option<u64>,
    pub send_timeout_ms: Option<u64>,
    pub read_timeout_ms: Option<u64>,
    /// Requests in flight to this target per worker at most (`None`: no limit); past it the
    /// attempt fails over as a refused connection would.
    pub max_connections: Option<u32>,
}

impl Target {
    /// The `Host` header: the host, with the port when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Requests a route serves and the targets that serve them.
#[derive(Debug)]
pub struct Route {
    /// What the worker's routing state knows the route by (see `worker::route_key`).
    pub key: String,
    pub name: String,
    pub path_prefix: String,
    /// Model globs (empty: every model, and requests without one).
    pub models: Vec<Glob>,
    /// Namespace codes (empty: every namespace).
    pub namespaces: Vec<String>,
    /// (target index, weight > 0).
    pub targets: Vec<(usize, u32)>,
    /// Targets tried after the weighted choice failed, in order.
    pub fallback: Vec<usize>,
    /// Replaces this prefix of the request path (default: `path_prefix`)...
    pub rewrite_from: String,
    /// ...with this (default `/`), before the target's base path is put in front.
    pub rewrite_to: String,
    /// Upstream statuses that move on to the next target.
    pub retry_statuses: Vec<u16>,
    /// Attempts at most (default: every distinct target once).
    pub max_attempts: usize,
}

/// Statuses that move a request on to the next target unless a route says otherwise.
pub const DEFAULT_RETRY_STATUSES: [u16; 5] = [429, 500, 502, 503, 504];

/// The routing table.
#[derive(Debug, Default)]
pub struct Routing {
    pub targets: Vec<Target>,
    pub routes: Vec<Route>,
}

impl Routing {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The first route (in declaration order) for this path, model and namespace.
    pub fn route_for(&self, path: &str, model: Option<&str>, namespace: &str) -> Option<usize> {
        self.routes.iter().position(|r| {
            path.starts_with(&r.path_prefix)
                && (r.models.is_empty()
                    || model.is_some_and(|m| r.models.iter().any(|g| g.matches(m))))
                && (r.namespaces.is_empty() || r.namespaces.iter().any(|n| n == namespace))
        })
    }
}

#[cfg(test)]
mod tests;
