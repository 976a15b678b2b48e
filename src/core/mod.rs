//! The pure-Rust core: no nginx types, no raw pointers, no IO (the crate root forbids
//! unchecked code in this module). Everything here is exercised by
//! `cargo test` without nginx; the `nginx` layer converts nginx data into these types, calls
//! the core and maps the result back.

pub mod access_log;
pub mod admin;
pub mod cluster;
pub mod config;
pub mod config_error;
pub mod error;
pub mod error_shape;
pub(crate) mod fields;
pub mod identify;
pub mod json_bytes;
pub mod json_check;
pub mod matcher;
pub mod metrics;
pub mod mock;
pub mod models_list;
pub mod parked;
pub mod pipeline;
pub mod policy;
pub mod request;
pub mod routing;
pub mod seal;
pub mod short_text;
pub mod snapshot;
pub mod stream_rewrite;
pub mod strict_json;
pub mod timestamp;
pub mod tokens;
pub mod usage;
