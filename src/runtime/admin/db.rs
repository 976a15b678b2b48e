//! MySQL for the config center: the pool (on the worker's runtime), every call bounded by
//! the configured timeout (a stopped server costs a request that long, then a 503), the
//! migrations, the config head, the state of record read from and written to its tables,
//! revisions and the audit log.

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, TxOpts, Value};

use super::schema::{done_before, MIGRATIONS};
use crate::core::admin::error::ApiError;
use crate::core::admin::state::State;
use crate::core::admin::tables::{self, Change, Rows, Sql, TABLES};

/// `ai_gateway_mysql`.
#[derive(Clone)]
pub struct MysqlSettings {
    /// Holds the password: never logged (see [`MysqlSettings::address`]).
    pub opts: Opts,
    pub pool: usize,
    pub timeout: Duration,
}

impl MysqlSettings {
    /// `host:port/db`, for messages.
    pub fn address(&self) -> String {
        format!(
            "{}:{}/{}",
            self.opts.ip_or_hostname(),
            self.opts.tcp_port(),
            self.opts.db_name().unwrap_or("")
        )
    }
}

/// The config head: the version of the configuration of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadRow {
    pub version: u64,
    pub epoch: String,
    pub sha256: String,
    pub next_id: u64,
}

pub struct Db {
    pub pool: Pool,
    pub timeout: Duration,
    /// How long a write may wait for the config head's lock (other writers before it):
    /// ten times the timeout, at least 5 s. Only that wait: every other statement, and
    /// connecting, is bounded by `timeout`, so a stopped server is a 503 within it.
    pub lock_timeout: Duration,
    pub address: String,
    database: String,
}

fn lock_timeout(timeout: Duration) -> Duration {
    (timeout * 10).max(Duration::from_secs(5))
}

/// A MySQL failure as the API answers it (503: the store is unavailable).
pub fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("MySQL: {e}"))
}

impl Db {
    pub fn new(s: &MysqlSettings) -> Db {
        let constraints = PoolConstraints::new(0, s.pool.max(1)).unwrap_or_default();
        let opts = OptsBuilder::from_opts(s.opts.clone())
            .pool_opts(
                PoolOpts::new()
                    .with_constraints(constraints)
                    .with_inactive_connection_ttl(Duration::from_secs(60)),
            )
            .stmt_cache_size(64)
            .setup(vec![format!(
                "SET SESSION innodb_lock_wait_timeout = {}",
                lock_timeout(s.timeout).as_secs().max(1)
            )]);
        Db {
            pool: Pool::new(opts),
            timeout: s.timeout,
            lock_timeout: lock_timeout(s.timeout),
            address: s.address(),
            database: s.opts.db_name().unwrap_or("").to_string(),
        }
    }

    /// Runs `fut` within the timeout; MySQL errors and the timeout are 503s.
    pub async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = mysql_async::Result<T>>,
    ) -> Result<T, ApiError> {
        self.within(self.timeout, fut).await
    }

    pub async fn within<T>(
        &self,
        limit: Duration,
        fut: impl std::future::Future<Output = mysql_async::Result<T>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(ApiError::unavailable(format!(
                "MySQL {} did not answer within {} ms",
                self.address,
                limit.as_millis()
            ))),
        }
    }

    pub async fn conn(&self) -> Result<Conn, ApiError> {
        self.timed(self.pool.get_conn()).await
    }

    /// Applies the migrations not yet applied (under a named lock).
    pub async fn migrate(&self, epoch: &str, now_ms: i64) -> Result<Vec<u32>, ApiError> {
        let mut conn = self.conn().await?;
        let lock = format!("ai_gateway_migrate.{}", self.database);
        let got: Option<Option<i64>> = self
            .timed(conn.exec_first(
                "SELECT GET_LOCK(?, ?)",
                (&lock, self.timeout.as_secs().max(1)),
            ))
            .await?;
        if got.flatten() != Some(1) {
            return Err(ApiError::unavailable(
                "another node is migrating the schema",
            ));
        }
        let result = self.migrate_locked(&mut conn, epoch, now_ms).await;
        let _ = self
            .timed(conn.exec_drop("SELECT RELEASE_LOCK(?)", (&lock,)))
            .await;
        result
    }

    async fn migrate_locked(
        &self,
        conn: &mut Conn,
        epoch: &str,
        now_ms: i64,
    ) -> Result<Vec<u32>, ApiError> {
        self.timed(conn.query_drop(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INT NOT NULL PRIMARY KEY,
                name VARCHAR(128) NOT NULL,
                applied_at BIGINT NOT NULL
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        ))
        .await?;
        let done: Vec<u32> = self
            .timed(conn.query("SELECT version FROM schema_migrations"))
            .await?;
        let mut applied = Vec::new();
        for (version, name, statements) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            for sql in *statements {
                if sql.contains('?') {
                    self.timed(conn.exec_drop(*sql, (epoch, now_ms))).await?;
                } else {
                    // an ALTER TABLE may copy a table (servers without instant columns)
                    let limit = if sql.starts_with("ALTER TABLE ") {
                        self.timeout * 20
                    } else {
                        self.timeout
                    };
                    let run = async {
                        match conn.query_drop(*sql).await {
                            Err(mysql_async::Error::Server(e)) if done_before(sql, e.code) => {
                                Ok(())
                            }
                            other => other,
                        }
                    };
                    self.within(limit, run).await?;
                }
            }
            self.timed(conn.exec_drop(
                "INSERT IGNORE INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, now_ms),
            ))
            .await?;
            applied.push(*version);
        }
        Ok(applied)
    }
}

fn head_of(row: Option<(u64, String, String, u64)>) -> Result<HeadRow, ApiError> {
    let (version, epoch, sha256, next_id) = row
        .ok_or_else(|| ApiError::unavailable("the config head is missing (schema not migrated)"))?;
    Ok(HeadRow {
        version,
        epoch,
        sha256,
        next_id,
    })
}

const HEAD: &str = "SELECT version, epoch, sha256, next_id FROM config_head WHERE id = 1";

/// Reads the head (no lock).
pub async fn head(db: &Db, conn: &mut impl Queryable) -> Result<HeadRow, ApiError> {
    head_of(db.timed(conn.query_first(HEAD)).await?)
}

/// Reads and locks the head: writes serialize here.
pub async fn lock_head(db: &Db, conn: &mut impl Queryable) -> Result<HeadRow, ApiError> {
    head_of(
        db.timed(conn.query_first(format!("{HEAD} FOR UPDATE")))
            .await?,
    )
}

fn to_sql(v: Value) -> Sql {
    match v {
        Value::NULL => Sql::Null,
        Value::Int(i) => Sql::Int(i),
        Value::UInt(u) => Sql::Int(u as i64),
        Value::Bytes(b) => Sql::Text(String::from_utf8_lossy(&b).into_owned()),
        other => Sql::Text(format!("{other:?}")),
    }
}

fn to_value(s: &Sql) -> Value {
    match s {
        Sql::Null => Value::NULL,
        Sql::Int(i) => Value::Int(*i),
        Sql::Text(t) => Value::Bytes(t.clone().into_bytes()),
    }
}

/// The state of record, read from its tables (inside the caller's transaction).
pub async fn load_state(
    db: &Db,
    conn: &mut impl Queryable,
    next_id: u64,
) -> Result<State, ApiError> {
    let mut read: BTreeMap<&'static str, Vec<Vec<Sql>>> = BTreeMap::new();
    for t in TABLES.iter() {
        let sql = format!("SELECT {} FROM {}", t.columns.join(", "), t.name);
        let rows: Vec<mysql_async::Row> = db.timed(conn.query(sql)).await?;
        read.insert(
            t.name,
            rows.into_iter()
                .map(|r| {
                    r.unwrap_raw()
                        .into_iter()
                        .map(|v| v.map_or(Sql::Null, to_sql))
                        .collect()
                })
                .collect(),
        );
    }
    tables::state_from(&tables::rows_of_tables(read), next_id)
        .map_err(|e| ApiError::internal(format!("the configuration tables do not read back: {e}")))
}

/// Writes the rows that changed between two states.
pub async fn store_changes(
    db: &Db,
    conn: &mut impl Queryable,
    old: &Rows,
    new: &Rows,
) -> Result<usize, ApiError> {
    let changes = tables::changes(old, new);
    for c in &changes {
        let (sql, params): (String, Vec<Value>) = match c {
            Change::Insert(t, row) => (
                format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    t.name,
                    t.columns.join(", "),
                    vec!["?"; t.columns.len()].join(", ")
                ),
                row.iter().map(to_value).collect(),
            ),
            Change::Update(t, row) => {
                let set: Vec<String> = t.columns[t.key..]
                    .iter()
                    .map(|c| format!("{c} = ?"))
                    .collect();
                let key: Vec<String> = t.columns[..t.key]
                    .iter()
                    .map(|c| format!("{c} = ?"))
                    .collect();
                let mut params: Vec<Value> = row[t.key..].iter().map(to_value).collect();
                params.extend(row[..t.key].iter().map(to_value));
                (
                    format!(
                        "UPDATE {} SET {} WHERE {}",
                        t.name,
                        set.join(", "),
                        key.join(" AND ")
                    ),
                    params,
                )
            }
            Change::Delete(t, key) => {
                let cond: Vec<String> = t.columns[..t.key]
                    .iter()
                    .map(|c| format!("{c} = ?"))
                    .collect();
                (
                    format!("DELETE FROM {} WHERE {}", t.name, cond.join(" AND ")),
                    key.iter().map(to_value).collect(),
                )
            }
        };
        db.timed(conn.exec_drop(sql, params)).await?;
    }
    Ok(changes.len())
}

/// Read-committed: a write sees every write committed before it took the head's lock.
pub fn write_tx() -> TxOpts {
    let mut o = TxOpts::default();
    o.with_isolation_level(mysql_async::IsolationLevel::ReadCommitted);
    o
}

/// One snapshot for every table a read uses.
pub fn read_tx() -> TxOpts {
    let mut o = TxOpts::default();
    o.with_consistent_snapshot(true)
        .with_isolation_level(mysql_async::IsolationLevel::RepeatableRead)
        .with_readonly(Some(true));
    o
}

/// An audit row.
pub struct Audit<'a> {
    pub at: i64,
    pub actor: &'a str,
    pub role: Option<&'a str>,
    pub action: &'a str,
    pub resource: &'a str,
    pub version: Option<u64>,
    pub ip: &'a str,
    pub details: Option<serde_json::Value>,
}

pub async fn insert_audit(
    db: &Db,
    conn: &mut impl Queryable,
    a: Audit<'_>,
) -> Result<(), ApiError> {
    db.timed(conn.exec_drop(
        "INSERT INTO audit_logs (at, actor, role, action, resource, version, ip, details)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            a.at,
            // a failed login's actor is whatever name was sent
            truncate(a.actor, 255),
            a.role,
            a.action,
            truncate(a.resource, 512),
            a.version,
            a.ip,
            a.details.map(|d| d.to_string()),
        ),
    ))
    .await
}

/// At most `n` characters.
pub fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
