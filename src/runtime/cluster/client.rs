//! The worker's Redis client for cluster limits: one multiplexed connection (made again
//! after any failure), every call bounded by the node's `timeout`, the circuit breaker fed
//! by every outcome, and a tick task that probes an open breaker, renews the leases of
//! requests still running and sends what waited for Redis to come back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{ConnectionInfo, Script, ScriptInvocation, Value};

use super::hold::{Hold, Keeper, Pending};
use super::reply;
use super::{Op, Outcome, Report};
use crate::core::cluster::approx_keys;
use crate::core::cluster::ask::{takes_of, Ask, Reply};
use crate::core::cluster::breaker::{Breaker, Change, Gate};
use crate::core::cluster::Node;
use crate::core::policy::approx::{SyncAnswer, SyncItem};

static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Sets (or clears) the worker's client.
pub fn install(client: Option<Arc<Client>>) {
    if let Ok(mut c) = CLIENT.lock() {
        *c = client;
    }
}

/// The worker's client, when cluster limits are configured and the runtime runs.
pub fn installed() -> Option<Arc<Client>> {
    CLIENT.lock().ok().and_then(|c| c.clone())
}

/// Why a call brought nothing back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Error(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("no answer in time"),
            Failure::Error(e) => f.write_str(e),
        }
    }
}

/// The result of a request's admission call, delivered to the parked request.
pub struct Admitted {
    pub reply: Result<Reply, Failure>,
    /// What the request took (given back when dropped unless kept).
    pub hold: Option<Hold>,
}

/// Pending work is bounded: beyond this, the oldest is dropped (counters then age out).
const PENDING_MAX: usize = 100_000;

pub struct Client {
    info: ConnectionInfo,
    pub node: Node,
    conn: Mutex<Option<MultiplexedConnection>>,
    breaker: Mutex<Breaker>,
    /// Leases of requests still running: hold id → (leases keys, member).
    leases: Mutex<HashMap<u64, (Vec<String>, String)>>,
    pending: Mutex<Vec<Pending>>,
    /// Settlements sent and not answered yet.
    sending: AtomicUsize,
    handle: Mutex<Option<tokio::runtime::Handle>>,
    report: Box<dyn Report>,
    /// Makes lease members unique across nodes and restarts.
    member_base: String,
    seq: AtomicU64,
    start: Instant,
    admit: Script,
    finish: Script,
    renew: Script,
    sync: Script,
}

impl Client {
    pub fn new(info: ConnectionInfo, node: Node, report: Box<dyn Report>) -> Arc<Client> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Arc::new(Client {
            info,
            breaker: Mutex::new(Breaker::new(node.breaker, node.probe_ms)),
            node,
            conn: Mutex::new(None),
            leases: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            sending: AtomicUsize::new(0),
            handle: Mutex::new(None),
            report,
            member_base: format!("{:x}.{:x}", std::process::id(), nanos),
            seq: AtomicU64::new(1),
            start: Instant::now(),
            admit: Script::new(include_str!("admit.lua")),
            finish: Script::new(include_str!("finish.lua")),
            renew: Script::new(include_str!("renew.lua")),
            sync: Script::new(include_str!("sync.lua")),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Whether a request may call Redis now (nginx thread, before parking).
    pub fn gate(&self) -> Gate {
        let now = self.now_ms();
        self.breaker.lock().map_or(Gate::Skip, |mut b| b.gate(now))
    }

    /// What a request refused because Redis is unreachable should wait, in seconds.
    pub fn retry_after_s(&self) -> u64 {
        let now = self.now_ms();
        self.breaker.lock().map_or(1, |b| b.retry_after_s(now))
    }

    fn breaker_open(&self) -> bool {
        self.breaker.lock().map_or(true, |b| b.is_open())
    }

    fn next_id(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A new lease member.
    fn member(&self) -> String {
        format!("{}.{:x}", self.member_base, self.next_id())
    }

    fn remember_handle(&self) {
        if let Ok(mut h) = self.handle.lock() {
            if h.is_none() {
                *h = tokio::runtime::Handle::try_current().ok();
            }
        }
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = self.conn.lock().ok().and_then(|c| c.clone()) {
            return Ok(c);
        }
        let client = redis::Client::open(self.info.clone())?;
        let c = client.get_multiplexed_async_connection().await?;
        if let Ok(mut slot) = self.conn.lock() {
            *slot = Some(c.clone());
        }
        Ok(c)
    }

    fn limit(&self) -> Duration {
        Duration::from_millis(self.node.timeout_ms.max(1))
    }

    /// A call's work, without a bound.
    async fn invoke(&self, inv: Option<&ScriptInvocation<'_>>) -> Result<Value, Failure> {
        let work = async {
            let mut c = self.connection().await?;
            match inv {
                Some(inv) => inv.invoke_async::<Value>(&mut c).await,
                None => redis::cmd("PING").query_async::<Value>(&mut c).await,
            }
        };
        work.await.map_err(|e| Failure::Error(e.to_string()))
    }

    /// One call (a script, or PING without one), bounded by the timeout; feeds the
    /// breaker and the metrics.
    async fn call(&self, op: Op, inv: Option<&ScriptInvocation<'_>>) -> Result<Value, Failure> {
        let t0 = Instant::now();
        let out = match tokio::time::timeout(self.limit(), self.invoke(inv)).await {
            Ok(out) => out,
            Err(_) => Err(Failure::Timeout),
        };
        self.account(op, &out, t0);
        out
    }

    /// Feeds a call's outcome to the breaker and the metrics.
    fn account(&self, op: Op, out: &Result<Value, Failure>, t0: Instant) {
        let micros = t0.elapsed().as_micros() as u64;
        let (outcome, change) = match &out {
            Ok(_) => (
                Outcome::Ok,
                self.breaker
                    .lock()
                    .map_or(Change::None, |mut b| b.success()),
            ),
            Err(f) => {
                // a connection that failed or hangs is not used again
                if let Ok(mut c) = self.conn.lock() {
                    *c = None;
                }
                let now = self.now_ms();
                (
                    if *f == Failure::Timeout {
                        Outcome::Timeout
                    } else {
                        Outcome::Error
                    },
                    self.breaker
                        .lock()
                        .map_or(Change::None, |mut b| b.failure(now)),
                )
            }
        };
        super::STATS.record(op as usize, outcome as usize, micros);
        match (change, out) {
            (Change::Opened, Err(f)) => self.report.breaker(true, f.to_string()),
            (Change::Closed, _) => self.report.breaker(false, String::new()),
            _ => {}
        }
    }

    /// Asks Redis to admit a request (see `admit.lua`). The call runs in a task of its
    /// own: when it has not answered within the timeout the request goes on without it,
    /// and an admission that still comes later is given back (the script may well run
    /// once Redis wakes up).
    pub async fn admit(self: Arc<Self>, ask: Ask) -> Admitted {
        self.remember_handle();
        let t0 = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel::<Admitted>();
        let me = self.clone();
        tokio::spawn(async move {
            let member = me.member();
            let mut inv = me.admit.prepare_invoke();
            for c in &ask.counters {
                inv.key(&c.key);
            }
            inv.arg(&member).arg(me.node.lease_ms);
            for c in &ask.counters {
                let (kind, size) = c.kind.code();
                inv.arg(kind)
                    .arg(size)
                    .arg(c.limit)
                    .arg(c.amount)
                    .arg(u8::from(c.dry_run));
            }
            // a late answer is still worth having (to give it back), not forever
            let late = me.limit().saturating_mul(50).max(Duration::from_secs(10));
            let out = match tokio::time::timeout(late, me.invoke(Some(&inv))).await {
                Ok(out) => out,
                Err(_) => Err(Failure::Timeout),
            };
            drop(inv);
            let reply = match out {
                Ok(v) => reply::parse(&v, ask.counters.len())
                    .ok_or_else(|| Failure::Error("unexpected answer to the admit script".into())),
                Err(f) => Err(f),
            };
            let hold = match &reply {
                Ok(r) if r.refused == 0 => {
                    let keeper: Arc<dyn Keeper> = me.clone();
                    Some(Hold::new(keeper, member, takes_of(&ask, r)))
                }
                _ => None,
            };
            // nobody waits any more: the hold, never kept, gives everything back
            let _ = tx.send(Admitted { reply, hold });
        });
        let admitted = match tokio::time::timeout(self.limit(), rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => Admitted {
                reply: Err(Failure::Error("the admit call was dropped".into())),
                hold: None,
            },
            Err(_) => Admitted {
                reply: Err(Failure::Timeout),
                hold: None,
            },
        };
        let out = admitted
            .reply
            .as_ref()
            .map(|_| Value::Nil)
            .map_err(Clone::clone);
        self.account(Op::Admit, &out, t0);
        admitted
    }

    /// Sends `job` now, or keeps it for when Redis is back.
    fn send_job(self: &Arc<Self>, job: Pending) {
        let handle = self.handle.lock().ok().and_then(|h| h.clone());
        let Some(handle) = handle else {
            return;
        };
        if self.breaker_open() {
            self.keep(job);
            return;
        }
        let me = self.clone();
        self.sending.fetch_add(1, Ordering::AcqRel);
        handle.spawn(async move {
            if let Err(job) = me.run(job).await {
                me.keep(job);
            }
            me.sending.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Waits for the settlements sent, then sends what waits for Redis (a worker that exits:
    /// the requests it served give back what they took). The caller bounds the wait.
    pub async fn settle_all(&self) {
        while self.sending.load(Ordering::Acquire) != 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if !self.breaker_open() {
            self.flush().await;
        }
    }

    fn keep(&self, job: Pending) {
        if let Ok(mut p) = self.pending.lock() {
            if p.len() >= PENDING_MAX {
                p.remove(0);
            }
            p.push(job);
        }
    }

    /// Runs a settlement or a replay; gives it back when Redis did not take it.
    async fn run(&self, job: Pending) -> Result<(), Pending> {
        let Some(inv) = job.invocation(&self.finish, self.now_ms()) else {
            // aged out while it waited: nothing to send
            return Ok(());
        };
        let out = self.call(Op::Finish, Some(&inv)).await;
        drop(inv);
        out.map(|_| ()).map_err(|_| job)
    }

    /// Renews the leases of requests still running.
    async fn renew_all(&self) {
        let leases: Vec<(String, String)> = match self.leases.lock() {
            Ok(l) => l
                .values()
                .flat_map(|(keys, m)| keys.iter().map(move |k| (k.clone(), m.clone())))
                .collect(),
            Err(_) => return,
        };
        for chunk in leases.chunks(64) {
            let calls = chunk.iter().map(|(key, member)| async move {
                let mut inv = self.renew.prepare_invoke();
                inv.key(key).arg(member).arg(self.node.lease_ms);
                let _ = self.call(Op::Renew, Some(&inv)).await;
            });
            futures_util::future::join_all(calls).await;
        }
    }

    /// Sends what waited for Redis, oldest first, until a call fails.
    async fn flush(&self) {
        loop {
            let batch: Vec<Pending> = match self.pending.lock() {
                Ok(mut p) if !p.is_empty() => {
                    let n = p.len().min(256);
                    p.drain(..n).collect()
                }
                _ => return,
            };
            let mut failed = Vec::new();
            for job in batch {
                if failed.is_empty() {
                    if let Err(job) = self.run(job).await {
                        failed.push(job);
                    }
                } else {
                    failed.push(job);
                }
            }
            if !failed.is_empty() {
                if let Ok(mut p) = self.pending.lock() {
                    let rest = std::mem::take(&mut *p);
                    *p = failed;
                    p.extend(rest);
                }
                return;
            }
        }
    }

    /// Keeps the worker's cluster limits alive: runs until the runtime stops.
    pub async fn tick(self: Arc<Self>) {
        self.remember_handle();
        let step = Duration::from_millis((self.node.lease_ms / 3).clamp(50, 1000));
        let renew_every = Duration::from_millis((self.node.lease_ms / 3).max(50));
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(step).await;
            if self.gate() == Gate::Probe {
                let _ = self.call(Op::Probe, None).await;
            }
            if self.breaker_open() {
                continue;
            }
            if renewed.elapsed() >= renew_every {
                renewed = Instant::now();
                self.renew_all().await;
            }
            self.flush().await;
        }
    }

    /// Keeps what a request admitted without Redis (`fail_open`) took, to be added to the
    /// cluster counters when Redis is back (leases are not: they would only expire).
    pub fn replay(&self, ask: &Ask) {
        for c in &ask.counters {
            let id = format!("{}.r{:x}", self.member_base, self.next_id());
            if let Some(job) = Pending::replay(c.key.clone(), c.kind, c.amount, &id) {
                self.keep(job);
            }
        }
    }

    /// Syncs this node's approximate counters (`core::policy::approx`): one script per
    /// counter, all at once on the connection; `None` for a counter whose sync failed (and
    /// for all while the breaker is open: the tick's probe closes it).
    pub async fn sync(self: Arc<Self>, items: Vec<SyncItem>) -> Vec<Option<SyncAnswer>> {
        self.remember_handle();
        if self.breaker_open() {
            return vec![None; items.len()];
        }
        let live = self.node.sync_ms.saturating_mul(3).saturating_add(1000);
        let mut answers = Vec::with_capacity(items.len());
        for chunk in items.chunks(256) {
            let calls = chunk.iter().map(|item| self.sync_one(item, live));
            answers.extend(futures_util::future::join_all(calls).await);
        }
        answers
    }

    async fn sync_one(&self, item: &SyncItem, live: u64) -> Option<SyncAnswer> {
        let (window, nodes) = approx_keys(&self.node.prefix, item.key);
        let mut inv = self.sync.prepare_invoke();
        inv.key(window)
            .key(nodes)
            .arg(&self.node.name)
            .arg(item.window_ms)
            .arg(item.demand)
            .arg(live);
        for (bucket, delta) in &item.deltas {
            inv.arg(*bucket).arg(*delta);
        }
        let out = self.call(Op::Sync, Some(&inv)).await.ok()?;
        reply::sync_answer(&out)
    }

    /// Settlements and replays waiting for Redis.
    pub fn pending(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.len())
    }
}

impl Keeper for Client {
    fn next_id(&self) -> u64 {
        Client::next_id(self)
    }

    fn register_leases(&self, id: u64, keys: Vec<String>, member: String) {
        if let Ok(mut l) = self.leases.lock() {
            l.insert(id, (keys, member));
        }
    }

    fn unregister_leases(&self, id: u64) {
        if let Ok(mut l) = self.leases.lock() {
            l.remove(&id);
        }
    }

    fn send(self: Arc<Self>, job: Pending) {
        self.send_job(job);
    }
}
