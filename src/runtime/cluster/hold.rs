//! What a request holds in Redis until it ends, and the work that settles it.
//!
//! A [`Hold`] is made when Redis admitted a request. Dropped (the request's context goes
//! with its pool, whatever ended it), it sends one settlement: token reservations corrected
//! with the usage recorded by [`Hold::settle`], leases released; a hold never kept (its
//! request went away while it waited, or was refused by the zone after Redis admitted it)
//! gives everything back. A settlement that finds Redis unreachable waits in the client's
//! pending list and is sent when Redis is back (a marker key makes it count once).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::{Script, ScriptInvocation};

use crate::core::cluster::ask::{settlement, Kind, RemoteTake, Settle};
use crate::core::policy::slot::{bucket_ms, period_number};

/// Work for Redis that may wait for it.
#[derive(Debug)]
pub enum Pending {
    /// A request's settlement.
    Finish {
        marker: String,
        member: String,
        items: Vec<Settle>,
        /// When the request ended (unix ms): a settlement older than [`MARKER_MS`] allows
        /// is dropped rather than risk counting twice.
        since_ms: u64,
    },
    /// An admission made on this node alone while Redis was unreachable (`fail_open`):
    /// `amount` added to `key` as of `at_unix_ms`.
    Replay {
        marker: String,
        key: String,
        kind: Kind,
        at_unix_ms: u64,
        amount: u64,
    },
}

/// How long Redis keeps a settlement's marker (`finish.lua`): one key per settled request,
/// so short; a settlement that could not be sent within it (Redis gone longer) is dropped,
/// its reservations left as they were (they age out with their window or period).
pub const MARKER_MS: u64 = 60_000;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The marker of work `id` on counters of the namespace of `key` (same hash tag).
fn marker_of(key: &str, id: &str) -> String {
    let base = key.rsplit_once(':').map_or(key, |(b, _)| b);
    format!("{base}:done:{id}")
}

impl Pending {
    /// The replay of a degraded admission of `amount` on `key`, now.
    pub fn replay(key: String, kind: Kind, amount: u64, id: &str) -> Option<Pending> {
        if kind == Kind::Leases || amount == 0 {
            return None;
        }
        Some(Pending::Replay {
            marker: marker_of(&key, id),
            key,
            kind,
            at_unix_ms: unix_ms(),
            amount,
        })
    }

    /// The call of `finish.lua`; `None` when there is nothing left to send.
    pub(super) fn invocation<'a>(
        &self,
        script: &'a Script,
        _mono: u64,
    ) -> Option<ScriptInvocation<'a>> {
        let mut inv = script.prepare_invoke();
        match self {
            Pending::Finish {
                marker,
                member,
                items,
                since_ms,
            } => {
                // a first attempt may have run: after its marker is gone, a resend could
                // count twice
                if items.is_empty() || unix_ms().saturating_sub(*since_ms) > MARKER_MS - 10_000 {
                    return None;
                }
                inv.key(marker);
                for s in items {
                    inv.key(&s.key);
                }
                inv.arg(member);
                for s in items {
                    let (kind, size) = s.kind.code();
                    inv.arg(kind).arg(size).arg(s.at).arg(s.delta);
                }
            }
            Pending::Replay {
                marker,
                key,
                kind,
                at_unix_ms,
                amount,
            } => {
                let now = unix_ms();
                let at = match *kind {
                    Kind::Window(ms) => {
                        if at_unix_ms.saturating_add(ms) <= now {
                            return None;
                        }
                        at_unix_ms / bucket_ms(ms)
                    }
                    Kind::Quota(p) => {
                        if period_number(p, *at_unix_ms) != period_number(p, now) {
                            return None;
                        }
                        period_number(p, *at_unix_ms)
                    }
                    Kind::Leases => return None,
                };
                let (code, size) = kind.code();
                inv.key(marker)
                    .key(key)
                    .arg("-")
                    .arg(code)
                    .arg(size)
                    .arg(at)
                    .arg(i64::try_from(*amount).unwrap_or(i64::MAX));
            }
        }
        Some(inv)
    }
}

/// What a hold needs of the client that made it.
pub trait Keeper: Send + Sync + 'static {
    fn next_id(&self) -> u64;
    /// Leases of a request still running, renewed until [`Keeper::unregister_leases`].
    fn register_leases(&self, id: u64, keys: Vec<String>, member: String);
    fn unregister_leases(&self, id: u64);
    /// Sends `job` now, or keeps it for when Redis is back.
    fn send(self: Arc<Self>, job: Pending);
}

/// What one admitted request holds in Redis.
pub struct Hold {
    client: Arc<dyn Keeper>,
    id: u64,
    member: String,
    takes: Vec<RemoteTake>,
    actual: Option<u64>,
    refund_all: bool,
}

impl Hold {
    pub(super) fn new(client: Arc<dyn Keeper>, member: String, takes: Vec<RemoteTake>) -> Hold {
        let id = client.next_id();
        let leases: Vec<String> = takes
            .iter()
            .filter(|t| t.kind == Kind::Leases)
            .map(|t| t.key.clone())
            .collect();
        if !leases.is_empty() {
            client.register_leases(id, leases, member.clone());
        }
        Hold {
            client,
            id,
            member,
            takes,
            actual: None,
            refund_all: true,
        }
    }

    /// The request goes on: at its end, settle what it used instead of giving all back.
    pub fn keep(&mut self) {
        self.refund_all = false;
    }

    /// The request's actual token usage (prompt + completion), when known.
    pub fn settle(&mut self, actual: Option<u64>) {
        self.actual = actual;
    }

    pub fn takes(&self) -> &[RemoteTake] {
        &self.takes
    }
}

/// What a request admitted without Redis (`fail_open`) took of its cluster counters: sent to
/// Redis when the request ends, token counters with its actual usage (not the reservation),
/// so the window after Redis is back counts what really happened.
pub struct Replay {
    client: Arc<dyn Keeper>,
    /// The replays, and whether each counts tokens.
    items: Vec<(Pending, bool)>,
    actual: Option<u64>,
}

impl Replay {
    pub(super) fn new(client: Arc<dyn Keeper>, items: Vec<(Pending, bool)>) -> Replay {
        Replay {
            client,
            items,
            actual: None,
        }
    }

    /// The request's actual token usage (prompt + completion), when known.
    pub fn settle(&mut self, actual: Option<u64>) {
        self.actual = actual;
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        for (mut job, tokens) in std::mem::take(&mut self.items) {
            if let (true, Some(a), Pending::Replay { amount, .. }) = (tokens, self.actual, &mut job)
            {
                *amount = a;
            }
            if matches!(job, Pending::Replay { amount: 0, .. }) {
                continue;
            }
            self.client.clone().send(job);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.client.unregister_leases(self.id);
        let items = settlement(&self.takes, self.actual, self.refund_all);
        let Some(first) = items.first() else {
            return;
        };
        let job = Pending::Finish {
            marker: marker_of(&first.key, &self.member),
            member: std::mem::take(&mut self.member),
            items,
            since_ms: unix_ms(),
        };
        self.client.clone().send(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_share_the_hash_tag() {
        assert_eq!(
            marker_of("px:lim:{team}:00000000000000ab", "m.1"),
            "px:lim:{team}:done:m.1"
        );
    }
}
