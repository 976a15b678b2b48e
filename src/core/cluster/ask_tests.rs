use serde_json::{json, Value};

use super::*;
use crate::core::cluster::{Defaults, Mode};
use crate::core::error::Limited;
use crate::core::matcher::EmptyView as View;
use crate::core::policy::rules::parse_policies;
use crate::core::policy::{precheck, Facts};

fn policies(v: Value) -> Vec<Policy> {
    let Value::Array(list) = v else { panic!() };
    parse_policies(&list, "p").unwrap()
}

fn plan(p: &[Policy], defaults: Option<&Defaults>, prompt: u64) -> Plan {
    let f = Facts {
        namespace: "team",
        model: Some("m"),
        max_output: Some(10),
        view: &View,
        cluster: defaults,
    };
    precheck(p, &f, &mut || prompt).unwrap()
}

// 2025-12-01T00:00:00Z: on a bucket boundary of a 1-minute window (3 s buckets)
const T0: u64 = 1_764_547_200_000;

#[test]
fn the_question_lists_cluster_counters_only() {
    let p = policies(json!([
        {"type": "requests", "limit": 100, "window": "1m"},
        {"type": "concurrency", "limit": 4, "mode": "local"},
        {"type": "tokens", "limit": 1000, "window": "1m"},
    ]));
    // no cluster limits on the node: no question
    assert!(Ask::new("px", "team", &p, &plan(&p, None, 5)).is_none());
    let d = Defaults::default();
    let pl = plan(&p, Some(&d), 5);
    assert!(!pl.needs_zone() || pl.remote_charges().count() == 2);
    let ask = Ask::new("px", "team", &p, &pl).unwrap();
    assert_eq!(ask.counters.len(), 2);
    let req = &ask.counters[0];
    assert_eq!(req.kind, Kind::Window(60_000));
    assert_eq!((req.limit, req.amount, req.tokens), (100, 1, false));
    assert!(req.key.starts_with("px:lim:{team}:"), "{}", req.key);
    assert_eq!(req.key.len(), "px:lim:{team}:".len() + 16);
    let tok = &ask.counters[1];
    assert_eq!((tok.amount, tok.tokens), (15, true));
    // all keys of a namespace share the hash tag
    assert!(ask.counters.iter().all(|c| c.key.contains("{team}")));
    // a node whose default is local asks only for policies that say exact
    let local = Defaults {
        mode: Mode::Local,
        ..d
    };
    assert!(Ask::new("px", "team", &p, &plan(&p, Some(&local), 5)).is_none());
}

#[test]
fn odd_namespaces_get_a_hashed_tag() {
    let k = counter_key("px", "a}b", 7);
    assert!(k.starts_with("px:lim:{#"), "{k}");
    assert_eq!(counter_key("px", "", 7), counter_key("px", "", 7));
    assert_ne!(counter_key("px", "a}b", 7), counter_key("px", "a{b", 7));
}

fn window_reply(used_per_bucket: &[(u64, u64)], now: u64, refused: usize) -> Reply {
    let cur = now / 3000;
    Reply {
        refused,
        now_ms: now,
        counters: vec![CounterReply {
            used: used_per_bucket.iter().map(|(_, n)| n).sum(),
            at: cur,
            buckets: used_per_bucket.to_vec(),
        }],
    }
}

#[test]
fn an_admission_gives_headers_and_takes() {
    let p = policies(json!([{"type": "requests", "limit": 10, "window": "1m"}]));
    let d = Defaults::default();
    let ask = Ask::new("px", "team", &p, &plan(&p, Some(&d), 1)).unwrap();
    let now = T0 + 30_000;
    let cur = now / 3000;
    let a = ask
        .conclude(&p, &window_reply(&[(cur - 5, 3), (cur, 2)], now, 0))
        .unwrap();
    let g = a.headers.requests.unwrap();
    assert_eq!((g.limit, g.remaining), (10, 4));
    // what is added now leaves the window when its bucket does
    assert_eq!(g.reset_ms, (cur + 21) * 3000 - now);
    assert_eq!(a.takes.len(), 1);
    assert_eq!(a.takes[0].at, cur);
}

#[test]
fn a_refusal_is_the_zone_limiters_refusal() {
    let p = policies(json!([{"type": "requests", "limit": 5, "window": "1m"}]));
    let d = Defaults::default();
    let ask = Ask::new("px", "team", &p, &plan(&p, Some(&d), 1)).unwrap();
    let now = T0 + 30_000;
    let cur = now / 3000;
    let r = ask
        .conclude(&p, &window_reply(&[(cur - 20, 2), (cur - 1, 3)], now, 1))
        .unwrap_err()
        .unwrap();
    assert_eq!(
        r.denial.error,
        GatewayError::RateLimited {
            what: Limited::Requests,
            limit: 5,
            used: 5,
            requested: 1
        }
    );
    // the oldest bucket (cur - 20) leaves the window when bucket cur + 1 begins
    assert_eq!(
        r.denial.retry_after_s,
        Some(((cur + 1) * 3000 - now).div_ceil(1000))
    );
    assert_eq!(r.headers.requests.unwrap().remaining, 0);
}

#[test]
fn answers_that_do_not_match_are_failures() {
    let p = policies(json!([{"type": "requests", "limit": 5, "window": "1m"}]));
    let d = Defaults::default();
    let ask = Ask::new("px", "team", &p, &plan(&p, Some(&d), 1)).unwrap();
    let mut bad = window_reply(&[], T0, 0);
    bad.counters.clear();
    assert!(ask.conclude(&p, &bad).unwrap_err().is_none());
    let mut bad = window_reply(&[], T0, 0);
    bad.refused = 2;
    assert!(ask.conclude(&p, &bad).unwrap_err().is_none());
}

#[test]
fn dry_run_counters_never_refuse() {
    let p = policies(json!([{"type": "requests", "limit": 1, "window": "1m", "dry_run": true}]));
    let d = Defaults::default();
    let ask = Ask::new("px", "team", &p, &plan(&p, Some(&d), 1)).unwrap();
    assert!(ask.counters[0].dry_run);
    let now = T0 + 1000;
    let a = ask
        .conclude(&p, &window_reply(&[(now / 3000, 1)], now, 0))
        .unwrap();
    assert_eq!(a.dry_run.len(), 1);
}

#[test]
fn settlements() {
    let takes = vec![
        RemoteTake {
            key: "w".into(),
            kind: Kind::Window(60_000),
            at: 9,
            amount: 1,
            tokens: false,
        },
        RemoteTake {
            key: "t".into(),
            kind: Kind::Window(60_000),
            at: 9,
            amount: 100,
            tokens: true,
        },
        RemoteTake {
            key: "c".into(),
            kind: Kind::Leases,
            at: 0,
            amount: 1,
            tokens: false,
        },
    ];
    let s = settlement(&takes, Some(40), false);
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].key.as_str(), s[0].delta), ("t", -60));
    assert_eq!((s[1].key.as_str(), s[1].delta), ("c", -1));
    // more than reserved: charged
    assert_eq!(settlement(&takes, Some(150), false)[0].delta, 50);
    // usage unknown: the reservation stays, the lease goes
    let s = settlement(&takes, None, false);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].kind, Kind::Leases);
    // never went through: everything back
    let s = settlement(&takes, None, true);
    assert_eq!(
        s.iter().map(|s| s.delta).collect::<Vec<_>>(),
        vec![-1, -100, -1]
    );
}

#[test]
fn a_token_counter_refusing_the_bound_is_asked_again_exactly() {
    let p = policies(json!([
        {"type": "requests", "limit": 100, "window": "1m"},
        {"type": "tokens", "limit": 1000, "window": "1m"},
    ]));
    let d = Defaults::default();
    // the prompt's bound is 50, the output reservation 10
    let ask = Ask::new("px", "team", &p, &plan(&p, Some(&d), 50)).unwrap();
    assert!(ask.prompt_bound);
    assert_eq!(ask.counters[1].amount, 60);
    let now = T0 + 1000;
    let refused_by = |i: usize| Reply {
        refused: i,
        now_ms: now,
        counters: vec![CounterReply::default(), CounterReply::default()],
    };
    assert!(ask.needs_exact_prompt(&refused_by(2)));
    // the requests window refusing, or an admission, is final
    assert!(!ask.needs_exact_prompt(&refused_by(1)));
    assert!(!ask.needs_exact_prompt(&refused_by(0)));
    let again = ask.with_exact_prompt(12);
    assert!(!again.prompt_bound);
    assert_eq!(again.counters[1].amount, 22);
    assert_eq!(again.counters[0].amount, 1);
    assert!(!again.needs_exact_prompt(&refused_by(2)));
}
