use std::borrow::Cow;
use std::collections::HashMap;

use super::failover::{next_attempt, Next};
use super::*;
use crate::core::cluster::Node;
use crate::core::policy::slot::Slot;
use crate::core::policy::TableHeader;
use crate::core::routing::worker::WorkerRouting;

struct Headers(HashMap<&'static str, &'static str>);

impl Incoming for Headers {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.get(name).map(|v| Cow::Borrowed(*v))
    }
    fn query_arg(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
}

/// A limit table in plain memory, a settable clock, the worker routing state.
struct TestEnv {
    header: TableHeader,
    slots: Vec<Slot>,
    now: u64,
    routing: WorkerRouting,
}

impl TestEnv {
    fn new() -> TestEnv {
        TestEnv {
            header: TableHeader::default(),
            slots: vec![Slot::default(); 64],
            now: 1_764_547_200_000,
            routing: WorkerRouting::default(),
        }
    }
}

impl Env for TestEnv {
    fn now_ms(&self) -> u64 {
        self.now
    }
    fn with_table<T>(&mut self, f: impl FnOnce(&mut Table) -> T) -> Option<T> {
        let mut t = Table::open(&mut self.header, &mut self.slots);
        Some(f(&mut t))
    }
    fn next_turn(&mut self, route: &Route, index: usize) -> u64 {
        self.routing.next_turn(route, index)
    }
}

fn sha(k: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(k.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn config() -> GatewayConfig {
    let doc = format!(
        r#"{{"namespaces":[
            {{"code":"a","api_keys":["{a}"],"policies":[
                {{"name":"rpm","type":"requests","limit":2,"window":"60s"}},
                {{"name":"out","type":"output_tokens","max":50,"action":"clamp"}},
                {{"name":"watch","type":"models","allow":["gpt-*"],"dry_run":true}}]}},
            {{"code":"b","api_keys":["{b}"]}}],
          "targets":[
            {{"name":"one","provider":"openai","base_url":"http://127.0.0.1:1","max_failures":1,"cooldown":"30s"}},
            {{"name":"two","provider":"openai","base_url":"http://127.0.0.1:2"}}],
          "routes":[{{"path_prefix":"/v1/","models":["gpt-*","m*"],"targets":["one","two"]}}]}}"#,
        a = sha("sk-a"),
        b = sha("sk-b")
    );
    GatewayConfig::from_json(doc.as_bytes()).unwrap()
}

fn req<'a>(body: &'a [u8], key: Option<&str>) -> Request<'a> {
    Request {
        body,
        json_content_type: true,
        key: key.map(|k| ClientKey::new(k.as_bytes())),
        uri: b"/v1/chat/completions",
        routed: true,
        get: false,
        stream_usage: true,
        cluster: None,
    }
}

const CHAT: &[u8] = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

fn no_headers() -> Headers {
    Headers(HashMap::new())
}

fn rejected(d: &Decision) -> Option<(&GatewayError, bool)> {
    match &d.verdict {
        Verdict::Reject { error, logged } => Some((error, *logged)),
        Verdict::Allow | Verdict::Answer(_) => None,
    }
}

#[test]
fn an_unidentified_client_learns_nothing_about_its_body() {
    let cfg = config();
    let mut env = TestEnv::new();
    let d = decide(&cfg, &req(b"{not json", None), &no_headers(), &mut env);
    assert_eq!(rejected(&d), Some((&GatewayError::MissingApiKey, false)));
    let d = decide(
        &cfg,
        &req(b"{not json", Some("sk-a")),
        &no_headers(),
        &mut env,
    );
    assert!(matches!(
        rejected(&d),
        Some((GatewayError::InvalidJson { .. }, false))
    ));
    assert_eq!(
        d.namespace,
        Some(0),
        "identified before the body was judged"
    );
}

#[test]
fn policies_take_from_the_shared_table_and_refuse_past_the_limit() {
    let cfg = config();
    let mut env = TestEnv::new();
    for _ in 0..2 {
        let d = decide(&cfg, &req(CHAT, Some("sk-a")), &no_headers(), &mut env);
        assert!(matches!(d.verdict, Verdict::Allow), "{:?}", d.verdict);
        assert!(d.took_counters);
        assert_eq!(d.policy.takes.len(), 1);
        assert_eq!(d.policy.headers.requests.map(|g| g.limit), Some(2));
        assert_eq!(d.route.as_ref().map(|r| r.route), Some(0));
    }
    let d = decide(&cfg, &req(CHAT, Some("sk-a")), &no_headers(), &mut env);
    let (err, logged) = rejected(&d).expect("third request refused");
    assert!(matches!(err, GatewayError::RateLimited { .. }), "{err:?}");
    assert!(logged, "the denial says why");
    assert_eq!(d.policy.policy.as_deref(), Some("rpm"));
    assert!(
        d.policy.retry_after_s.is_some_and(|s| s > 0 && s <= 66),
        "{:?}",
        d.policy
    );
    assert_eq!(d.policy.denials.len(), 1);
    assert!(d.route.is_none(), "a refused request is not routed");
    // another namespace has its own counters (none)
    let d = decide(&cfg, &req(CHAT, Some("sk-b")), &no_headers(), &mut env);
    assert!(matches!(d.verdict, Verdict::Allow));
    assert!(!d.took_counters);
}

#[test]
fn dry_runs_are_reported_not_enforced() {
    let cfg = config();
    let mut env = TestEnv::new();
    let body = br#"{"model":"mistral","messages":[{"role":"user","content":"hi"}]}"#;
    let d = decide(&cfg, &req(body, Some("sk-a")), &no_headers(), &mut env);
    assert!(matches!(d.verdict, Verdict::Allow));
    assert_eq!(d.policy.dry_run, Some("model_not_allowed"));
    assert_eq!(d.policy.policy.as_deref(), Some("watch"));
    assert_eq!(d.policy.denials.len(), 1);
    assert!(d.policy.denials[0].dry_run);
}

#[test]
fn the_body_upstream_is_clamped_and_asks_streams_for_usage() {
    let cfg = config();
    let mut env = TestEnv::new();
    let body = br#"{"model":"gpt-4o","max_tokens":500,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let d = decide(&cfg, &req(body, Some("sk-a")), &no_headers(), &mut env);
    assert!(matches!(d.verdict, Verdict::Allow));
    let new: serde_json::Value = serde_json::from_slice(d.body.as_deref().unwrap()).unwrap();
    assert_eq!(new["max_tokens"], 50, "clamped to the output policy");
    assert_eq!(new["stream_options"]["include_usage"], true);
    assert!(d.added_include_usage);
    assert_eq!(d.policy.output_cap, Some(50));
    // not a stream and nothing to clamp: the client's body goes as it is
    let d = decide(&cfg, &req(CHAT, Some("sk-b")), &no_headers(), &mut env);
    assert!(d.body.is_none() && !d.added_include_usage);
    // the location does not want usage added
    let mut r = req(body, Some("sk-b"));
    r.stream_usage = false;
    assert!(decide(&cfg, &r, &no_headers(), &mut env).body.is_none());
}

#[test]
fn routing_rotates_puts_cooling_targets_last_and_refuses_what_no_route_serves() {
    let cfg = config();
    let mut env = TestEnv::new();
    let first: Vec<usize> = (0..4)
        .map(|_| {
            decide(&cfg, &req(CHAT, Some("sk-b")), &no_headers(), &mut env)
                .route
                .unwrap()
                .order[0]
        })
        .collect();
    assert_eq!(first, [0, 1, 0, 1], "equal weights alternate");
    // "one" fails once (max_failures 1): it cools down and goes last
    assert_eq!(record_attempt(&cfg, &mut env, 0, true, None), Some(30_000));
    for _ in 0..3 {
        let d = decide(&cfg, &req(CHAT, Some("sk-b")), &no_headers(), &mut env);
        assert_eq!(d.route.unwrap().order, [1, 0]);
    }
    env.now += 30_001;
    let orders: Vec<Vec<usize>> = (0..2)
        .map(|_| {
            decide(&cfg, &req(CHAT, Some("sk-b")), &no_headers(), &mut env)
                .route
                .unwrap()
                .order
        })
        .collect();
    assert!(
        orders.contains(&vec![0, 1]),
        "after the cool-down it takes its turns again"
    );
    let body = br#"{"model":"claude","messages":[{"role":"user","content":"hi"}]}"#;
    let d = decide(&cfg, &req(body, Some("sk-b")), &no_headers(), &mut env);
    assert_eq!(rejected(&d), Some((&GatewayError::NoRoute, false)));
    let mut r = req(body, Some("sk-b"));
    r.routed = false;
    let d = decide(&cfg, &r, &no_headers(), &mut env);
    assert!(
        matches!(d.verdict, Verdict::Allow) && d.route.is_none(),
        "unrouted location"
    );
}

#[test]
fn failover_moves_on_for_retryable_statuses_then_answers() {
    let cfg = config();
    let mut state = RouteState::new(0, vec![0, 1]);
    assert_eq!(
        next_attempt(&cfg.routing, &mut state, 429, Some(7)),
        Next::Retry {
            failed: "one".into(),
            next: "two".into(),
            attempt: 2
        }
    );
    assert_eq!(state.retry_after_s, Some(7));
    assert_eq!(
        next_attempt(&cfg.routing, &mut state, 502, None),
        Next::Answer {
            failed: "two".into(),
            attempts: 2,
            error: GatewayError::TargetsFailed { status: 502 }
        }
    );
    // a status the route does not retry is answered at once
    let mut fresh = RouteState {
        attempt: 0,
        ..state.clone()
    };
    assert!(matches!(
        next_attempt(&cfg.routing, &mut fresh, 400, None),
        Next::Answer { attempts: 1, .. }
    ));
}

/// A namespace with a local concurrency limit and cluster request and token windows.
fn cluster_config() -> GatewayConfig {
    let doc = format!(
        r#"{{"namespaces":[
            {{"code":"c","api_keys":["{c}"],"policies":[
                {{"name":"conc","type":"concurrency","limit":5,"mode":"local"}},
                {{"name":"rpm","type":"requests","limit":10,"window":"60s"}},
                {{"name":"tpm","type":"tokens","limit":100000,"window":"60s",
                  "on_failure":"fail_closed","dry_run":true}}]}},
            {{"code":"d","api_keys":["{d}"],"policies":[
                {{"name":"rpm","type":"requests","limit":4,"window":"60s","fail_open_fraction":0.5}}]}},
            {{"code":"e","api_keys":["{e}"],"policies":[
                {{"name":"rpm","type":"requests","limit":4,"window":"60s","on_failure":"fail_closed"}}]}}]}}"#,
        c = sha("sk-c"),
        d = sha("sk-d"),
        e = sha("sk-e")
    );
    GatewayConfig::from_json(doc.as_bytes()).unwrap()
}

fn cluster_req<'a>(body: &'a [u8], key: &str, node: &'a Node) -> Request<'a> {
    let mut r = req(body, Some(key));
    r.routed = false;
    r.key = Some(ClientKey::new(key.as_bytes()));
    r.cluster = Some(node);
    r
}

fn used(env: &mut TestEnv) -> u64 {
    env.slots.iter().map(|s| s.counts.iter().sum::<u64>()).sum()
}

#[test]
fn cluster_counters_wait_for_redis_after_the_zone_counters() {
    use crate::core::cluster::ask::{CounterReply, Reply};
    let config = cluster_config();
    let node = Node::new("px");
    let mut env = TestEnv::new();
    let d = decide(
        &config,
        &cluster_req(CHAT, "sk-c", &node),
        &no_headers(),
        &mut env,
    );
    assert!(matches!(d.verdict, Verdict::Allow));
    // the local concurrency slot is taken; the two windows are asked of Redis
    assert!(d.took_counters);
    assert_eq!(used(&mut env), 1);
    let ask = d.ask.as_ref().unwrap();
    assert_eq!(ask.counters.len(), 2);
    assert!(ask
        .counters
        .iter()
        .all(|c| c.key.starts_with("px:lim:{c}:")));
    // the token counter is charged the prompt's bound (asked again exactly if it refuses)
    assert!(d.prompt.is_none());
    assert!(ask.prompt_bound);

    // Redis refuses: the zone's slot is given back, 429 with the cluster's numbers
    let mut d2 = d;
    let ask = d2.ask.take().unwrap();
    let now = env.now;
    let cur = now / 3000;
    let reply = Reply {
        refused: 1,
        now_ms: now,
        counters: vec![
            CounterReply {
                used: 10,
                at: cur,
                buckets: vec![(cur - 2, 10)],
            },
            CounterReply {
                used: 0,
                at: cur,
                buckets: vec![],
            },
        ],
    };
    assert!(cluster::conclude(&config, &mut d2, &ask, &reply, &mut env));
    let (err, logged) = rejected(&d2).unwrap();
    assert!(logged);
    assert_eq!(err.status(), 429);
    assert_eq!(d2.policy.headers.requests.unwrap().limit, 10);
    assert_eq!(
        d2.policy.retry_after_s,
        Some(((cur - 2 + 21) * 3000 - now).div_ceil(1000))
    );
    assert_eq!(used(&mut env), 0);
    assert!(!d2.took_counters);

    // an answer that does not fit the question is a failure
    let mut d3 = decide(
        &config,
        &cluster_req(CHAT, "sk-c", &node),
        &no_headers(),
        &mut env,
    );
    let ask = d3.ask.take().unwrap();
    let bad = Reply {
        refused: 0,
        now_ms: now,
        counters: vec![],
    };
    assert!(!cluster::conclude(&config, &mut d3, &ask, &bad, &mut env));
}

/// A request of the namespace of `key` decided without Redis: the decision and what its
/// cluster policies did.
fn without_redis(
    config: &GatewayConfig,
    node: &Node,
    env: &mut TestEnv,
    key: &str,
) -> (Decision, crate::core::cluster::OnFailure) {
    let mut d = decide(config, &cluster_req(CHAT, key, node), &no_headers(), env);
    let ask = d.ask.take().unwrap();
    let how = cluster::degrade(config, &mut d, &ask, env, 2);
    (d, how)
}

#[test]
fn without_redis_fail_open_limits_at_the_fraction_and_fail_closed_refuses() {
    use crate::core::cluster::OnFailure;
    let config = cluster_config();
    let node = Node::new("px");
    let mut env = TestEnv::new();
    // fail_open at 0.5 of 4: two requests pass on this node, the third is refused
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            let (d, how) = without_redis(&config, &node, &mut env, "sk-d");
            assert_eq!(how, OnFailure::Open);
            rejected(&d).map_or(200, |(e, _)| e.status())
        })
        .collect();
    assert_eq!(statuses, vec![200, 200, 429]);
    // fail_closed: 503 limits_unavailable with the breaker's Retry-After
    let (d, how) = without_redis(&config, &node, &mut env, "sk-e");
    assert_eq!(how, OnFailure::Closed);
    let (err, _) = rejected(&d).unwrap();
    assert_eq!(*err, GatewayError::LimitsUnavailable);
    assert_eq!(d.policy.retry_after_s, Some(2));
    // a dry-run fail_closed policy does not refuse: namespace c degrades open, and its
    // local concurrency stays taken while the request goes on
    let (d, how) = without_redis(&config, &node, &mut env, "sk-c");
    assert_eq!(how, OnFailure::Open);
    assert!(rejected(&d).is_none());
}
