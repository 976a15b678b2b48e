//! The ingestor: one per cluster, on worker 0 of a node with MySQL and Redis, holding a
//! lease in Redis (taken over by another such node within the lease's time when its
//! holder dies). It reads the stream's oldest entries, inserts their records into MySQL
//! (exactly once, `store::ingest`) and only then deletes them from the stream: a record
//! leaves Redis only once it is in MySQL. It also keeps the day partitions and retention.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store::{ensure_schema, ingest, maintain};
use super::stream::Stream;
use super::{LogSettings, Say, STATS};
use crate::core::access_log::record::parse_lines;
use crate::core::metrics::log_stats::{Count, Gauge};
use crate::runtime::admin::db::Db;
use crate::runtime::redis_source::unix_ms;

/// Stream entries (batches) per MySQL transaction.
const ENTRIES_PER_INGEST: usize = 10;
/// How often partitions and retention are looked at.
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

pub struct Ingestor {
    pub stream: Arc<Stream>,
    pub db: Arc<Db>,
    pub settings: LogSettings,
    /// Unique among the cluster's ingestors (node, pid, start time).
    pub me: String,
    pub say: Say,
    pub stop: Arc<AtomicBool>,
    pub schema: AtomicBool,
}

impl Ingestor {
    /// Runs until `stop`; then gives the lease up (a reloaded node's next worker, or
    /// another node, takes it at once) and signals `done`.
    pub async fn run(self: Arc<Self>, done: tokio::sync::oneshot::Sender<()>) {
        let lease_ms = self.settings.lease.as_millis() as u64;
        let renew = self.settings.lease / 3;
        let mut held = false;
        let mut renewed = Instant::now();
        let mut maintained: Option<Instant> = None;
        let mut failing = false;
        let mut backoff = Duration::from_millis(200);
        while !self.stop.load(Ordering::Acquire) {
            if !held || renewed.elapsed() >= renew {
                let now_held = self.stream.lease(&self.me, lease_ms).await.unwrap_or(false);
                renewed = Instant::now();
                if now_held != held {
                    (self.say)(
                        false,
                        if now_held {
                            format!(
                                "usage log: this node ({}) is the ingestor now",
                                self.settings.node
                            )
                        } else {
                            "usage log: this node is no longer the ingestor".to_string()
                        },
                    );
                }
                held = now_held;
                STATS.set(Gauge::Ingestor, u64::from(held));
                if !held {
                    tokio::time::sleep(renew.min(Duration::from_secs(1))).await;
                    continue;
                }
            }
            if let Err(e) = ensure_schema(&self.db, &self.schema).await {
                if !failing {
                    failing = true;
                    (self.say)(
                        true,
                        format!(
                            "usage log: MySQL not ready ({}); records wait in the Redis stream",
                            e.message
                        ),
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            if maintained.is_none_or_elapsed(MAINTAIN_EVERY) {
                match maintain(
                    &self.db,
                    unix_ms(),
                    self.settings.retention_days,
                    self.settings.aggregate_days,
                )
                .await
                {
                    Ok(done) => {
                        maintained = Some(Instant::now());
                        for sql in done {
                            (self.say)(false, format!("usage log: {sql}"));
                        }
                    }
                    Err(e) => {
                        if !failing {
                            (self.say)(
                                true,
                                format!("usage log: partitions not kept ({}); retried", e.message),
                            );
                        }
                    }
                }
            }
            let entries = match self.stream.read(ENTRIES_PER_INGEST).await {
                Ok(e) => e,
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if entries.is_empty() {
                STATS.set(Gauge::LagMs, 0);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            STATS.set(
                Gauge::LagMs,
                unix_ms().saturating_sub(entries[0].added_ms()),
            );
            let mut records = Vec::new();
            let mut invalid = 0;
            for e in &entries {
                let (r, bad) = parse_lines(&e.bytes);
                records.extend(r);
                invalid += bad;
            }
            let limit = self.db.timeout.max(Duration::from_secs(10));
            match ingest(&self.db, &records, limit).await {
                Ok(done) => {
                    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
                    if self.stream.ack(&ids).await.is_ok() {
                        STATS.add(Count::Ingested, done.inserted);
                        STATS.add(Count::Duplicates, done.duplicates);
                        STATS.add(Count::DroppedInvalid, invalid);
                    }
                    if failing {
                        failing = false;
                        (self.say)(false, "usage log: MySQL takes records again".into());
                    }
                    backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    if !failing {
                        failing = true;
                        (self.say)(true, format!("usage log: cannot insert records into MySQL ({}); they wait in the Redis stream", e.message));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        if held {
            let _ = self.stream.release(&self.me).await;
        }
        STATS.set(Gauge::Ingestor, 0);
        let _ = done.send(());
    }
}

/// Without Redis (each worker writes its own batches): worker 0 keeps the partitions.
pub async fn maintain_loop(db: Arc<Db>, settings: LogSettings, say: Say, stop: Arc<AtomicBool>) {
    let schema = AtomicBool::new(false);
    let mut warned = false;
    while !stop.load(Ordering::Acquire) {
        let done = match ensure_schema(&db, &schema).await {
            Ok(()) => {
                maintain(
                    &db,
                    unix_ms(),
                    settings.retention_days,
                    settings.aggregate_days,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let wait = match done {
            Ok(statements) => {
                warned = false;
                for sql in statements {
                    say(false, format!("usage log: {sql}"));
                }
                MAINTAIN_EVERY
            }
            Err(e) => {
                if !warned {
                    warned = true;
                    say(
                        true,
                        format!("usage log: partitions not kept ({}); retried", e.message),
                    );
                }
                Duration::from_secs(5)
            }
        };
        let until = Instant::now() + wait;
        while Instant::now() < until && !stop.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

trait Due {
    fn is_none_or_elapsed(&self, every: Duration) -> bool;
}

impl Due for Option<Instant> {
    fn is_none_or_elapsed(&self, every: Duration) -> bool {
        self.map_or(true, |t| t.elapsed() >= every)
    }
}
