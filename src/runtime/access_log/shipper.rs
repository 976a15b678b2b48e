//! The worker's shipper: one task that takes the batches the nginx thread hands it, in
//! order, to the store (the Redis stream, or MySQL when there is no Redis); a batch the
//! store cannot take goes to the spool, and the spool is replayed once the store takes
//! batches again. After a failure the store is left alone for a second (batches go to the
//! spool meanwhile): no timeout is paid per batch while it is down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::spool::{read_chunk, Claimed, Spool};
use super::store::{ensure_schema, ingest};
use super::stream::Stream;
use super::{LogSettings, Say, STATS};
use crate::core::access_log::buffer::Batch;
use crate::core::access_log::record::parse_lines;
use crate::core::metrics::log_stats::{Count, Gauge};
use crate::runtime::admin::db::Db;

/// Where batches go.
pub enum Sink {
    Redis(Arc<Stream>),
    Mysql(Arc<Db>),
}

pub struct Shipper {
    pub sink: Sink,
    pub spool: Arc<Spool>,
    pub settings: LogSettings,
    pub say: Say,
    /// The schema is migrated (MySQL sink).
    pub schema: std::sync::atomic::AtomicBool,
}

/// How long the store is left alone after a failure.
const PAUSE: Duration = Duration::from_secs(1);
/// Spool chunks replayed per round (live batches go between rounds).
const REPLAY_CHUNKS: usize = 20;

struct State {
    down_until: Option<Instant>,
    claimed: Option<Claimed>,
    /// The spool held something when last looked at.
    spooled: bool,
    warned_down: bool,
    warned_spool: bool,
}

impl Shipper {
    /// Sends one batch; `Err` when the store did not take it.
    async fn send(&self, lines: &[u8], records: u32) -> Result<Count, String> {
        match &self.sink {
            Sink::Redis(s) => {
                if s.ship(
                    &self.settings.node,
                    records,
                    lines,
                    self.settings.stream_max,
                )
                .await?
                {
                    Ok(Count::ShippedRedis)
                } else {
                    Err(format!(
                        "the Redis stream holds {} records already (stream_max)",
                        self.settings.stream_max
                    ))
                }
            }
            Sink::Mysql(db) => {
                ensure_schema(db, &self.schema)
                    .await
                    .map_err(|e| e.message)?;
                let (recs, invalid) = parse_lines(lines);
                STATS.add(Count::DroppedInvalid, invalid);
                let limit = db.timeout.max(Duration::from_secs(10));
                let done = ingest(db, &recs, limit).await.map_err(|e| e.message)?;
                STATS.add(Count::Ingested, done.inserted);
                STATS.add(Count::Duplicates, done.duplicates);
                Ok(Count::ShippedMysql)
            }
        }
    }

    async fn spool(&self, st: &mut State, batch: Batch) {
        let Batch {
            ref bytes, records, ..
        } = batch;
        let lines = bytes.clone();
        drop(batch);
        let s = self.spool.clone();
        let written = tokio::task::spawn_blocking(move || {
            s.prepare()
                .and_then(|()| s.append(&lines))
                .map(|ok| (ok, s.size()))
        })
        .await;
        match written {
            Ok(Ok((true, size))) => {
                STATS.add(Count::Spooled, u64::from(records));
                STATS.set(Gauge::SpoolBytes, size);
                st.spooled = true;
            }
            other => {
                STATS.add(Count::DroppedSpool, u64::from(records));
                if !st.warned_spool {
                    st.warned_spool = true;
                    let why = match other {
                        Ok(Ok(_)) => format!("it holds {} bytes already", self.settings.spool_max),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                    };
                    (self.say)(true, format!("usage log: spool \"{}\" cannot take records ({why}): records are dropped (gateway_log_dropped_total)", self.spool.dir().display()));
                }
            }
        }
    }

    async fn handle(&self, st: &mut State, batch: Batch) {
        if st.down_until.is_some_and(|t| Instant::now() < t) {
            return self.spool(st, batch).await;
        }
        match self.send(&batch.bytes, batch.records).await {
            Ok(count) => {
                STATS.add(count, u64::from(batch.records));
                self.recovered(st);
            }
            Err(e) => {
                self.failed(st, e);
                self.spool(st, batch).await;
            }
        }
    }

    fn failed(&self, st: &mut State, why: String) {
        st.down_until = Some(Instant::now() + PAUSE);
        if !st.warned_down {
            st.warned_down = true;
            (self.say)(true, format!("usage log: cannot ship records ({why}); they go to the spool until it works again"));
        }
    }

    fn recovered(&self, st: &mut State) {
        st.down_until = None;
        if st.warned_down {
            st.warned_down = false;
            st.warned_spool = false;
            (self.say)(false, "usage log: shipping works again".into());
        }
    }

    /// Replays up to `REPLAY_CHUNKS` chunks of the spool.
    async fn replay(&self, st: &mut State) {
        for _ in 0..REPLAY_CHUNKS {
            if st.claimed.is_none() {
                let s = self.spool.clone();
                let claimed = tokio::task::spawn_blocking(move || s.claim())
                    .await
                    .ok()
                    .flatten();
                match claimed {
                    Some(c) => st.claimed = Some(c),
                    None => {
                        st.spooled = false;
                        STATS.set(Gauge::SpoolBytes, 0);
                        return;
                    }
                }
            }
            let Some(c) = st.claimed.as_ref() else { return };
            let (path, offset) = (c.path.clone(), c.offset);
            let batch = self.settings.batch as usize;
            let chunk =
                tokio::task::spawn_blocking(move || read_chunk(&Claimed { path, offset }, batch))
                    .await;
            match chunk {
                Ok(Ok(Some((lines, records, next)))) => match self.send(&lines, records).await {
                    Ok(_) => {
                        STATS.add(Count::Replayed, u64::from(records));
                        if let Some(c) = st.claimed.as_mut() {
                            c.offset = next;
                        }
                    }
                    Err(e) => return self.failed(st, e),
                },
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    // replayed (or unreadable: nothing more can come of it)
                    if let Some(c) = st.claimed.take() {
                        let _ =
                            tokio::task::spawn_blocking(move || std::fs::remove_file(c.path)).await;
                    }
                }
            }
        }
    }

    /// Ships until the sender is gone (the worker exits): then what is left in the
    /// channel is shipped or spooled, and `done` is signalled.
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Batch>,
        done: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut st = State {
            down_until: None,
            claimed: None,
            // a spool left by an earlier worker is looked at once the store works
            spooled: true,
            warned_down: false,
            warned_spool: false,
        };
        let mut tick = tokio::time::interval(PAUSE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(b) => self.handle(&mut st, b).await,
                    None => break,
                },
                _ = tick.tick() => {}
            }
            let up = !matches!(st.down_until, Some(t) if Instant::now() < t);
            if up && st.spooled && rx.is_empty() {
                self.replay(&mut st).await;
            }
        }
        let _ = done.send(());
    }
}
