//! The Redis configuration source: a task on each worker's runtime that keeps the worker on
//! the published snapshot.
//!
//! Keys (`<prefix>` from `ai_gateway_redis ... prefix=`):
//! - `<prefix>:cfg:head`: `{"version": N, "sha256": "<hex>", "epoch": "<e>"}`, the current
//!   snapshot;
//! - `<prefix>:cfg:snap:<N>`: snapshot N, in the `ai_gateway_config` JSON format;
//! - `<prefix>:cfg:notify`: a pub/sub channel; any message means "read the head";
//! - `<prefix>:node:<node>:<worker>`: this worker's status (JSON, with a TTL), and
//!   `<prefix>:nodes`, a sorted set of those names by last heartbeat (unix seconds). Each
//!   heartbeat first asks the nginx thread for the targets' health (read from the limit
//!   zone there: this task never touches nginx memory).
//!
//! The task subscribes **and** polls the head (pub/sub loses what is published while it is
//! disconnected), takes only what `head::verdict` takes, checks the sha256, builds the
//! snapshot with the parser `nginx -t` uses, hands it to nginx through the sink, then writes
//! the last-known-good file. Requests never wait for any of it: when Redis is unreachable
//! the worker keeps its snapshot and reconnects with a backoff.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, ConnectionAddr, ConnectionInfo};

use super::load;
use crate::core::routing::health::HealthView;
use crate::core::seal::SealKey;
use crate::core::snapshot::head::{check_document, lkg_encode, verdict, Head, Refused, Verdict};
use crate::core::snapshot::{Origin, Snapshot, Source};

/// `ai_gateway_redis`.
#[derive(Clone)]
pub struct RedisSettings {
    /// Holds the password: never logged (see [`RedisSettings::address`]).
    pub info: ConnectionInfo,
    pub prefix: String,
    /// Bound of every command and of connecting.
    pub timeout: Duration,
}

impl RedisSettings {
    /// `host:port` (or the socket path), for messages.
    pub fn address(&self) -> String {
        match &self.info.addr {
            ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
            ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
            ConnectionAddr::Unix(path) => path.display().to_string(),
        }
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }
}

/// `ai_gateway_config_source redis ...`.
#[derive(Clone)]
pub struct SourceSettings {
    pub poll: Duration,
    pub heartbeat: Duration,
    pub lkg: Option<PathBuf>,
    /// This node's name in the status keys.
    pub node: String,
    /// Directory relative credential files are read from.
    pub config_dir: PathBuf,
    /// The node's keys (`ai_gateway_secret_key`): sealed credentials are opened with them.
    pub seal_keys: Vec<SealKey>,
}

/// Severity of a message for nginx's error log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Notice,
    Warn,
    Error,
}

/// Why a sync step failed (the `reason` label of `gateway_config_sync_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncError {
    Unreachable,
    BadHead,
    MissingSnapshot,
    Sha256,
    Invalid,
    Conflict,
    LkgWrite,
}

impl SyncError {
    pub const ALL: [SyncError; 7] = [
        SyncError::Unreachable,
        SyncError::BadHead,
        SyncError::MissingSnapshot,
        SyncError::Sha256,
        SyncError::Invalid,
        SyncError::Conflict,
        SyncError::LkgWrite,
    ];

    pub const fn reason(self) -> &'static str {
        match self {
            SyncError::Unreachable => "unreachable",
            SyncError::BadHead => "bad_head",
            SyncError::MissingSnapshot => "missing_snapshot",
            SyncError::Sha256 => "sha256",
            SyncError::Invalid => "invalid",
            SyncError::Conflict => "conflict",
            SyncError::LkgWrite => "lkg_write",
        }
    }

    pub fn index(self) -> usize {
        SyncError::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

/// What the worker's nginx side does with the task's results (each call posts to the nginx
/// thread).
pub trait Sink: Send + Sync + 'static {
    /// Serve `snapshot` from now on. `Err` when it does not fit this nginx configuration
    /// (checked on the nginx thread); the task then refuses it.
    fn apply(&self, snapshot: Arc<Snapshot>) -> tokio::sync::oneshot::Receiver<Result<(), String>>;
    fn log(&self, level: Level, message: String);
    fn error(&self, error: SyncError);
    /// The worker found itself on the published snapshot at `unix_ms`.
    fn success(&self, unix_ms: u64);
    /// The health of the served snapshot's targets, read on the nginx thread.
    fn targets(&self) -> tokio::sync::oneshot::Receiver<HealthView>;
}

/// How long a heartbeat waits for the nginx thread's reading of the targets' health (then
/// it reports the one before, whose `targets_at_ms` says how old it is).
const TARGETS_WAIT: Duration = Duration::from_secs(1);

/// The worker's view of its sync, read by `/metrics` and the status handler.
#[derive(Clone, Debug, Default)]
pub struct SyncStatus {
    pub applied: Option<Origin>,
    /// Unix ms of the last apply.
    pub applied_at_ms: u64,
    /// Unix ms of the last head read that left the worker current.
    pub last_success_ms: u64,
    /// The last error: reason, message, unix ms.
    pub last_error: Option<(SyncError, String, u64)>,
    /// The last head read.
    pub head: Option<Head>,
    /// Since when (unix ms) the head names a snapshot the worker does not serve.
    pub behind_since_ms: Option<u64>,
    pub connected: bool,
    /// The targets' health, as the last heartbeat read it.
    pub targets: HealthView,
}

/// The shared part: status, and the connection the status handler reads the head with.
#[derive(Default)]
pub struct Shared {
    pub status: Mutex<SyncStatus>,
    pub conn: Mutex<Option<MultiplexedConnection>>,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Task {
    redis: RedisSettings,
    source: SourceSettings,
    shared: Arc<Shared>,
    sink: Arc<dyn Sink>,
    worker: usize,
    current: Origin,
    refused: Refused,
}

/// Runs the source for this worker until the runtime stops. `current` is the origin of the
/// snapshot the worker started with.
pub async fn run(
    redis: RedisSettings,
    source: SourceSettings,
    worker: usize,
    current: Origin,
    shared: Arc<Shared>,
    sink: Arc<dyn Sink>,
) {
    if let Ok(mut s) = shared.status.lock() {
        s.applied = Some(current.clone());
    }
    let mut task = Task {
        redis,
        source,
        shared,
        sink,
        worker,
        current,
        refused: Refused::default(),
    };
    let mut backoff = Duration::from_millis(100);
    let mut down = false;
    let mut last_logged: Option<String> = None;
    loop {
        let started = std::time::Instant::now();
        let err = task.session(&mut down).await;
        task.set_connected(false);
        if let Ok(mut c) = task.shared.conn.lock() {
            *c = None;
        }
        task.failed(
            SyncError::Unreachable,
            format!("Redis {}: {err}", task.redis.address()),
        );
        if !down || last_logged.as_deref() != Some(err.as_str()) {
            down = true;
            last_logged = Some(err.clone());
            task.sink.log(
                Level::Warn,
                format!(
                    "Redis {} unreachable ({err}): serving snapshot {} until it is back",
                    task.redis.address(),
                    describe(&task.current)
                ),
            );
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn describe(o: &Origin) -> String {
    match o.source {
        Source::File => "from the config file".to_string(),
        s => format!("{} ({})", o.version, s.as_str()),
    }
}

async fn timed<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

impl Task {
    /// One connection's life: returns why it ended.
    async fn session(&mut self, down: &mut bool) -> String {
        let t = self.redis.timeout;
        let client = match redis::Client::open(self.redis.info.clone()) {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        let mut conn = match timed(t, client.get_multiplexed_async_connection()).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut pubsub = match timed(t, client.get_async_pubsub()).await {
            Ok(p) => p,
            Err(e) => return e,
        };
        if let Err(e) = timed(t, pubsub.subscribe(self.redis.key("cfg:notify"))).await {
            return e;
        }
        if let Ok(mut c) = self.shared.conn.lock() {
            *c = Some(conn.clone());
        }
        self.set_connected(true);
        if let Err(e) = self.check(&mut conn).await {
            return e;
        }
        if let Err(e) = self.heartbeat(&mut conn).await {
            return e;
        }
        // back only once it answered what the worker asks (a user without the rights
        // connects, then fails: that stays one warning, not one per retry)
        if *down {
            *down = false;
            self.sink.log(
                Level::Notice,
                format!("Redis {} reachable again", self.redis.address()),
            );
        }
        let mut messages = pubsub.on_message();
        let mut poll = tokio::time::interval(self.source.poll);
        let mut beat = tokio::time::interval(self.source.heartbeat);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        beat.tick().await;
        loop {
            let step = tokio::select! {
                m = messages.next() => match m {
                    Some(_) => self.check(&mut conn).await,
                    None => Err("the pub/sub connection closed".to_string()),
                },
                _ = poll.tick() => self.check(&mut conn).await,
                _ = beat.tick() => self.heartbeat(&mut conn).await,
            };
            if let Err(e) = step {
                return e;
            }
        }
    }

    fn set_connected(&self, up: bool) {
        if let Ok(mut s) = self.shared.status.lock() {
            s.connected = up;
        }
    }

    /// Records an error (counted; logged by the caller where it should be).
    fn failed(&self, error: SyncError, message: String) {
        self.sink.error(error);
        if let Ok(mut s) = self.shared.status.lock() {
            s.last_error = Some((error, message, unix_ms()));
        }
    }

    /// Refuses the snapshot `head` names: logged and counted once per head.
    fn refuse(&mut self, head: &Head, error: SyncError, message: String) {
        self.behind(head);
        if self.refused.first(head) {
            self.sink.log(
                Level::Error,
                format!(
                    "refused snapshot {} (epoch \"{}\"): {message}; still serving {}",
                    head.version,
                    head.epoch,
                    describe(&self.current)
                ),
            );
            self.failed(error, message);
        }
    }

    fn behind(&self, head: &Head) {
        if let Ok(mut s) = self.shared.status.lock() {
            s.head = Some(head.clone());
            s.behind_since_ms.get_or_insert_with(unix_ms);
        }
    }

    fn current_now(&self, head: Option<&Head>) {
        let now = unix_ms();
        if let Ok(mut s) = self.shared.status.lock() {
            s.head = head.cloned();
            s.behind_since_ms = None;
            s.last_success_ms = now;
        }
        self.sink.success(now);
    }

    /// Reads the head and applies what it names. `Err` only when Redis failed.
    async fn check(&mut self, conn: &mut MultiplexedConnection) -> Result<(), String> {
        let t = self.redis.timeout;
        let raw: Option<Vec<u8>> = timed(t, conn.get(self.redis.key("cfg:head"))).await?;
        let Some(raw) = raw else {
            // nothing published yet: the worker serves what it has
            self.current_now(None);
            return Ok(());
        };
        let head = match Head::parse(&raw) {
            Ok(h) => h,
            Err(e) => {
                let h = Head {
                    version: 0,
                    sha256: crate::core::snapshot::sha256_hex(&raw),
                    epoch: String::new(),
                };
                self.refuse(&h, SyncError::BadHead, e);
                return Ok(());
            }
        };
        match verdict(&self.current, &head) {
            Verdict::Current | Verdict::Older => {
                self.current_now(Some(&head));
                return Ok(());
            }
            Verdict::Conflict => {
                let msg = format!(
                    "version {} is published with sha256 {}, this node applied it with {}",
                    head.version, head.sha256, self.current.sha256
                );
                self.refuse(&head, SyncError::Conflict, msg);
                return Ok(());
            }
            Verdict::Take if self.refused.is(&head) => {
                self.behind(&head);
                return Ok(());
            }
            Verdict::Take => {}
        }
        self.behind(&head);
        let key = self.redis.key(&format!("cfg:snap:{}", head.version));
        let doc: Option<Vec<u8>> = timed(t, conn.get(&key)).await?;
        let Some(doc) = doc else {
            self.refuse(
                &head,
                SyncError::MissingSnapshot,
                format!("{key} does not exist"),
            );
            return Ok(());
        };
        if let Err(e) = check_document(&head, &doc) {
            self.refuse(&head, SyncError::Sha256, e);
            return Ok(());
        }
        let dir = self.source.config_dir.clone();
        let keys = self.source.seal_keys.clone();
        let (version, epoch) = (head.version, head.epoch.clone());
        // parsing, DNS and credential files: blocking work, off the runtime's thread
        let built = tokio::task::spawn_blocking(move || {
            let s = load::snapshot(&doc, Source::Redis, version, &epoch, &dir, &keys);
            (s, doc)
        })
        .await;
        let (snapshot, doc) = match built {
            Ok((Ok(s), doc)) => (s, doc),
            Ok((Err(e), _)) => {
                self.refuse(&head, SyncError::Invalid, e);
                return Ok(());
            }
            Err(e) => {
                self.refuse(&head, SyncError::Invalid, format!("loading failed: {e}"));
                return Ok(());
            }
        };
        let origin = snapshot.origin.clone();
        let reply = self.sink.apply(Arc::new(snapshot));
        let fits = match tokio::time::timeout(Duration::from_secs(10), reply).await {
            Ok(Ok(r)) => r,
            _ => Err("the worker did not take it".to_string()),
        };
        if let Err(e) = fits {
            self.refuse(&head, SyncError::Invalid, e);
            return Ok(());
        }
        self.current = origin.clone();
        if let Ok(mut s) = self.shared.status.lock() {
            s.applied = Some(origin);
            s.applied_at_ms = unix_ms();
        }
        self.current_now(Some(&head));
        self.write_lkg(&head, doc).await;
        self.heartbeat(conn).await
    }

    /// Writes the last-known-good file: a temporary file, fsync, rename (atomic: a crash
    /// leaves the old file or the new one).
    async fn write_lkg(&mut self, head: &Head, doc: Vec<u8>) {
        let Some(path) = self.source.lkg.clone() else {
            return;
        };
        let bytes = lkg_encode(head, &doc);
        let worker = self.worker;
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes, worker))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = written {
            let msg = format!("cannot write the last-known-good file: {e}");
            self.sink.log(Level::Error, msg.clone());
            self.failed(SyncError::LkgWrite, msg);
        }
    }

    /// Refreshes the targets' health in the status from the nginx thread.
    async fn read_targets(&self) {
        let reply = self.sink.targets();
        if let Ok(Ok(view)) = tokio::time::timeout(TARGETS_WAIT, reply).await {
            if let Ok(mut s) = self.shared.status.lock() {
                s.targets = view;
            }
        }
    }

    /// This worker's status in Redis, with a TTL of three heartbeats.
    async fn heartbeat(&mut self, conn: &mut MultiplexedConnection) -> Result<(), String> {
        self.read_targets().await;
        let status = self
            .shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let name = format!("{}:{}", self.source.node, self.worker);
        let body = status_json(&self.source.node, self.worker, &status).to_string();
        let ttl = (self.source.heartbeat.as_secs() * 3).max(3);
        let now = unix_ms() / 1000;
        let t = self.redis.timeout;
        let key = self.redis.key(&format!("node:{name}"));
        timed(t, conn.set_ex::<_, _, ()>(key, body, ttl)).await?;
        // the index of live workers: stale members are dropped, and it expires with the
        // last heartbeat, so stopped nodes leave nothing behind
        let nodes = self.redis.key("nodes");
        let mut pipe = redis::pipe();
        pipe.zadd(&nodes, name, now)
            .ignore()
            .zrembyscore(&nodes, "-inf", now.saturating_sub(ttl) as i64)
            .ignore()
            .expire(&nodes, ttl as i64)
            .ignore();
        timed(t, pipe.query_async::<()>(conn)).await?;
        Ok(())
    }
}

/// A worker's status as JSON (the heartbeat and the status handler).
pub fn status_json(node: &str, worker: usize, s: &SyncStatus) -> serde_json::Value {
    use serde_json::json;
    let applied = s.applied.as_ref().map(|o| {
        json!({
            "version": o.version,
            "epoch": o.epoch,
            "sha256": o.sha256,
            "source": o.source.as_str(),
        })
    });
    json!({
        "node": node,
        "worker": worker,
        "pid": std::process::id(),
        "applied": applied,
        "applied_at_ms": s.applied_at_ms,
        "last_success_ms": s.last_success_ms,
        "connected": s.connected,
        "behind_since_ms": s.behind_since_ms,
        "head": s.head.as_ref().map(|h| json!({"version": h.version, "epoch": h.epoch, "sha256": h.sha256})),
        "last_error": s.last_error.as_ref().map(|(e, m, at)| json!({"reason": e.reason(), "message": m, "at_ms": at})),
        "targets": s.targets.targets_json(),
        "targets_at_ms": s.targets.at_ms,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8], worker: usize) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.{worker}.tmp", std::process::id()));
    let result = (|| {
        // the snapshot may hold provider keys: readable by the worker user only
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // the rename itself is durable once the directory is
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("aigw-lkg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lkg.json");
        write_atomically(&path, b"one", 0).unwrap();
        write_atomically(&path, b"two", 1).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file may hold provider keys");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let err = write_atomically(&dir.join("no/such/dir/f"), b"x", 0).unwrap_err();
        assert!(err.contains("no/such/dir/f"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sync_error_reasons_are_distinct() {
        let mut r: Vec<_> = SyncError::ALL.iter().map(|e| e.reason()).collect();
        r.sort();
        r.dedup();
        assert_eq!(r.len(), SyncError::ALL.len());
        assert_eq!(SyncError::LkgWrite.index(), 6);
    }
}
