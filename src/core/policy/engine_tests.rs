use std::borrow::Cow;

use serde_json::{json, Value};

use super::*;
use crate::core::policy::rules::parse_policies;
use crate::core::policy::slot::Slot;
use crate::core::policy::table::TableHeader;

struct View {
    header: Option<&'static str>,
    body: Value,
}

impl RequestView for View {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        (name == "x-tag").then_some(self.header?.into())
    }
    fn query_arg(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
    fn body(&self) -> Option<&Value> {
        Some(&self.body)
    }
}

const VIEW: View = View {
    header: None,
    body: Value::Null,
};

fn policies(v: Value) -> Vec<Policy> {
    let Value::Array(list) = v else { panic!() };
    parse_policies(&list, "p").unwrap()
}

fn facts<'a>(model: Option<&'a str>, max_output: Option<u64>, view: &'a View) -> Facts<'a> {
    Facts {
        namespace: "team",
        model,
        max_output,
        view,
        cluster: None,
    }
}

struct Zone {
    header: TableHeader,
    slots: Vec<Slot>,
}

impl Zone {
    fn new(n: usize) -> Zone {
        Zone {
            header: TableHeader::default(),
            slots: vec![Slot::default(); n],
        }
    }
    fn table(&mut self) -> Table<'_> {
        Table::open(&mut self.header, &mut self.slots)
    }
}

/// Runs precheck and admit as the access handler does.
fn run(
    p: &[Policy],
    f: &Facts,
    zone: &mut Zone,
    now: u64,
    prompt: u64,
) -> Result<Admission, Denial> {
    let plan = precheck(p, f, &mut || prompt)?;
    admit(p, &plan, &mut zone.table(), now).map_err(|r| r.denial)
}

const T0: u64 = 1_764_547_200_000;

#[test]
fn stateless_rules_in_order() {
    let p = policies(json!([
        {"type": "input_tokens", "max": 100},
        {"type": "models", "allow": ["gpt-4o*"]},
        {"type": "message", "source": "header", "field": "X-Tag", "value": "blocked",
         "action": "deny"}
    ]));
    let mut zone = Zone::new(8);
    let blocked = View {
        header: Some("blocked"),
        body: Value::Null,
    };
    // models first, whatever else is wrong
    let d = run(
        &p,
        &facts(Some("gpt-5"), None, &blocked),
        &mut zone,
        T0,
        500,
    )
    .unwrap_err();
    assert_eq!(d.error, GatewayError::ModelNotAllowed);
    assert_eq!(d.error.status(), 403);
    let d = run(
        &p,
        &facts(Some("gpt-4o"), None, &blocked),
        &mut zone,
        T0,
        500,
    )
    .unwrap_err();
    assert_eq!(d.error, GatewayError::MessageDenied);
    let d = run(&p, &facts(Some("gpt-4o"), None, &VIEW), &mut zone, T0, 500).unwrap_err();
    assert_eq!(
        d.error,
        GatewayError::InputTooLong {
            tokens: 500,
            max: 100
        }
    );
    assert_eq!(d.error.status(), 400);
    assert!(run(
        &p,
        &facts(Some("gpt-4o-mini"), None, &VIEW),
        &mut zone,
        T0,
        100
    )
    .is_ok());
    // a request without a model is not refused by an allow-list
    assert!(run(&p, &facts(None, None, &VIEW), &mut zone, T0, 1).is_ok());
}

#[test]
fn allow_message_rules_need_the_field() {
    let p = policies(json!([
        {"type": "message", "field": "metadata.team", "value": "a", "action": "allow"}
    ]));
    let mut zone = Zone::new(8);
    let with = View {
        header: None,
        body: json!({"metadata": {"team": "a"}}),
    };
    assert!(run(&p, &facts(None, None, &with), &mut zone, T0, 1).is_ok());
    assert!(run(&p, &facts(None, None, &VIEW), &mut zone, T0, 1).is_err());
}

/// A prompt whose bound and exact count differ, counting the calls.
struct Prompt {
    bound: u64,
    exact: u64,
    bounds: u32,
    exacts: u32,
}

impl PromptTokens for Prompt {
    fn bound(&mut self) -> u64 {
        self.bounds += 1;
        self.bound
    }
    fn exact(&mut self) -> u64 {
        self.exacts += 1;
        self.exact
    }
}

fn prompt(bound: u64, exact: u64) -> Prompt {
    Prompt {
        bound,
        exact,
        bounds: 0,
        exacts: 0,
    }
}

#[test]
fn prompt_is_counted_only_when_the_bound_does_not_decide() {
    let p = policies(json!([
        {"type": "input_tokens", "max": 1000},
        {"type": "tokens", "limit": 10000, "window": 60}
    ]));
    // the bound fits the cap: no exact count; the token window is charged the bound
    let mut pr = prompt(200, 50);
    let plan = precheck(&p, &facts(None, Some(10), &VIEW), &mut pr).unwrap();
    assert_eq!((pr.bounds, pr.exacts), (1, 0));
    assert_eq!(plan.prompt_tokens, None);
    let mut zone = Zone::new(8);
    let a = admit(&p, &plan, &mut zone.table(), T0).unwrap();
    assert_eq!(a.takes[0].amount, 210);
    // the bound is above the cap: counted exactly, once, and charged exactly
    let mut pr = prompt(2000, 50);
    let plan = precheck(&p, &facts(None, Some(10), &VIEW), &mut pr).unwrap();
    assert_eq!((pr.bounds, pr.exacts), (1, 1));
    assert_eq!(plan.prompt_tokens, Some(50));
    let a = admit(&p, &plan, &mut zone.table(), T0).unwrap();
    assert_eq!(a.takes[0].amount, 60);
    // no policy needs the prompt: never asked
    let p = policies(json!([{"type": "requests", "limit": 5, "window": 60}]));
    let plan = precheck(&p, &facts(None, None, &VIEW), &mut || panic!("counted")).unwrap();
    assert_eq!(plan.prompt_tokens, None);
}

#[test]
fn a_token_window_refuses_only_on_the_exact_count() {
    let p = policies(json!([{"type": "tokens", "limit": 100, "window": 60}]));
    let mut zone = Zone::new(8);
    let f = facts(None, Some(10), &VIEW);
    let mut pr = prompt(500, 50);
    let mut plan = precheck(&p, &f, &mut pr).unwrap();
    let r = admit(&p, &plan, &mut zone.table(), T0).unwrap_err();
    assert!(r.exact_needed);
    plan.use_exact_prompt(pr.exact());
    let a = admit(&p, &plan, &mut zone.table(), T0).unwrap();
    assert_eq!(a.takes[0].amount, 60);
    assert_eq!(a.headers.tokens.unwrap().remaining, 40);
    // with the exact count a refusal is final
    let mut plan = precheck(&p, &f, &mut prompt(500, 50)).unwrap();
    plan.use_exact_prompt(50);
    let r = admit(&p, &plan, &mut zone.table(), T0).unwrap_err();
    assert!(!r.exact_needed);
    assert_eq!(r.denial.error.reason(), "tokens_limit");
}

#[test]
fn output_caps_clamp_or_reject() {
    let p = policies(json!([{"type": "output_tokens", "max": 100}]));
    let f = |m| precheck(&p, &facts(None, m, &VIEW), &mut || 0).unwrap();
    assert_eq!(f(Some(500)).clamp_output, Some(100));
    assert_eq!(f(None).clamp_output, Some(100));
    assert_eq!(f(Some(50)).clamp_output, None);
    let p = policies(json!([{"type": "output_tokens", "max": 100, "action": "reject"}]));
    // reject never edits the request, but the cap still holds for the stream
    let plan = precheck(&p, &facts(None, None, &VIEW), &mut || 0).unwrap();
    assert_eq!((plan.clamp_output, plan.output_cap), (None, Some(100)));
    let d = precheck(&p, &facts(None, Some(101), &VIEW), &mut || 0).unwrap_err();
    assert_eq!(
        d.error,
        GatewayError::OutputTooLarge {
            requested: 101,
            max: 100
        }
    );
    assert_eq!(d.error.param(), Some("max_tokens"));
}

#[test]
fn requests_window_refuses_with_retry_after_and_headers() {
    let p = policies(json!([{"type": "requests", "limit": 3, "window": "1m"}]));
    let mut zone = Zone::new(16);
    let f = facts(Some("m"), None, &VIEW);
    for i in 0..3 {
        let a = run(&p, &f, &mut zone, T0 + i * 1000, 0).unwrap();
        let g = a.headers.requests.unwrap();
        assert_eq!((g.limit, g.remaining), (3, 2 - i));
        // everything is free again when this request's bucket leaves the window
        assert_eq!(g.reset_ms, 63_000 - (i % 3) * 1000);
    }
    let plan = precheck(&p, &f, &mut || 0).unwrap();
    let r = admit(&p, &plan, &mut zone.table(), T0 + 10_000).unwrap_err();
    assert_eq!(r.denial.error.status(), 429);
    assert_eq!(r.denial.error.reason(), "requests_limit");
    assert_eq!(r.denial.policy, "requests/60s");
    // the first request's bucket (T0 .. T0+3s) leaves at T0 + 63 s
    assert_eq!(r.denial.retry_after_s, Some(53));
    assert_eq!(r.headers.requests.unwrap().remaining, 0);
    assert!(run(&p, &f, &mut zone, T0 + 63_000, 0).is_ok());
}

#[test]
fn refused_requests_take_nothing() {
    // concurrency passes, requests refuses: the concurrency slot must not be taken
    let p = policies(json!([
        {"type": "concurrency", "limit": 5},
        {"type": "requests", "limit": 1, "window": 60},
        {"type": "tokens", "limit": 1000, "window": 60}
    ]));
    let mut zone = Zone::new(16);
    let f = facts(None, Some(10), &VIEW);
    let first = run(&p, &f, &mut zone, T0, 90).unwrap();
    assert_eq!(first.takes.len(), 3);
    for _ in 0..10 {
        assert!(run(&p, &f, &mut zone, T0, 90).is_err());
    }
    let mut t = zone.table();
    let conc = first.takes[0];
    assert_eq!(t.get(conc.slot).unwrap().used(Shape::Concurrency), 1);
    let tok = first.takes[2];
    assert_eq!(t.get(tok.slot).unwrap().used(tok.shape), 100);
    release(&mut t, &first.takes);
    assert_eq!(t.get(conc.slot).unwrap().used(Shape::Concurrency), 0);
}

#[test]
fn token_reservation_is_settled() {
    let p = policies(json!([
        {"type": "tokens", "limit": 1000, "window": 60},
        {"type": "quota", "limit": 5000, "period": "day"}
    ]));
    let mut zone = Zone::new(16);
    let f = facts(None, Some(300), &VIEW);
    // prompt 100 + max_tokens 300 reserved
    let a = run(&p, &f, &mut zone, T0, 100).unwrap();
    assert_eq!(a.headers.tokens.unwrap().remaining, 600);
    assert_eq!(a.takes[0].amount, 400);
    // a second one fits, a third does not
    let b = run(&p, &f, &mut zone, T0 + 100, 100).unwrap();
    let d = run(&p, &f, &mut zone, T0 + 200, 100).unwrap_err();
    assert_eq!(d.error.reason(), "tokens_limit");
    // the first used 150 tokens in all: 250 come back and the third fits
    settle(&mut zone.table(), &a.takes, Some(150), T0 + 300);
    let c = run(&p, &f, &mut zone, T0 + 400, 100).unwrap();
    assert_eq!(c.headers.tokens.unwrap().remaining, 1000 - 150 - 400 - 400);
    // unknown usage keeps the reservation
    settle(&mut zone.table(), &b.takes, None, T0 + 500);
    let q = b.takes[1];
    assert_eq!(
        zone.table().get(q.slot).unwrap().used(q.shape),
        150 + 400 + 400
    );
    // an extra charge: usage above the reservation
    settle(&mut zone.table(), &c.takes, Some(1000), T0 + 600);
    assert_eq!(
        zone.table().get(q.slot).unwrap().used(q.shape),
        150 + 400 + 1000
    );
}

#[test]
fn requests_too_large_for_the_window_are_told_so() {
    let p = policies(json!([{"type": "tokens", "limit": 100, "window": 60}]));
    let mut zone = Zone::new(8);
    let d = run(&p, &facts(None, Some(500), &VIEW), &mut zone, T0, 10).unwrap_err();
    assert!(
        d.error.message().starts_with("Request too large"),
        "{}",
        d.error.message()
    );
    assert!(d.retry_after_s.is_some());
}

#[test]
fn dry_run_reports_but_lets_through() {
    let p = policies(json!([
        {"type": "requests", "limit": 1, "window": 60, "dry_run": true},
        {"type": "models", "allow": ["a"], "dry_run": true}
    ]));
    let mut zone = Zone::new(8);
    let f = facts(Some("b"), None, &VIEW);
    let a = run(&p, &f, &mut zone, T0, 0).unwrap();
    assert_eq!(a.dry_run.len(), 1);
    assert_eq!(a.dry_run[0].error, GatewayError::ModelNotAllowed);
    let a = run(&p, &f, &mut zone, T0, 0).unwrap();
    assert_eq!(a.dry_run.len(), 2);
    assert_eq!(a.dry_run[1].error.reason(), "requests_limit");
    assert!(a.dry_run[1].dry_run);
    // the counter counts what went through
    let t = a.takes[0];
    assert_eq!(zone.table().get(t.slot).unwrap().used(t.shape), 2);
}

#[test]
fn per_model_counters_and_model_filters() {
    let p = policies(json!([
        {"type": "requests", "limit": 1, "window": 60, "per_model": true},
        {"type": "concurrency", "limit": 1, "models": ["big-*"]}
    ]));
    let mut zone = Zone::new(16);
    assert!(run(&p, &facts(Some("a"), None, &VIEW), &mut zone, T0, 0).is_ok());
    assert!(run(&p, &facts(Some("b"), None, &VIEW), &mut zone, T0, 0).is_ok());
    assert!(run(&p, &facts(Some("a"), None, &VIEW), &mut zone, T0, 0).is_err());
    let big = run(&p, &facts(Some("big-1"), None, &VIEW), &mut zone, T0, 0).unwrap();
    assert_eq!(big.takes.len(), 2);
    let d = run(&p, &facts(Some("big-2"), None, &VIEW), &mut zone, T0, 0).unwrap_err();
    assert_eq!(d.error.reason(), "concurrency_limit");
    assert_eq!(d.retry_after_s, Some(1));
}

#[test]
fn a_full_zone_refuses_with_503() {
    let p = policies(json!([{"type": "concurrency", "limit": 10, "per_model": true}]));
    let mut zone = Zone::new(4);
    for m in ["a", "b", "c"] {
        run(&p, &facts(Some(m), None, &VIEW), &mut zone, T0, 0).unwrap();
    }
    let d = run(&p, &facts(Some("d"), None, &VIEW), &mut zone, T0, 0).unwrap_err();
    assert_eq!(d.error, GatewayError::LimitZoneFull);
    assert_eq!(d.error.status(), 503);
}

#[test]
fn quotas_say_when_the_period_ends() {
    let p = policies(json!([{"type": "quota", "limit": 2, "period": "day", "unit": "requests"}]));
    let mut zone = Zone::new(8);
    let f = facts(None, None, &VIEW);
    run(&p, &f, &mut zone, T0, 0).unwrap();
    run(&p, &f, &mut zone, T0, 0).unwrap();
    let d = run(&p, &f, &mut zone, T0 + 3_600_000, 0).unwrap_err();
    assert_eq!(d.error.code(), "insufficient_quota");
    assert_eq!(d.error.reason(), "requests_quota");
    assert_eq!(d.retry_after_s, Some(23 * 3600));
    assert!(run(&p, &f, &mut zone, T0 + 86_400_000, 0).is_ok());
}

#[test]
fn counters_survive_a_new_limit_but_not_a_new_window_or_kind() {
    let mut zone = Zone::new(64);
    let f = facts(Some("m"), None, &VIEW);
    let before =
        policies(json!([{"name": "rpm", "type": "requests", "limit": 10, "window": "60s"}]));
    for _ in 0..5 {
        run(&before, &f, &mut zone, T0, 1).unwrap();
    }
    // the same policy with a higher limit (a new snapshot): the five requests still count
    let raised =
        policies(json!([{"name": "rpm", "type": "requests", "limit": 7, "window": "60s"}]));
    run(&raised, &f, &mut zone, T0, 1).unwrap();
    run(&raised, &f, &mut zone, T0, 1).unwrap();
    assert!(
        run(&raised, &f, &mut zone, T0, 1).is_err(),
        "5 + 2 of 7 used"
    );
    // another window is another counter: it starts empty
    let wider =
        policies(json!([{"name": "rpm", "type": "requests", "limit": 7, "window": "120s"}]));
    for _ in 0..7 {
        run(&wider, &f, &mut zone, T0, 1).unwrap();
    }
    assert!(run(&wider, &f, &mut zone, T0, 1).is_err());
    // the same id counting tokens instead of requests: another counter too
    let tokens =
        policies(json!([{"name": "rpm", "type": "tokens", "limit": 100, "window": "60s"}]));
    run(&tokens, &f, &mut zone, T0, 90).unwrap();
}
