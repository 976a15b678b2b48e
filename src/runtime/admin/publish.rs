//! The config center's side of the Redis source: publishing a revision (snapshot, head,
//! notification, in one script that never moves the head back), the reconciler that
//! republishes when Redis is behind MySQL (a crash between commit and publish, Redis
//! restarted empty), the nodes' heartbeats, and waiting until every live node applied a
//! version.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::core::admin::clock::format_ms;
use crate::core::snapshot::head::Head;
use crate::runtime::redis_source::RedisSettings;

/// Snapshots kept in Redis behind the head.
const KEEP: u64 = 20;

/// Sets snapshot V and the head unless the head already names a later version of the same
/// epoch, or V with its snapshot there; notifies the nodes. Returns 1 when it published, 0 when Redis was
/// already there.
const SCRIPT: &str = r#"
local head_key, snap_key, channel = KEYS[1], KEYS[2], KEYS[3]
local v, sha, epoch, doc, old_key = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local cur = redis.call('GET', head_key)
if cur then
  local ok, h = pcall(cjson.decode, cur)
  if ok and type(h) == 'table' and h.epoch == epoch and type(h.version) == 'number' then
    if h.version > v then return 0 end
    if h.version == v and redis.call('EXISTS', snap_key) == 1 then return 0 end
  end
end
redis.call('SET', snap_key, doc)
local head = cjson.encode({version = v, sha256 = sha, epoch = epoch})
redis.call('SET', head_key, head)
redis.call('PUBLISH', channel, head)
if old_key ~= '' then redis.call('DEL', old_key) end
return 1
"#;

pub struct Publisher {
    pub redis: RedisSettings,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl Publisher {
    pub fn new(redis: RedisSettings) -> Publisher {
        Publisher {
            redis,
            conn: Mutex::new(None),
        }
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.redis.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "Redis {} did not answer within {} ms",
                self.redis.address(),
                self.redis.timeout.as_millis()
            )),
        }
    }

    /// The connection (made again after a failure).
    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client = redis::Client::open(self.redis.info.clone()).map_err(|e| e.to_string())?;
        let c = self
            .timed(client.get_multiplexed_async_connection())
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget(&self) {
        *self.conn.lock().await = None;
    }

    async fn run<T>(
        &self,
        f: impl FnOnce(
            MultiplexedConnection,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = redis::RedisResult<T>> + Send>,
        >,
    ) -> Result<T, String> {
        let conn = self.connection().await?;
        let out = self.timed(f(conn)).await;
        if out.is_err() {
            self.forget().await;
        }
        out
    }

    /// Publishes `document` as version `version` of `epoch`. `Ok(false)`: Redis already
    /// had it (or a later one).
    pub async fn publish(
        &self,
        version: u64,
        epoch: &str,
        sha256: &str,
        document: &[u8],
    ) -> Result<bool, String> {
        let keys = [
            self.redis.key("cfg:head"),
            self.redis.key(&format!("cfg:snap:{version}")),
            self.redis.key("cfg:notify"),
        ];
        let old = if version > KEEP {
            self.redis.key(&format!("cfg:snap:{}", version - KEEP))
        } else {
            String::new()
        };
        let args = (
            version,
            sha256.to_string(),
            epoch.to_string(),
            document.to_vec(),
            old,
        );
        let done: i64 = self
            .run(move |mut c| {
                Box::pin(async move {
                    redis::Script::new(SCRIPT)
                        .key(&keys[0])
                        .key(&keys[1])
                        .key(&keys[2])
                        .arg(args.0)
                        .arg(args.1)
                        .arg(args.2)
                        .arg(args.3)
                        .arg(args.4)
                        .invoke_async(&mut c)
                        .await
                })
            })
            .await?;
        Ok(done == 1)
    }

    /// The head published now.
    pub async fn head(&self) -> Result<Option<Head>, String> {
        let key = self.redis.key("cfg:head");
        let raw: Option<Vec<u8>> = self
            .run(move |mut c| Box::pin(async move { c.get(key).await }))
            .await?;
        match raw {
            None => Ok(None),
            Some(b) => Head::parse(&b).map(Some),
        }
    }

    /// Whether snapshot `version` is in Redis.
    pub async fn has_snapshot(&self, version: u64) -> Result<bool, String> {
        let key = self.redis.key(&format!("cfg:snap:{version}"));
        self.run(move |mut c| Box::pin(async move { c.exists(key).await }))
            .await
    }

    /// Every live worker's heartbeat (`<node>:<worker>` -> its status JSON).
    pub async fn workers(&self) -> Result<Vec<(String, Value)>, String> {
        let index = self.redis.key("nodes");
        let names: Vec<String> = self
            .run(move |mut c| Box::pin(async move { c.zrange(index, 0, -1).await }))
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names
            .iter()
            .map(|n| self.redis.key(&format!("node:{n}")))
            .collect();
        let values: Vec<Option<String>> = self
            .run(move |mut c| {
                Box::pin(async move {
                    let mut p = redis::pipe();
                    for k in &keys {
                        p.get(k);
                    }
                    p.query_async(&mut c).await
                })
            })
            .await?;
        Ok(names
            .into_iter()
            .zip(values)
            .filter_map(|(n, v)| Some((n, serde_json::from_str(&v?).ok()?)))
            .collect())
    }
}

/// Whether a worker's status says it applied `version` of `epoch` (or later).
pub fn applied(status: &Value, version: u64, epoch: &str) -> bool {
    let a = &status["applied"];
    a["epoch"].as_str() == Some(epoch) && a["version"].as_u64().is_some_and(|v| v >= version)
}

/// The nodes, from the workers' heartbeats: each node's workers, the lowest version they
/// applied, whether all of them serve `current`, and its targets' health as its newest
/// reading has it (the node's workers share one limit zone).
pub fn nodes_view(workers: &[(String, Value)], current: Option<(u64, &str)>) -> Value {
    let mut nodes: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for (name, st) in workers {
        let node = st["node"].as_str().map(str::to_string).unwrap_or_else(|| {
            name.rsplit_once(':')
                .map_or(name.clone(), |(n, _)| n.to_string())
        });
        nodes.entry(node).or_default().push(st.clone());
    }
    let items: Vec<Value> = nodes
        .into_iter()
        .map(|(node, ws)| {
            let lowest = ws
                .iter()
                .filter_map(|w| w["applied"]["version"].as_u64())
                .min();
            let all_current = current.map(|(v, e)| ws.iter().all(|w| applied(w, v, e)));
            let last = ws
                .iter()
                .filter_map(|w| w["last_success_ms"].as_u64())
                .max();
            let newest = ws
                .iter()
                .filter(|w| w["targets_at_ms"].as_u64().is_some_and(|ms| ms > 0))
                .max_by_key(|w| w["targets_at_ms"].as_u64());
            json!({
                "node": node,
                "applied_version": lowest,
                "current": all_current,
                "last_success_at": last.map(|ms| format_ms(ms as i64)),
                "targets": newest.map_or(Value::Null, |w| w["targets"].clone()),
                "targets_at": newest.and_then(|w| w["targets_at_ms"].as_u64()).map(|ms| format_ms(ms as i64)),
                "workers": ws,
            })
        })
        .collect();
    Value::from(items)
}

/// What waiting for a version found.
pub struct Propagation {
    pub complete: bool,
    pub applied: Vec<String>,
    /// Workers that had not applied it, with what they serve.
    pub pending: Vec<Value>,
    pub waited_ms: u64,
}

impl Propagation {
    pub fn to_json(&self) -> Value {
        json!({
            "complete": self.complete,
            "applied": self.applied,
            "pending": self.pending,
            "waited_ms": self.waited_ms,
        })
    }
}

/// Waits until every live worker reports `version` of `epoch`, at most `limit`.
pub async fn wait_applied(
    p: &Publisher,
    version: u64,
    epoch: &str,
    limit: Duration,
) -> Propagation {
    let start = Instant::now();
    loop {
        let workers = p.workers().await.unwrap_or_default();
        let (done, pending): (Vec<_>, Vec<_>) = workers
            .iter()
            .partition(|(_, st)| applied(st, version, epoch));
        let elapsed = start.elapsed();
        if pending.is_empty() || elapsed >= limit {
            return Propagation {
                complete: pending.is_empty(),
                applied: done.iter().map(|(n, _)| n.clone()).collect(),
                pending: pending
                    .iter()
                    .map(|(n, st)| {
                        json!({"worker": n, "applied": st["applied"], "last_error": st["last_error"]})
                    })
                    .collect(),
                waited_ms: elapsed.as_millis() as u64,
            };
        }
        tokio::time::sleep(Duration::from_millis(10).min(limit - elapsed)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(node: &str, version: u64, targets_at_ms: Option<u64>, targets: Value) -> Value {
        let mut w = json!({"node": node, "applied": {"version": version, "epoch": "e"},
                           "last_success_ms": 1_000});
        if let Some(ms) = targets_at_ms {
            w["targets_at_ms"] = json!(ms);
            w["targets"] = targets;
        }
        w
    }

    #[test]
    fn a_node_shows_its_newest_reading_of_the_targets() {
        let cooling = json!([{"target": "a", "state": "cooling", "failures": 0,
                              "cooling_until": "2026-12-07T00:00:30Z"}]);
        let healthy = json!([{"target": "a", "state": "healthy", "failures": 0,
                              "cooling_until": null}]);
        let workers = vec![
            (
                "n1:0".to_string(),
                worker("n1", 3, Some(1_796_601_601_000), healthy.clone()),
            ),
            (
                "n1:1".to_string(),
                worker("n1", 3, Some(1_796_601_602_000), cooling.clone()),
            ),
            // a worker that never read them (or an older module): not the newest
            ("n1:2".to_string(), worker("n1", 2, None, Value::Null)),
            ("n2:0".to_string(), worker("n2", 3, Some(0), Value::Null)),
        ];
        let v = nodes_view(&workers, Some((3, "e")));
        assert_eq!(v[0]["node"], "n1");
        assert_eq!(v[0]["targets"], cooling);
        assert_eq!(v[0]["targets_at"], "2026-12-07T00:00:02Z");
        assert_eq!(v[0]["applied_version"], 2);
        assert_eq!(v[0]["current"], false);
        assert_eq!(v[0]["workers"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            v[0]["workers"][1]["targets"], cooling,
            "heartbeats pass through"
        );
        assert_eq!(v[1]["node"], "n2");
        assert_eq!(v[1]["targets"], Value::Null);
        assert_eq!(v[1]["targets_at"], Value::Null);
        assert_eq!(v[1]["current"], true);
    }
}
