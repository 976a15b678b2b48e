//! The Redis side of usage logs: the stream every node appends its batches to (one entry a
//! batch, bounded in records by a counter kept with it), read and acknowledged by the one
//! ingestor, and the ingestor's lease. Keys: `<prefix>:{log}:stream`, `<prefix>:{log}:records`
//! and `<prefix>:{log}:ingestor` (one hash tag: the scripts touch them together).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Script, Value};

use crate::runtime::redis_source::RedisSettings;

/// Appends a batch unless the stream would hold more than the most records allowed.
const SHIP: &str = r"
local have = tonumber(redis.call('GET', KEYS[2]) or '0')
if have > 0 and redis.call('XLEN', KEYS[1]) == 0 then
  have = 0
  redis.call('SET', KEYS[2], 0)
end
local n = tonumber(ARGV[1])
if have > 0 and have + n > tonumber(ARGV[2]) then
  return 0
end
redis.call('XADD', KEYS[1], '*', 'n', ARGV[1], 'node', ARGV[3], 'b', ARGV[4])
redis.call('INCRBY', KEYS[2], n)
return 1
";

/// Deletes ingested entries and takes their records off the counter.
const ACK: &str = r"
local n = 0
for _, id in ipairs(ARGV) do
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if e[1] then
    local f = e[1][2]
    for j = 1, #f, 2 do
      if f[j] == 'n' then n = n + (tonumber(f[j + 1]) or 0) end
    end
    redis.call('XDEL', KEYS[1], id)
  end
end
if n > 0 and redis.call('DECRBY', KEYS[2], n) < 0 then
  redis.call('SET', KEYS[2], 0)
end
return n
";

/// Takes or keeps the lease: 1 when the caller holds it for the next ARGV[2] ms.
const LEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A stream entry: a batch of record lines.
pub struct Entry {
    pub id: String,
    pub bytes: Vec<u8>,
}

impl Entry {
    /// When the entry was added (unix ms, from its id).
    pub fn added_ms(&self) -> u64 {
        self.id
            .split('-')
            .next()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0)
    }
}

pub struct Stream {
    redis: RedisSettings,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    keys: [String; 3],
    ship: Script,
    ack: Script,
    lease: Script,
    release: Script,
}

fn text(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

impl Stream {
    pub fn new(redis: RedisSettings) -> Stream {
        let keys = ["stream", "records", "ingestor"].map(|k| redis.key(&format!("{{log}}:{k}")));
        Stream {
            redis,
            conn: tokio::sync::Mutex::new(None),
            keys,
            ship: Script::new(SHIP),
            ack: Script::new(ACK),
            lease: Script::new(LEASE),
            release: Script::new(RELEASE),
        }
    }

    fn limit(&self) -> Duration {
        self.redis.timeout
    }

    async fn link(&self) -> Result<MultiplexedConnection, String> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client = redis::Client::open(self.redis.info.clone()).map_err(|e| e.to_string())?;
        let made = tokio::time::timeout(self.limit(), client.get_multiplexed_async_connection())
            .await
            .map_err(|_| format!("Redis {} did not answer in time", self.redis.address()))?
            .map_err(|e| e.to_string())?;
        *slot = Some(made.clone());
        Ok(made)
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
        limit: Duration,
    ) -> Result<T, String> {
        let mut conn = self.link().await?;
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let out = tokio::time::timeout(limit, inv.invoke_async::<T>(&mut conn)).await;
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *self.conn.lock().await = None;
                Err(e.to_string())
            }
            Err(_) => {
                *self.conn.lock().await = None;
                Err(format!(
                    "Redis {} did not answer within {} ms",
                    self.redis.address(),
                    limit.as_millis()
                ))
            }
        }
    }

    /// Appends a batch of `records` lines; `Ok(false)`: the stream holds `max` records
    /// already.
    pub async fn ship(
        &self,
        node: &str,
        records: u32,
        lines: &[u8],
        max: u64,
    ) -> Result<bool, String> {
        // a large batch takes longer to send than a small command
        let limit = self.limit() + Duration::from_millis(lines.len() as u64 / 10_000);
        let n = records.to_string();
        let max = max.to_string();
        let shipped: i64 = self
            .call(
                &self.ship,
                &[&self.keys[0], &self.keys[1]],
                &[n.as_bytes(), max.as_bytes(), node.as_bytes(), lines],
                limit,
            )
            .await?;
        Ok(shipped == 1)
    }

    /// The oldest `count` entries.
    pub async fn read(&self, count: usize) -> Result<Vec<Entry>, String> {
        let mut conn = self.link().await?;
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.keys[0])
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count);
        let limit = self.limit() * 4;
        let reply: Value = match tokio::time::timeout(limit, cmd.query_async(&mut conn)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                *self.conn.lock().await = None;
                return Err(e.to_string());
            }
            Err(_) => {
                *self.conn.lock().await = None;
                return Err("Redis did not answer XRANGE in time".into());
            }
        };
        let Value::Array(items) = reply else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Value::Array(parts) = item else { continue };
            let (Some(id), Some(Value::Array(fields))) =
                (parts.first().and_then(text), parts.get(1))
            else {
                continue;
            };
            let mut bytes = Vec::new();
            for pair in fields.chunks(2) {
                if let [k, v] = pair {
                    if text(k).as_deref() == Some(b"b") {
                        bytes = text(v).unwrap_or_default();
                    }
                }
            }
            out.push(Entry {
                id: String::from_utf8_lossy(&id).into_owned(),
                bytes,
            });
        }
        Ok(out)
    }

    /// Deletes entries once their records are in MySQL.
    pub async fn ack(&self, ids: &[String]) -> Result<u64, String> {
        let args: Vec<&[u8]> = ids.iter().map(|i| i.as_bytes()).collect();
        let n: i64 = self
            .call(
                &self.ack,
                &[&self.keys[0], &self.keys[1]],
                &args,
                self.limit(),
            )
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Takes or keeps the ingestor lease for `ms`.
    pub async fn lease(&self, me: &str, ms: u64) -> Result<bool, String> {
        let ms = ms.to_string();
        let held: i64 = self
            .call(
                &self.lease,
                &[&self.keys[2]],
                &[me.as_bytes(), ms.as_bytes()],
                self.limit(),
            )
            .await?;
        Ok(held == 1)
    }

    /// Gives the lease up (a node that stops).
    pub async fn release(&self, me: &str) -> Result<(), String> {
        let _: i64 = self
            .call(
                &self.release,
                &[&self.keys[2]],
                &[me.as_bytes()],
                self.limit(),
            )
            .await?;
        Ok(())
    }
}
