//! Cluster limits on the worker's runtime: the Redis connection, the scripts that admit,
//! settle and renew ([`client`]), what a request holds in Redis until it ends ([`hold`]),
//! and the circuit breaker's state. Nothing here touches nginx memory: outcomes reach
//! nginx as parked requests' results and through [`Report`].

pub mod client;
pub mod hold;
pub mod reply;

pub use client::{install, installed, Admitted, Client, Failure};
pub use hold::Hold;

use crate::core::metrics::redis_stats::RedisStats;

/// A Redis call, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Admit = 0,
    Finish = 1,
    Renew = 2,
    Probe = 3,
    Sync = 4,
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok = 0,
    Error = 1,
    Timeout = 2,
}

/// This process's Redis calls, drained into the metrics zone by the nginx thread.
pub static STATS: RedisStats = RedisStats::new();

/// What the runtime tells nginx (implemented by the nginx layer, which logs and counts on its
/// own thread).
pub trait Report: Send + Sync + 'static {
    /// The breaker opened (`true`) or closed.
    fn breaker(&self, opened: bool, why: String);
    /// A message for the error log (warn level).
    fn warn(&self, message: String);
}
