//! What the gateway does off the event loop, with no nginx types and no unchecked code (the
//! crate root forbids it here, as for `core`): making snapshots (files, DNS, credentials),
//! and the tasks of the per-worker runtime (the Redis configuration source, the node's
//! heartbeat). Results reach nginx through the one async bridge (`nginx::bridge`); nothing
//! here touches nginx memory.

pub mod access_log;
pub mod admin;
pub mod cluster;
pub mod load;
pub mod redis_source;
