//! Usage logs off the event loop: the worker's [`shipper`] takes the batches the log phase
//! filled (`core::access_log::buffer`) to the Redis [`stream`] (or, without Redis, straight
//! to MySQL), into the local [`spool`] while that store cannot take them, and replays the
//! spool once it can; the [`ingestor`] (one in the cluster, holding a lease in Redis) moves
//! the stream into MySQL ([`store`]: rows, aggregates, partitions, and the usage API's
//! reads, served by `runtime::admin::usage_api`).

pub mod ingestor;
pub mod shipper;
pub mod spool;
pub mod store;
pub mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::core::metrics::log_stats::LogStats;

/// This worker's usage-log counts, moved into the metrics zone by the nginx thread.
pub static STATS: LogStats = LogStats::new();

/// `ai_gateway_usage_log`.
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// Records per batch.
    pub batch: u32,
    /// Records a worker buffers at most.
    pub buffer: u32,
    /// How often a partly filled batch is shipped.
    pub flush: Duration,
    pub spool_dir: PathBuf,
    /// Bytes the spool directory holds at most.
    pub spool_max: u64,
    /// Records the Redis stream holds at most (then nodes spool).
    pub stream_max: u64,
    /// Days of raw logs kept (today included).
    pub retention_days: u32,
    /// Days of hourly and daily aggregates kept.
    pub aggregate_days: u32,
    /// The ingestor's lease.
    pub lease: Duration,
    /// This node's name in the records.
    pub node: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            batch: 500,
            buffer: 10_000,
            flush: Duration::from_secs(1),
            spool_dir: PathBuf::new(),
            spool_max: 256 << 20,
            stream_max: 5_000_000,
            retention_days: 30,
            aggregate_days: 400,
            lease: Duration::from_secs(10),
            node: String::new(),
        }
    }
}

/// Says something in nginx's error log (posted to the nginx thread); `true`: a warning,
/// else a notice.
pub type Say = Arc<dyn Fn(bool, String) + Send + Sync>;
