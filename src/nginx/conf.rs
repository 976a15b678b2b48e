//! Module configuration: `MainConf` (http level) and `LocConf` (http/server/location).

use std::ptr::NonNull;
use std::sync::Arc;

use ngx::ffi::{ngx_shm_zone_t, ngx_uint_t};

use ngx::http::{Merge, MergeConfigError};

use super::peer_guard::Wrapped;
use crate::core::cluster::Node;
use crate::core::seal::SealKey;
use crate::core::snapshot::Snapshot;
use crate::runtime::admin::db::MysqlSettings;
use crate::runtime::admin::Bootstrap;
use crate::runtime::redis_source::{RedisSettings, SourceSettings};

/// `http`-level configuration.
#[derive(Default)]
pub struct MainConf {
    /// The snapshot of `ai_gateway_config` (or of the last-known-good file of the Redis
    /// source), validated and resolved when nginx parses its configuration: what workers
    /// start with (see `snapshot::current`).
    pub snapshot: Option<Arc<Snapshot>>,
    /// Absolute path of the config file, for messages.
    pub config_path: Option<String>,
    /// Whether any block says `ai_gateway on`, so a missing config is caught at start.
    pub enabled_anywhere: bool,
    /// `ai_gateway_metrics_zone`: the zone the log phase records into.
    pub metrics_zone: Option<NonNull<ngx_shm_zone_t>>,
    /// Whether some location serves `ai_gateway_metrics` (which needs the zone).
    pub metrics_served: bool,
    /// Whether some location serves `ai_gateway_token_service` (encoders built at start).
    pub token_service: bool,
    /// `ai_gateway_limit_zone`: where policy counters live.
    pub limit_zone: Option<NonNull<ngx_shm_zone_t>>,
    /// Whether some block says `ai_gateway_route on` (which needs routes in the config).
    pub route_anywhere: bool,
    /// `ai_gateway_redis`: the store the worker runtime talks to.
    pub redis: Option<RedisSettings>,
    /// `ai_gateway_config_source redis ...`: snapshots come from Redis at run time.
    pub source: Option<SourceSettings>,
    /// The `upstream {}` blocks whose peer selection is wrapped, with their own.
    pub wrapped_upstreams: Vec<Wrapped>,
    /// `ai_gateway_secret_key`, in directive order (the first seals; each opens by key id):
    /// every snapshot's sealed credentials are opened with these.
    pub seal_keys: Vec<SealKey>,
    /// `ai_gateway_mysql`: the config center's database.
    pub mysql: Option<MysqlSettings>,
    /// `ai_gateway_admin_bootstrap`: the first admin, made when there is no user.
    pub bootstrap: Option<Bootstrap>,
    /// Whether some location serves `ai_gateway_admin` (which needs MySQL).
    pub admin_served: bool,
    /// `ai_gateway_cluster_limits`: counting policies hold across nodes (Redis).
    pub cluster: Option<Node>,
    /// `ai_gateway_usage_log`: each gateway request's record is shipped to MySQL.
    pub usage_log: Option<crate::runtime::access_log::LogSettings>,
}

/// Settings of `ai_gateway_mock_provider`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MockSettings {
    /// Delay before the response header, in milliseconds.
    pub latency_ms: u64,
    /// Delay between streamed events, in milliseconds.
    pub interval_ms: u64,
}

/// `http`/`server`/`location`-level configuration.
#[derive(Default)]
pub struct LocConf {
    /// `ai_gateway on|off`, inherited from outer blocks.
    pub enabled: Option<bool>,
    /// `ai_gateway_mock_provider` (a content handler: not inherited).
    pub mock: Option<MockSettings>,
    /// `ai_gateway_metrics` (a content handler: not inherited).
    pub metrics: bool,
    /// `ai_gateway_token_service` (a content handler: not inherited).
    pub token_service: bool,
    /// `ai_gateway_stream_usage on|off` (default on), inherited.
    pub stream_usage: Option<bool>,
    /// `ai_gateway_policy_log_level` (default `warn`), inherited.
    pub policy_log_level: Option<ngx_uint_t>,
    /// `ai_gateway_route on|off` (default off), inherited.
    pub route: Option<bool>,
    /// `ai_gateway_admin` (a content handler: not inherited).
    pub admin: bool,
}

impl LocConf {
    pub fn is_enabled(&self) -> bool {
        self.enabled == Some(true)
    }

    pub fn stream_usage(&self) -> bool {
        self.stream_usage != Some(false)
    }

    pub fn route(&self) -> bool {
        self.route == Some(true)
    }

    pub fn policy_log_level(&self) -> ngx_uint_t {
        self.policy_log_level
            .unwrap_or(ngx::ffi::NGX_LOG_WARN as ngx_uint_t)
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if self.enabled.is_none() {
            self.enabled = prev.enabled;
        }
        if self.stream_usage.is_none() {
            self.stream_usage = prev.stream_usage;
        }
        if self.policy_log_level.is_none() {
            self.policy_log_level = prev.policy_log_level;
        }
        if self.route.is_none() {
            self.route = prev.route;
        }
        Ok(())
    }
}
