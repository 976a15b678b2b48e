use serde_json::{json, Value};

use super::*;

fn routing(v: Value) -> Result<Routing, String> {
    let targets = v["targets"].as_array().cloned().unwrap_or_default();
    let routes = v["routes"].as_array().cloned().unwrap_or_default();
    parse_routing(&targets, &routes, &["team-a", "team-b"]).map_err(|e| e.to_string())
}

fn sample() -> Routing {
    routing(json!({
        "targets": [
            {"name": "openai", "provider": "openai", "base_url": "https://api.openai.com/v1",
             "credential": {"env": "OPENAI_API_KEY"}},
            {"name": "azure", "provider": "azure",
             "base_url": "https://east.openai.azure.com/openai/deployments/gpt-4o/",
             "api_version": "2024-10-21", "credential": {"value": "az-key"}},
            {"name": "claude", "provider": "anthropic", "base_url": "https://api.anthropic.com/v1",
             "credential": {"file": "/etc/keys/anthropic"}},
            {"name": "local", "provider": "openai-compatible", "base_url": "http://127.0.0.1:8000"}
        ],
        "routes": [
            {"name": "claude", "path_prefix": "/v1/messages", "targets": ["claude"],
             "rewrite": {"from": "/v1/", "to": "/"}},
            {"name": "team-b", "path_prefix": "/v1/", "namespaces": ["team-b"],
             "targets": ["local"]},
            {"name": "gpt", "path_prefix": "/v1/", "models": ["gpt-4o*"],
             "targets": [{"target": "openai", "weight": 3}, {"target": "azure", "weight": 1}],
             "fallback": ["local"]},
            {"name": "rest", "targets": ["local"], "rewrite": {"from": "/", "to": "/api/"}}
        ]
    }))
    .unwrap()
}

#[test]
fn routes_match_path_model_and_namespace_in_order() {
    let r = sample();
    assert_eq!(
        r.route_for("/v1/messages", Some("claude-x"), "team-a"),
        Some(0)
    );
    assert_eq!(
        r.route_for("/v1/chat/completions", Some("gpt-4o"), "team-b"),
        Some(1)
    );
    assert_eq!(
        r.route_for("/v1/chat/completions", Some("gpt-4o-mini"), "team-a"),
        Some(2)
    );
    assert_eq!(
        r.route_for("/v1/chat/completions", Some("llama"), "team-a"),
        Some(3)
    );
    assert_eq!(r.route_for("/v1/chat/completions", None, "team-a"), Some(3));
}

#[test]
fn weights_are_honoured_and_spread() {
    let r = sample();
    let route = &r.routes[2];
    let firsts: Vec<usize> = (0..8).map(|n| attempt_order(route, n)[0]).collect();
    // openai (0) three times for each azure (1), interleaved
    assert_eq!(firsts, [0, 0, 1, 0, 0, 0, 1, 0]);
    let order = attempt_order(route, 8);
    assert_eq!(order.len(), 3);
    // after the weighted choice: the fallback, then the other weighted target
    assert!(order == [0, 3, 1] || order == [1, 3, 0], "{order:?}");
}

#[test]
fn weighted_counts_over_many_requests() {
    let r = routing(json!({
        "targets": [
            {"name": "a", "provider": "openai", "base_url": "http://a"},
            {"name": "b", "provider": "openai", "base_url": "http://b"},
            {"name": "c", "provider": "openai", "base_url": "http://c"}
        ],
        "routes": [{"targets": [{"target": "a", "weight": 5}, {"target": "b", "weight": 3},
                                 {"target": "c", "weight": 2}], "max_attempts": 2}]
    }))
    .unwrap();
    let mut counts = [0; 3];
    for n in 0..1000 {
        let order = attempt_order(&r.routes[0], n);
        assert_eq!(order.len(), 2);
        counts[order[0]] += 1;
    }
    assert_eq!(counts, [500, 300, 200]);
}

#[test]
fn upstream_uris() {
    let r = sample();
    let t = &r.targets;
    assert_eq!(
        upstream_uri(&r.routes[2], &t[0], "/v1/chat/completions", None),
        "/v1/chat/completions"
    );
    assert_eq!(
        upstream_uri(&r.routes[2], &t[1], "/v1/chat/completions", Some("x=1")),
        "/openai/deployments/gpt-4o/chat/completions?x=1&api-version=2024-10-21"
    );
    assert_eq!(
        upstream_uri(&r.routes[0], &t[2], "/v1/messages", None),
        "/v1/messages"
    );
    assert_eq!(
        upstream_uri(&r.routes[3], &t[3], "/v1/models", Some("a=b")),
        "/api/v1/models?a=b"
    );
    assert_eq!(t[3].host_header(), "127.0.0.1:8000");
    assert_eq!(t[0].host_header(), "api.openai.com");
}

#[test]
fn credential_headers_per_provider() {
    let r = sample();
    let t = &r.targets;
    assert_eq!(
        credential_headers(&t[0], Some("sk-1"), false),
        [("Authorization", "Bearer sk-1".to_string())]
    );
    assert_eq!(
        credential_headers(&t[1], Some("az"), false),
        [("api-key", "az".to_string())]
    );
    assert_eq!(
        credential_headers(&t[2], Some("ak"), false),
        [
            ("x-api-key", "ak".to_string()),
            ("anthropic-version", "2023-06-01".to_string())
        ]
    );
    assert_eq!(
        credential_headers(&t[2], Some("ak"), true),
        [("x-api-key", "ak".to_string())]
    );
    assert!(credential_headers(&t[3], None, false).is_empty());
}

#[test]
fn config_errors_name_the_field() {
    let t = json!({"name": "a", "provider": "openai", "base_url": "https://x"});
    let e = |targets: Value, routes: Value| {
        routing(json!({"targets": targets, "routes": routes})).unwrap_err()
    };
    assert_eq!(
        e(json!([{"name": "a", "provider": "gemini", "base_url": "https://x"}]), json!([])),
        "targets[0].provider: unknown provider \"gemini\" (expected openai, azure, anthropic or openai-compatible)"
    );
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "openai", "base_url": "ftp://x"}]),
            json!([])
        ),
        "targets[0].base_url: must start with http:// or https://"
    );
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "openai", "base_url": "https://x:0"}]),
            json!([])
        ),
        "targets[0].base_url: invalid port \"0\""
    );
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "azure", "base_url": "https://x"}]),
            json!([])
        ),
        "targets[0].api_version: is required for azure"
    );
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "openai", "base_url": "https://x",
                    "credential": {"env": "A", "file": "/k"}}]),
            json!([])
        ),
        "targets[0].credential: must have exactly one of \"value\", \"env\", \"file\", \"sealed\""
    );
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "openai", "base_url": "https://x",
                    "credential": {"value": "k", "sealed": "v1:00000000:AAAA"}}]),
            json!([])
        ),
        "targets[0].credential: must have exactly one of \"value\", \"env\", \"file\", \"sealed\""
    );
    // the form is checked when the config is parsed, the value only when it is opened
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "openai", "base_url": "https://x",
                    "credential": {"sealed": "sk-plain-key"}}]),
            json!([])
        ),
        "targets[0].credential.sealed: not a sealed value (expected v1:<key id>:<data>)"
    );
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "openai", "base_url": "https://x",
                    "credential": {"sealed": ""}}]),
            json!([])
        ),
        "targets[0].credential.sealed: must be a non-empty string"
    );
    assert_eq!(
        e(json!([t.clone(), t.clone()]), json!([])),
        "targets[1].name: duplicate target name \"a\" (also targets[0])"
    );
    assert_eq!(
        e(json!([t.clone()]), json!([{"targets": ["b"]}])),
        "routes[0].targets[0]: unknown target \"b\""
    );
    assert_eq!(
        e(json!([t.clone()]), json!([{"targets": []}])),
        "routes[0].targets: must name at least one target"
    );
    assert_eq!(
        e(
            json!([t.clone()]),
            json!([{"targets": ["a"], "namespaces": ["nope"]}])
        ),
        "routes[0].namespaces[0]: unknown namespace \"nope\""
    );
    assert_eq!(
        e(
            json!([t.clone()]),
            json!([{"targets": ["a"], "retry_on": [200]}])
        ),
        "routes[0].retry_on[0]: must be an HTTP status from 400 to 599"
    );
    assert_eq!(
        e(json!([t]), json!([{"targets": ["a"], "path": "/v1/"}])),
        "routes[0].path: unknown field"
    );
}

#[test]
fn timeouts_and_connection_limits() {
    let r = routing(json!({
        "targets": [{"name": "a", "provider": "openai", "base_url": "http://a",
                     "timeouts": {"connect": "250ms", "read": "2m", "send": 5000},
                     "max_connections": 64}],
        "routes": []
    }))
    .unwrap();
    let t = &r.targets[0];
    assert_eq!(
        (
            t.connect_timeout_ms,
            t.send_timeout_ms,
            t.read_timeout_ms,
            t.max_connections
        ),
        (Some(250), Some(5000), Some(120_000), Some(64))
    );
    assert!(routing(
        json!({"targets": [{"name": "a", "provider": "openai", "base_url": "http://a",
        "timeouts": {"read": "2h"}}]})
    )
    .unwrap_err()
    .starts_with("targets[0].timeouts.read: must be"));
}

#[test]
fn base_urls() {
    use super::parse::parse_base_url;
    assert_eq!(
        parse_base_url("https://api.openai.com/v1/").unwrap(),
        (true, "api.openai.com".to_string(), 443, "/v1".to_string())
    );
    assert_eq!(
        parse_base_url("http://[::1]:8080").unwrap(),
        (false, "::1".to_string(), 8080, String::new())
    );
    assert!(parse_base_url("https://user@x").is_err());
}

#[test]
fn health_cools_a_failing_target_down_and_lets_it_back() {
    use super::health::*;
    use crate::core::policy::slot::{Shape, Slot};
    let r = routing(json!({
        "targets": [{"name": "a", "provider": "openai", "base_url": "http://a",
                     "max_failures": 2, "cooldown": "10s"}],
        "routes": []
    }))
    .unwrap();
    let t = &r.targets[0];
    let mut slot = Slot::new(health_key(t), Shape::Health, 0);
    let t0 = 1_000_000;
    assert_eq!(record_failure(&mut slot, t, t0, None), None);
    assert!(!is_cooling(&slot, t0));
    assert_eq!(record_failure(&mut slot, t, t0 + 1, None), Some(10_000));
    assert!(is_cooling(&slot, t0 + 5_000));
    assert!(!is_cooling(&slot, t0 + 10_001));
    // a success clears the count
    record_failure(&mut slot, t, t0 + 20_000, None);
    record_success(&mut slot, t0 + 20_001);
    assert_eq!(record_failure(&mut slot, t, t0 + 20_002, None), None);
    // a provider's Retry-After cools down at once, for as long as it says
    assert_eq!(
        record_failure(&mut slot, t, t0 + 30_000, Some(60_000)),
        Some(60_000)
    );
    assert!(is_cooling(&slot, t0 + 89_000));
    assert!(slot.is_idle(t0 + 100_000));
}

#[test]
fn credentials_are_one_header_safe_token() {
    assert_eq!(credential_secret("sk-1\n", true), Ok("sk-1"));
    assert_eq!(credential_secret("sk-1\r\n", true), Ok("sk-1"));
    assert_eq!(credential_secret("sk-1", true), Ok("sk-1"));
    assert_eq!(credential_secret("a+b/c=", false), Ok("a+b/c="));
    for (raw, file) in [
        ("sk-new\nsk-old\n", true),
        ("sk-1\n\n", true),
        ("sk-1\n", false),
        ("sk-1\r\nX-Injected: 1", false),
    ] {
        assert_eq!(
            credential_secret(raw, file),
            Err("has a line break (one value, one line)"),
            "{raw:?}"
        );
    }
    assert_eq!(
        credential_secret(" sk-1\n", true),
        Err("has a space or tab")
    );
    assert_eq!(
        credential_secret("sk\u{7f}1", false),
        Err("has a character that is not printable ASCII")
    );
    assert_eq!(
        credential_secret("sk-é", false),
        Err("has a character that is not printable ASCII")
    );
    assert_eq!(credential_secret("\n", true), Err("is empty"));
}

#[test]
fn strings_bound_for_headers_and_the_request_line_are_checked() {
    let e = |targets: Value, routes: Value| {
        routing(json!({"targets": targets, "routes": routes})).unwrap_err()
    };
    let ok = json!([{"name": "a", "provider": "openai", "base_url": "https://x"}]);
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "openai", "base_url": "https://x", "credential": {"value": "k\r\nX: 1"}}]),
            json!([])
        ),
        "targets[0].credential.value: the key has a line break (one value, one line)"
    );
    assert_eq!(
        e(
            json!([{"name": "a\nb", "provider": "openai", "base_url": "https://x"}]),
            json!([])
        ),
        "targets[0].name: must not contain control characters (line breaks, tabs, NUL)"
    );
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "anthropic", "base_url": "https://x", "api_version": "2023-06-01\r\nX: 1"}]),
            json!([])
        ),
        "targets[0].api_version: may only contain letters, digits, '-', '_' and '.'"
    );
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "openai", "base_url": "https://x y/v1"}]),
            json!([])
        ),
        "targets[0].base_url: has a host with characters a host name cannot have"
    );
    assert_eq!(
        e(
            json!([{"name": "a", "provider": "openai", "base_url": "https://x/v 1"}]),
            json!([])
        ),
        "targets[0].base_url: has a path that has a space or tab"
    );
    assert_eq!(
        e(ok.clone(), json!([{"name": "r\r\n", "targets": ["a"]}])),
        "routes[0].name: must not contain control characters (line breaks, tabs, NUL)"
    );
    assert_eq!(
        e(
            ok.clone(),
            json!([{"path_prefix": "/v1/ x", "targets": ["a"]}])
        ),
        "routes[0].path_prefix: is a path that has a space or tab"
    );
    assert_eq!(
        e(
            ok,
            json!([{"targets": ["a"], "rewrite": {"from": "/", "to": "/a\nb"}}])
        ),
        "routes[0].rewrite.to: is a path that has a line break (one value, one line)"
    );
}

#[test]
fn a_sealed_credential_is_kept_sealed() {
    let key = crate::core::seal::SealKey::from_bytes([9; 32]);
    let sealed = key.seal("sk-provider", [4; 12]).unwrap();
    let r = routing(json!({
        "targets": [{"name": "a", "provider": "openai", "base_url": "https://x",
                     "credential": {"sealed": sealed}}],
        "routes": [{"targets": ["a"]}]
    }))
    .unwrap();
    assert_eq!(r.targets[0].credential, Some(Credential::Sealed(sealed)));
}
