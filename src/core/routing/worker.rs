//! Routing state of one worker that outlives snapshots: the turn of each route's weighted
//! rotation and the requests in flight to each target (`max_connections`). It is keyed by
//! the stable names (a route by its name, or its position and path when it has none), so a
//! new snapshot neither resets nor corrupts it; names a new snapshot no longer has are
//! forgotten once nothing is in flight to them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::{Route, Routing, Target};

/// FNV-1a: the keys are names from the operator's config (not chosen by clients), short,
/// and looked up on every routed request, where SipHash costs more than the lookup.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Names<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;

#[derive(Debug, Default)]
pub struct WorkerRouting {
    turns: Names<u64>,
    active: Names<u32>,
}

/// The key of a route's rotation: its name, or its position and path when it has none
/// (made once, when the config is parsed: `Route::key`).
pub fn route_key(route: &Route, index: usize) -> String {
    if route.name.is_empty() {
        format!("#{index} {}", route.path_prefix)
    } else {
        format!("={}", route.name)
    }
}

impl WorkerRouting {
    /// The route's turn for this request (0, 1, 2, ... per worker).
    pub fn next_turn(&mut self, route: &Route, index: usize) -> u64 {
        let n = match self.turns.get_mut(route.key.as_str()) {
            Some(n) => n,
            None => self.turns.entry(route_key(route, index)).or_insert(0),
        };
        let turn = *n;
        *n = n.wrapping_add(1);
        turn
    }

    /// Takes a place in the target's `max_connections`; false when none is left.
    pub fn hold(&mut self, target: &Target) -> bool {
        let n = match self.active.get_mut(target.name.as_str()) {
            Some(n) => n,
            None => self.active.entry(target.name.clone()).or_insert(0),
        };
        if target.max_connections.is_some_and(|max| *n >= max) {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back a place taken by [`hold`](Self::hold).
    pub fn release(&mut self, target: &str) {
        if let Some(n) = self.active.get_mut(target) {
            *n = n.saturating_sub(1);
        }
    }

    /// Requests of this worker in flight to `target`.
    pub fn active(&self, target: &str) -> u32 {
        self.active.get(target).copied().unwrap_or(0)
    }

    /// Forgets what `routing` (the new snapshot's) no longer names, except targets that
    /// still have requests in flight (they give their places back when they end).
    pub fn retain(&mut self, routing: &Routing) {
        self.turns
            .retain(|k, _| routing.routes.iter().any(|r| &r.key == k));
        self.active
            .retain(|k, n| *n > 0 || routing.targets.iter().any(|t| &t.name == k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::GatewayConfig;

    fn routing(json: &str) -> GatewayConfig {
        GatewayConfig::from_json(json.as_bytes()).unwrap()
    }

    const TWO: &str = r#"{"targets":[
        {"name":"a","provider":"openai","base_url":"http://127.0.0.1:1","max_connections":2},
        {"name":"b","provider":"openai","base_url":"http://127.0.0.1:2"}],
      "routes":[{"name":"r","path_prefix":"/v1/","targets":["a","b"]},
                {"path_prefix":"/x/","targets":["b"]}]}"#;

    #[test]
    fn turns_count_per_route_and_survive_a_new_snapshot_with_the_route() {
        let c1 = routing(TWO);
        let mut w = WorkerRouting::default();
        let r = &c1.routing.routes;
        assert_eq!(w.next_turn(&r[0], 0), 0);
        assert_eq!(w.next_turn(&r[0], 0), 1);
        assert_eq!(w.next_turn(&r[1], 1), 0);
        // the same routes in a new snapshot: the rotation goes on
        let c2 = routing(TWO);
        w.retain(&c2.routing);
        assert_eq!(w.next_turn(&c2.routing.routes[0], 0), 2);
        assert_eq!(w.next_turn(&c2.routing.routes[1], 1), 1);
        // a snapshot without the unnamed route forgets it
        let c3 = routing(
            &TWO.replace(r#"{"path_prefix":"/x/","targets":["b"]}"#, "")
                .replace(
                    r#"},
                ]"#,
                    "}]",
                ),
        );
        w.retain(&c3.routing);
        assert_eq!(w.turns.len(), 1);
    }

    #[test]
    fn max_connections_hold_and_release_by_name_across_snapshots() {
        let c1 = routing(TWO);
        let a = &c1.routing.targets[0];
        let mut w = WorkerRouting::default();
        assert!(w.hold(a));
        assert!(w.hold(a));
        assert!(!w.hold(a), "max_connections 2");
        // a new snapshot keeps the count: the two requests are still in flight
        let c2 = routing(&TWO.replace(r#""a""#, r#""z""#));
        w.retain(&c2.routing);
        assert_eq!(w.active("a"), 2, "in flight: kept until they end");
        w.release("a");
        w.release("a");
        w.release("a");
        assert_eq!(w.active("a"), 0, "never below zero");
        w.retain(&c2.routing);
        assert!(!w.active.contains_key("a"), "forgotten once idle and gone");
        // a target without max_connections is counted, never refused
        let b = &c1.routing.targets[1];
        for _ in 0..100 {
            assert!(w.hold(b));
        }
        assert_eq!(w.active("b"), 100);
    }
}
