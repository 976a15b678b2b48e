//! Usage and access logs, the pure part: a request's [`record::Record`] and its line
//! format, the worker's bounded [`buffer`], the minute/hourly/daily [`rollup`] with its
//! [`latency`] histogram, and the usage API's reads ([`query`] of logs, [`usage`] of
//! aggregates, shown by [`table`]). The nginx layer fills the buffer in the log phase;
//! `runtime::access_log` ships, spools and ingests.

pub mod buffer;
pub mod latency;
pub mod partitions;
pub mod query;
pub mod record;
pub mod request_id;
pub mod rollup;
pub mod table;
pub mod usage;
