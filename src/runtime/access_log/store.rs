//! MySQL for usage logs: inserting a batch of records exactly once (the records already
//! there are skipped, and only the new ones reach the aggregates, all in one transaction),
//! the day partitions and retention (the minute aggregates: 48 hours), and the usage API's
//! reads.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Params, TxOpts, Value};

use crate::core::access_log::latency::{self, BUCKETS};
use crate::core::access_log::partitions::{plan, Partition};
use crate::core::access_log::query::{Param, Sql};
use crate::core::access_log::record::Record;
use crate::core::access_log::rollup::{
    minutes_kept_from, rollup, RollupKey, Sums, DAY_MS, HOUR_MS, MINUTE_MS,
};
use crate::core::access_log::table::Cell;
use crate::core::admin::error::ApiError;
use crate::runtime::admin::db::Db;

/// Rows per INSERT statement (at most 26 parameters a row, far below the protocol's 65,535).
const ROWS_PER_INSERT: usize = 500;
/// Parameters of an aggregate row: its key, its sums and its histogram.
const ROLLUP_PARAMS: usize = 14 + BUCKETS;
/// Old minute aggregates deleted per statement, and statements per maintenance at most (the
/// rest goes at the next one): no long lock on the table the ingestor writes.
const MINUTE_ROWS_PER_DELETE: u64 = 5_000;
const MINUTE_DELETES_MAX: usize = 100;

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub inserted: u64,
    /// Records that were already there (or twice in the batch).
    pub duplicates: u64,
}

fn day_of(r: &Record) -> i64 {
    (r.ts_ms / DAY_MS) as i64
}

fn opt(n: Option<u64>) -> Value {
    n.map_or(Value::NULL, Value::UInt)
}

fn row_values(r: &Record, out: &mut Vec<Value>) {
    out.extend([
        Value::Int(day_of(r)),
        Value::UInt(r.ts_ms),
        Value::from(r.request_id.as_ref()),
        Value::from(r.node.as_ref()),
        Value::from(r.namespace.as_ref()),
        Value::from(r.key_id.as_ref()),
        Value::from(r.model.as_ref()),
        Value::from(r.route.as_ref()),
        Value::from(r.target.as_ref()),
        Value::UInt(u64::from(r.status)),
        Value::from(r.error.as_ref()),
        Value::UInt(u64::from(r.latency_ms)),
        opt(r.ttfb_ms.map(u64::from)),
        opt(r.tokens.prompt),
        opt(r.tokens.completion),
        opt(r.tokens.cached),
        opt(r.tokens.reasoning),
        Value::from(r.source.as_str()),
        Value::UInt(u64::from(r.attempts)),
        Value::UInt(u64::from(r.stream)),
    ]);
}

const INSERT_LOGS: &str = "INSERT INTO access_logs (day, ts, request_id, node, namespace, key_id, model, route, target, status, error, latency_ms, ttfb_ms, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, usage_source, attempts, stream) VALUES ";

fn placeholders(n: usize, per_row: usize) -> String {
    let row = format!("({})", vec!["?"; per_row].join(", "));
    vec![row; n].join(", ")
}

fn rollup_values(k: &RollupKey, s: &Sums, out: &mut Vec<Value>) {
    out.extend([
        Value::UInt(k.bucket),
        Value::from(k.namespace.as_str()),
        Value::from(k.key_id.as_str()),
        Value::from(k.model.as_str()),
        Value::from(k.target.as_str()),
        Value::UInt(u64::from(k.class)),
        Value::UInt(s.requests),
        Value::UInt(s.errors),
        Value::UInt(s.prompt),
        Value::UInt(s.completion),
        Value::UInt(s.cached),
        Value::UInt(s.reasoning),
        Value::UInt(s.latency_sum),
        Value::UInt(s.latency_max),
    ]);
    out.extend(s.latency.iter().map(|n| Value::UInt(*n)));
}

fn upsert_rollup(table: &str, column: &str, n: usize) -> String {
    let hist: String = latency::COLUMNS.iter().map(|c| format!(", {c}")).collect();
    let add: String = latency::COLUMNS
        .iter()
        .map(|c| format!(", {c} = {c} + VALUES({c})"))
        .collect();
    format!(
        "INSERT INTO {table} ({column}, namespace, key_id, model, target, status_class, requests, errors, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, latency_ms_sum, latency_ms_max{hist}) VALUES {} ON DUPLICATE KEY UPDATE requests = requests + VALUES(requests), errors = errors + VALUES(errors), prompt_tokens = prompt_tokens + VALUES(prompt_tokens), completion_tokens = completion_tokens + VALUES(completion_tokens), cached_tokens = cached_tokens + VALUES(cached_tokens), reasoning_tokens = reasoning_tokens + VALUES(reasoning_tokens), latency_ms_sum = latency_ms_sum + VALUES(latency_ms_sum), latency_ms_max = GREATEST(latency_ms_max, VALUES(latency_ms_max)){add}",
        placeholders(n, ROLLUP_PARAMS)
    )
}

/// Whether a MySQL error is one a retry of the whole transaction clears: a duplicate key
/// (another ingestor inserted the same records meanwhile), a deadlock or a lock wait.
fn retryable(e: &ApiError) -> bool {
    ["1062", "1213", "1205"]
        .iter()
        .any(|c| e.message.contains(c))
}

/// Inserts the records not yet in MySQL, and adds them (only them) to the minute, hourly
/// and daily aggregates, in one transaction; retried a few times when it meets another writer.
pub async fn ingest(
    db: &Db,
    records: &[Record<'_>],
    limit: Duration,
) -> Result<Ingested, ApiError> {
    let mut attempt = 0;
    loop {
        match db
            .within(limit, async { Ok(ingest_once(db, records).await) })
            .await
        {
            Ok(Ok(done)) => return Ok(done),
            Ok(Err(e)) | Err(e) => {
                attempt += 1;
                if attempt >= 4 || !retryable(&e) {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
        }
    }
}

async fn ingest_once(db: &Db, records: &[Record<'_>]) -> Result<Ingested, ApiError> {
    // one record per request id and day, whatever the batch holds
    let mut seen = HashSet::new();
    let mut fresh: Vec<&Record> = records
        .iter()
        .filter(|r| seen.insert((r.request_id.as_ref(), day_of(r))))
        .collect();
    let mut done = Ingested {
        inserted: 0,
        duplicates: (records.len() - fresh.len()) as u64,
    };
    if fresh.is_empty() {
        return Ok(done);
    }
    let mut conn = db.pool.get_conn().await.map_err(unavailable)?;
    let mut tx = conn
        .start_transaction(TxOpts::default())
        .await
        .map_err(unavailable)?;
    // the records already there (a replay, a batch another ingestor took too)
    let days: BTreeSet<i64> = fresh.iter().map(|r| day_of(r)).collect();
    let mut there: HashSet<(String, i64)> = HashSet::new();
    for chunk in fresh.chunks(ROWS_PER_INSERT) {
        let mut params: Vec<Value> = chunk
            .iter()
            .map(|r| Value::from(r.request_id.as_ref()))
            .collect();
        params.extend(days.iter().map(|d| Value::Int(*d)));
        let sql = format!(
            "SELECT request_id, day FROM access_logs WHERE request_id IN ({}) AND day IN ({})",
            vec!["?"; chunk.len()].join(", "),
            vec!["?"; days.len()].join(", ")
        );
        let rows: Vec<(String, i64)> = tx
            .exec(sql, Params::Positional(params))
            .await
            .map_err(unavailable)?;
        there.extend(rows);
    }
    let before = fresh.len();
    fresh.retain(|r| !there.contains(&(r.request_id.to_string(), day_of(r))));
    done.duplicates += (before - fresh.len()) as u64;
    for chunk in fresh.chunks(ROWS_PER_INSERT) {
        let mut params = Vec::with_capacity(chunk.len() * 20);
        for r in chunk {
            row_values(r, &mut params);
        }
        let sql = format!("{INSERT_LOGS}{}", placeholders(chunk.len(), 20));
        tx.exec_drop(sql, Params::Positional(params))
            .await
            .map_err(unavailable)?;
    }
    for (table, column, bucket, summary) in [
        ("usage_hourly", "hour", HOUR_MS, false),
        ("usage_daily", "day", DAY_MS, false),
        ("usage_hourly_summary", "hour", HOUR_MS, true),
        ("usage_daily_summary", "day", DAY_MS, true),
        ("usage_minutely_summary", "minute", MINUTE_MS, true),
    ] {
        let rows: Vec<(RollupKey, Sums)> = rollup(fresh.iter().copied(), bucket, summary)
            .into_iter()
            .collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut params = Vec::with_capacity(chunk.len() * ROLLUP_PARAMS);
            for (k, s) in chunk {
                rollup_values(k, s, &mut params);
            }
            tx.exec_drop(
                upsert_rollup(table, column, chunk.len()),
                Params::Positional(params),
            )
            .await
            .map_err(unavailable)?;
        }
    }
    tx.commit().await.map_err(unavailable)?;
    done.inserted = fresh.len() as u64;
    Ok(done)
}

fn unavailable(e: mysql_async::Error) -> ApiError {
    let code = match &e {
        mysql_async::Error::Server(s) => format!(" ({})", s.code),
        _ => String::new(),
    };
    ApiError::unavailable(format!("MySQL: {e}{code}"))
}

/// Migrates the schema once (the config center's migrations: the log tables are among
/// them), for a node that writes logs without serving the admin API.
pub async fn ensure_schema(db: &Db, ready: &std::sync::atomic::AtomicBool) -> Result<(), ApiError> {
    use std::sync::atomic::Ordering;
    if ready.load(Ordering::Acquire) {
        return Ok(());
    }
    let epoch = crate::runtime::admin::password::random_secret(12)?;
    db.migrate(&epoch, crate::runtime::redis_source::unix_ms() as i64)
        .await?;
    ready.store(true, Ordering::Release);
    Ok(())
}

/// Adds the days ahead and drops the days past `retention_days` (raw logs), deletes
/// aggregates older than `aggregate_days` and minute aggregates older than 48 hours (in
/// chunks). Returns the statements run.
pub async fn maintain(
    db: &Db,
    now_ms: u64,
    retention_days: u32,
    aggregate_days: u32,
) -> Result<Vec<String>, ApiError> {
    let mut conn = db.conn().await?;
    let rows: Vec<(String, String)> = db
        .timed(conn.query(
            "SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'access_logs' AND PARTITION_NAME IS NOT NULL",
        ))
        .await?;
    let existing: Vec<Partition> = rows
        .into_iter()
        .map(|(name, below)| Partition {
            below: below.trim().parse().ok(),
            name,
        })
        .collect();
    let today = (now_ms / DAY_MS) as i64;
    let statements = plan(&existing, today, i64::from(retention_days));
    for sql in &statements {
        db.within(db.timeout * 20, conn.query_drop(sql.as_str()))
            .await?;
    }
    let keep = u64::from(aggregate_days.max(1));
    let hours = (now_ms / HOUR_MS).saturating_sub(keep * 24);
    let days = (now_ms / DAY_MS).saturating_sub(keep);
    for (table, before) in [
        ("usage_hourly WHERE hour", hours),
        ("usage_daily WHERE day", days),
        ("usage_hourly_summary WHERE hour", hours),
        ("usage_daily_summary WHERE day", days),
    ] {
        let sql = format!("DELETE FROM {table} < ?");
        db.within(db.timeout * 20, conn.exec_drop(sql, (before,)))
            .await?;
    }
    let minutes = minutes_kept_from(now_ms);
    let delete = format!(
        "DELETE FROM usage_minutely_summary WHERE minute < ? LIMIT {MINUTE_ROWS_PER_DELETE}"
    );
    for _ in 0..MINUTE_DELETES_MAX {
        db.within(db.timeout * 5, conn.exec_drop(delete.as_str(), (minutes,)))
            .await?;
        if conn.affected_rows() < MINUTE_ROWS_PER_DELETE {
            break;
        }
    }
    Ok(statements)
}

fn cell(v: Value, numeric: bool) -> Cell {
    match v {
        Value::NULL => Cell::Null,
        Value::Int(n) => Cell::Int(n),
        Value::UInt(n) => Cell::Int(i64::try_from(n).unwrap_or(i64::MAX)),
        Value::Bytes(b) => {
            let s = String::from_utf8_lossy(&b).into_owned();
            match numeric.then(|| s.split('.').next().unwrap_or("").parse::<i64>().ok()) {
                Some(Some(n)) => Cell::Int(n),
                _ => Cell::Text(s),
            }
        }
        Value::Float(f) => Cell::Int(f as i64),
        Value::Double(f) => Cell::Int(f as i64),
        other => Cell::Text(format!("{other:?}")),
    }
}

/// Runs a read of the usage API; `numeric(i)` says which columns are numbers (sums come
/// back as decimals).
pub async fn read(
    db: &Db,
    sql: &Sql,
    numeric: impl Fn(usize) -> bool,
) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = db.conn().await?;
    let params: Vec<Value> = sql
        .params
        .iter()
        .map(|p| match p {
            Param::Int(n) => Value::Int(*n),
            Param::Text(s) => Value::from(s.as_str()),
        })
        .collect();
    let rows: Vec<mysql_async::Row> = db
        .within(
            db.timeout * 5,
            conn.exec(sql.text.as_str(), Params::Positional(params)),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            row.unwrap_raw()
                .into_iter()
                .enumerate()
                .map(|(i, v)| cell(v.unwrap_or(Value::NULL), numeric(i)))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aggregate_row_has_a_value_per_column() {
        let sql = upsert_rollup("usage_minutely_summary", "minute", 2);
        let columns = sql
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map_or(0, |(c, _)| c.split(", ").count());
        let mut values = Vec::new();
        rollup_values(&RollupKey::default(), &Sums::default(), &mut values);
        assert_eq!((columns, values.len()), (ROLLUP_PARAMS, ROLLUP_PARAMS));
        assert_eq!(sql.matches('?').count(), 2 * ROLLUP_PARAMS);
        for c in latency::COLUMNS {
            assert!(sql.contains(&format!("{c} = {c} + VALUES({c})")), "{c}");
        }
    }
}
