use serde_json::json;

use super::*;
use crate::core::matcher::EmptyView as View;
use crate::core::policy::cluster_mode::{Defaults, Mode};
use crate::core::policy::engine::refund;
use crate::core::policy::rules::parse_policies;
use crate::core::policy::slot::Slot;
use crate::core::policy::table::TableHeader;
use crate::core::policy::{admit, precheck, Admission, Facts};

struct Zone {
    header: TableHeader,
    slots: Vec<Slot>,
}

impl Zone {
    fn new() -> Zone {
        Zone {
            header: TableHeader::default(),
            slots: vec![Slot::default(); 64],
        }
    }
    fn table(&mut self) -> Table<'_> {
        Table::open(&mut self.header, &mut self.slots)
    }
}

const T0: u64 = 1_764_547_200_000;

fn defaults(on_failure: OnFailure) -> Defaults {
    Defaults {
        mode: Mode::Approximate,
        on_failure,
        fraction: 500,
        stale_ms: 1000,
    }
}

fn policies(limit: u64) -> Vec<Policy> {
    let v = json!([{"type": "requests", "limit": limit, "window": "1m"}]);
    parse_policies(v.as_array().unwrap(), "p").unwrap()
}

fn run(p: &[Policy], d: &Defaults, zone: &mut Zone, now: u64) -> Result<Admission, u16> {
    let f = Facts {
        namespace: "team",
        model: None,
        max_output: None,
        view: &View,
        cluster: Some(d),
    };
    let plan = precheck(p, &f, &mut || 1).unwrap();
    assert!(plan.needs_zone() && plan.remote_charges().next().is_none());
    admit(p, &plan, &mut zone.table(), now).map_err(|r| r.denial.error.status())
}

fn passes(p: &[Policy], d: &Defaults, zone: &mut Zone, now: u64, n: usize) -> usize {
    (0..n).filter(|_| run(p, d, zone, now).is_ok()).count()
}

#[test]
fn before_any_sync_the_node_limits_at_its_fraction_or_refuses() {
    let p = policies(10);
    let mut zone = Zone::new();
    assert_eq!(passes(&p, &defaults(OnFailure::Open), &mut zone, T0, 8), 5);
    let mut zone = Zone::new();
    assert_eq!(
        run(&p, &defaults(OnFailure::Closed), &mut zone, T0).unwrap_err(),
        503
    );
}

#[test]
fn the_allowance_is_the_nodes_share_of_what_the_cluster_has_left() {
    let p = policies(100);
    let d = defaults(OnFailure::Open);
    let mut zone = Zone::new();
    // the first request makes the counter's slots (degraded: no sync yet)
    assert!(run(&p, &d, &mut zone, T0).is_ok());
    let items = collect(&mut zone.table(), T0 + 10, 500);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].deltas, vec![(T0 / 3000, 1)]);
    assert_eq!(items[0].demand, 1);
    // the cluster holds 60 (this node's 1 included); two nodes asked equally
    apply(
        &mut zone.table(),
        &items[0],
        Some(SyncAnswer {
            total: 60,
            nodes: 2,
            demand_total: 2,
        }),
        T0 + 20,
    );
    // (100 - 60) * 1/2 = 20 until the next sync
    assert_eq!(passes(&p, &d, &mut zone, T0 + 30, 30), 20);
    let r = run(&p, &d, &mut zone, T0 + 30).unwrap_err();
    assert_eq!(r, 429);
    // the sent deltas are not sent again: the next snapshot has the 20 new ones only
    let items = collect(&mut zone.table(), T0 + 40, 500);
    assert_eq!(items[0].deltas, vec![(T0 / 3000, 20)]);
    // 31 asks (20 + 10 refused + 1), this node's demand only
    assert_eq!(items[0].demand, 31);
}

#[test]
fn shares_follow_demand() {
    let p = policies(100);
    let d = defaults(OnFailure::Open);
    let mut zone = Zone::new();
    for _ in 0..8 {
        let _ = run(&p, &d, &mut zone, T0);
    }
    let items = collect(&mut zone.table(), T0 + 1, 500);
    // this node asked 8 of the cluster's 10
    apply(
        &mut zone.table(),
        &items[0],
        Some(SyncAnswer {
            total: 0,
            nodes: 2,
            demand_total: 10,
        }),
        T0 + 2,
    );
    assert_eq!(passes(&p, &d, &mut zone, T0 + 3, 100), 80);
}

#[test]
fn refunds_are_sent_as_negative_deltas_and_failures_resend() {
    let p = policies(100);
    let d = defaults(OnFailure::Open);
    let mut zone = Zone::new();
    let a = run(&p, &d, &mut zone, T0).unwrap();
    let _ = run(&p, &d, &mut zone, T0).unwrap();
    let items = collect(&mut zone.table(), T0 + 1, 500);
    assert_eq!(items[0].deltas, vec![(T0 / 3000, 2)]);
    // the sync failed: nothing counts as sent
    apply(&mut zone.table(), &items[0], None, T0 + 2);
    let items = collect(&mut zone.table(), T0 + 3, 500);
    assert_eq!(items[0].deltas, vec![(T0 / 3000, 2)]);
    apply(
        &mut zone.table(),
        &items[0],
        Some(SyncAnswer {
            total: 2,
            nodes: 1,
            demand_total: 2,
        }),
        T0 + 4,
    );
    refund(&mut zone.table(), &a.takes);
    let items = collect(&mut zone.table(), T0 + 5, 500);
    assert_eq!(items[0].deltas, vec![(T0 / 3000, -1)]);
}

#[test]
fn a_stale_view_degrades() {
    let p = policies(100);
    let d = defaults(OnFailure::Closed);
    let mut zone = Zone::new();
    let _ = run(&p, &d, &mut zone, T0);
    let items = collect(&mut zone.table(), T0, 500);
    apply(
        &mut zone.table(),
        &items[0],
        Some(SyncAnswer {
            total: 0,
            nodes: 1,
            demand_total: 1,
        }),
        T0,
    );
    assert!(run(&p, &d, &mut zone, T0 + 900).is_ok());
    // no sync for longer than stale_ms: Redis is taken as unreachable
    assert_eq!(run(&p, &d, &mut zone, T0 + 1100).unwrap_err(), 503);
}

#[test]
fn idle_counters_are_synced_less_often() {
    let p = policies(100);
    let d = defaults(OnFailure::Open);
    let mut zone = Zone::new();
    let _ = run(&p, &d, &mut zone, T0);
    let items = collect(&mut zone.table(), T0, 500);
    let answer = SyncAnswer {
        total: 1,
        nodes: 1,
        demand_total: 1,
    };
    apply(&mut zone.table(), &items[0], Some(answer), T0);
    // nothing to send, nothing asked: not before the view is 500 ms old
    assert!(collect(&mut zone.table(), T0 + 100, 500).is_empty());
    assert_eq!(collect(&mut zone.table(), T0 + 500, 500).len(), 1);
    // asked again: synced at once
    let _ = run(&p, &d, &mut zone, T0 + 200);
    assert_eq!(collect(&mut zone.table(), T0 + 210, 500).len(), 1);
}

#[test]
fn allowances_round_up() {
    assert_eq!(allowance(0, 500), 0);
    assert_eq!(allowance(1, 1), 1);
    assert_eq!(allowance(40, 500), 20);
    assert_eq!(allowance(41, 500), 21);
    assert_eq!(allowance(u64::MAX, 1000), u64::MAX);
}
