//! Prometheus metrics: a fixed-layout store of atomic counters that lives in one shared
//! memory zone (so every worker writes to, and any worker renders, the same numbers), and the
//! text exposition (format 0.0.4).
//!
//! The store is a slice of `AtomicU64` words; the nginx layer hands it the zone's memory, unit
//! tests hand it a `Vec`. Recording is lock-free once a series exists; creating a series takes
//! a short spin lock, and when the series cap is reached (or the lock is contended for too
//! long) the sample is folded into a reserved overflow series so totals stay exact.

mod labels;
pub mod log_stats;
pub mod redis_stats;
mod render;
mod store;

pub use labels::{Kind, LABEL_MAX_BYTES, OVERFLOW_LABEL};
pub use render::{render, RenderInfo, SyncInfo};
pub use store::{
    LayoutError, RequestSample, Store, UpstreamAttempt, Usage, DURATION_BOUNDS_MS,
    OVERHEAD_BOUNDS_NS, RESERVED_ENTRIES,
};
