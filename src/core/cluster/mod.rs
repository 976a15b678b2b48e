//! Limits that hold across gateway nodes: what a counting policy's cluster `mode` is, what it
//! does when Redis cannot be reached, the node's defaults (`ai_gateway_cluster_limits`), the
//! request's question to Redis and the conclusion drawn from its answer ([`ask`]), and the
//! circuit breaker ([`breaker`]). The Redis calls themselves are in `runtime::cluster`.
//!
//! Modes:
//! - `local`: the node's shared memory zone, as without Redis (each node its own limit);
//! - `exact`: one atomic Redis script per request checks and takes every cluster counter of
//!   the request's namespace (time from Redis), settles token reservations at the end and
//!   holds concurrency as leases with an expiry.
//! - `approximate` (windows): admission in the node's zone against the node's allowance, a
//!   share of what the cluster had left at the last sync; one task per node sends the node's
//!   deltas every `sync` ms and learns the cluster's total (`core::policy::approx`). Quotas and
//!   concurrency in this mode are exact (a quota's overshoot would last its period; leases
//!   cannot drift).

pub mod ask;
pub mod breaker;

pub use crate::core::policy::cluster_mode::{
    degraded_limit, fraction_of, parse_mode, parse_on_failure, Defaults, Fraction, Mode, OnFailure,
    PolicyCluster, Remote,
};

/// `ai_gateway_cluster_limits`: the node's cluster limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub defaults: Defaults,
    /// The Redis key prefix (`ai_gateway_redis ... prefix=`).
    pub prefix: String,
    /// Bound of one Redis call.
    pub timeout_ms: u64,
    /// Consecutive failures that open the breaker.
    pub breaker: u32,
    /// How long the breaker stays open before a probe.
    pub probe_ms: u64,
    /// A concurrency lease's life (renewed while its request runs).
    pub lease_ms: u64,
    /// How often the node syncs its approximate counters.
    pub sync_ms: u64,
    /// This node's name among the nodes sharing approximate counters.
    pub name: String,
}

impl Node {
    pub fn new(prefix: &str) -> Node {
        Node {
            defaults: Defaults::default(),
            prefix: prefix.to_string(),
            timeout_ms: 100,
            breaker: 3,
            probe_ms: 1000,
            lease_ms: 10_000,
            sync_ms: 100,
            name: String::new(),
        }
    }

    /// How old the last sync of an approximate counter may be before the node takes Redis
    /// as unreachable for it.
    pub fn stale_ms(&self) -> u64 {
        (self.sync_ms.saturating_mul(5) + self.timeout_ms).max(500)
    }
}

/// The Redis keys of approximate counter `k` (`core::policy::approx`): its window hash and
/// its nodes hash (one hash tag: one script).
pub fn approx_keys(prefix: &str, k: u64) -> (String, String) {
    (
        format!("{prefix}:approx:{{{k:016x}}}"),
        format!("{prefix}:approx:{{{k:016x}}}:nodes"),
    )
}
