//! The nginx-facing layer: the only code that touches nginx types, raw pointers and `unsafe`.
//! Each callback reads conf/ctx, calls `crate::core`, and maps the result to an nginx status.
#![allow(static_mut_refs)]

mod access;
mod admin;
mod admin_conf;
mod body;
mod bridge;
mod cluster;
mod cluster_conf;
mod cluster_sync;
mod conf;
mod config_source;
mod config_status;
mod ctx;
mod directives;
mod failover;
mod filter;
mod guard;
mod headers;
mod limit_zone;
mod log_phase;
mod metrics;
mod mock;
mod module;
mod peer_guard;
mod policy;
mod respond;
mod rewrite;
mod route;
mod secret_key;
mod shm;
mod snapshot;
mod target_health;
mod token_service;
mod usage;
mod usage_log;
mod usage_log_conf;
mod vars;
