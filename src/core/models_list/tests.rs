use serde_json::{json, Value};

use super::*;

fn config() -> GatewayConfig {
    let doc = json!({
        "version": 1,
        "namespaces": [
            {"code": "open"},
            {"code": "narrow", "policies": [
                {"type": "models", "allow": ["gpt-4o-mini", "claude-*", "llama"]}
            ]},
            {"code": "trial", "policies": [
                {"type": "models", "allow": ["nothing"], "dry_run": true}
            ]},
            {"code": "local-team"}
        ],
        "targets": [
            {"name": "openai", "provider": "openai", "base_url": "https://api.openai.com/v1",
             "credential": {"value": "k"}},
            {"name": "claude", "provider": "anthropic", "base_url": "https://api.anthropic.com/v1",
             "credential": {"value": "k"}},
            {"name": "local", "provider": "openai-compatible", "base_url": "http://127.0.0.1:8000"}
        ],
        "routes": [
            {"name": "claude", "path_prefix": "/v1/messages",
             "models": ["claude-haiku-4-5", "claude-sonnet-*"], "targets": ["claude"]},
            {"name": "mine", "path_prefix": "/v1/", "namespaces": ["local-team"],
             "targets": ["local"]},
            {"name": "gpt", "path_prefix": "/v1/", "models": ["gpt-4o", "gpt-4o*", "o3"],
             "targets": ["openai"]},
            {"name": "v2", "path_prefix": "/v2/", "models": ["other"], "targets": ["local"]}
        ]
    });
    GatewayConfig::from_json(doc.to_string().as_bytes()).expect("valid config")
}

fn ns<'a>(c: &'a GatewayConfig, code: &str) -> &'a Namespace {
    c.namespaces
        .iter()
        .find(|n| n.code == code)
        .expect("namespace")
}

fn ids(list: &[Listed]) -> Vec<&str> {
    list.iter().map(|m| m.id.as_str()).collect()
}

fn call(code: &str, path: &str, shape: ErrorShape, page: Page) -> Result<Value, GatewayError> {
    let c = config();
    let ask = ModelsAsk::of(path).expect("a models path");
    let body = answer(&c, Some(ns(&c, code)), ask, shape, &page)?;
    Ok(serde_json::from_slice(&body).expect("JSON"))
}

#[test]
fn asks_are_read_from_the_path() {
    assert_eq!(
        ModelsAsk::of("/v1/models"),
        Some(ModelsAsk::List { root: "/v1" })
    );
    assert_eq!(
        ModelsAsk::of("/v1/models/"),
        Some(ModelsAsk::List { root: "/v1" })
    );
    assert_eq!(
        ModelsAsk::of("/x/v1/models/meta-llama/Llama-3.1-8B"),
        Some(ModelsAsk::Get {
            root: "/x/v1",
            id: "meta-llama/Llama-3.1-8B"
        })
    );
    assert_eq!(ModelsAsk::of("/v1/chat/completions"), None);
    assert_eq!(ModelsAsk::of("/v1/modelsx"), None);
}

#[test]
fn literal_names_of_the_roots_routes_only() {
    let c = config();
    // globs are not listed; /v2/'s route is not under /v1
    assert_eq!(
        ids(&available(&c, ns(&c, "open"), "/v1")),
        ["claude-haiku-4-5", "gpt-4o", "o3"]
    );
    assert_eq!(ids(&available(&c, ns(&c, "open"), "/v2")), ["other"]);
    let owners: Vec<&str> = available(&c, ns(&c, "open"), "/v1")
        .iter()
        .map(|m| m.owned_by)
        .collect();
    assert_eq!(owners, ["anthropic", "openai", "openai"]);
}

#[test]
fn the_models_policy_narrows_and_names_glob_served_models() {
    let c = config();
    // gpt-4o-mini: named by the policy, served by the gpt-4o* glob; llama: named, but no
    // route serves it; gpt-4o and o3: served, but not allowed
    assert_eq!(
        ids(&available(&c, ns(&c, "narrow"), "/v1")),
        ["claude-haiku-4-5", "gpt-4o-mini"]
    );
    // a dry-run policy neither narrows nor names
    assert_eq!(
        ids(&available(&c, ns(&c, "trial"), "/v1")),
        ["claude-haiku-4-5", "gpt-4o", "o3"]
    );
}

#[test]
fn a_catch_all_route_serves_every_listed_name() {
    let c = config();
    let list = available(&c, ns(&c, "local-team"), "/v1");
    // the claude route comes first for its model; the rest go to the team's own route
    assert_eq!(ids(&list), ["claude-haiku-4-5", "gpt-4o", "o3"]);
    assert_eq!(list[1].owned_by, "openai-compatible");
}

#[test]
fn openai_shape_list_and_model() {
    let v = call("narrow", "/v1/models", ErrorShape::OpenAi, Page::default()).unwrap();
    assert_eq!(
        v,
        json!({"object": "list", "data": [
            {"id": "claude-haiku-4-5", "object": "model", "created": 0, "owned_by": "anthropic"},
            {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"}
        ]})
    );
    let v = call(
        "narrow",
        "/v1/models/gpt-4o-mini",
        ErrorShape::OpenAi,
        Page::default(),
    );
    assert_eq!(v.unwrap()["id"], "gpt-4o-mini");
    for id in ["gpt-4o", "llama", "nope"] {
        let path = format!("/v1/models/{id}");
        let e = call("narrow", &path, ErrorShape::OpenAi, Page::default()).unwrap_err();
        assert_eq!(e, GatewayError::NoRoute, "{id}");
    }
}

#[test]
fn anthropic_shape_pages() {
    let a = ErrorShape::Anthropic;
    let v = call("open", "/v1/models", a, Page::default()).unwrap();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["data"][0]["display_name"], "claude-haiku-4-5");
    assert_eq!(v["data"][0]["created_at"], "1970-01-01T00:00:00Z");
    assert_eq!(
        (v["has_more"].as_bool(), v["last_id"].as_str()),
        (Some(false), Some("o3"))
    );

    let page = |limit, after_id, before_id| Page {
        limit,
        after_id,
        before_id,
    };
    let v = call("open", "/v1/models", a, page(Some("2"), None, None)).unwrap();
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        (v["has_more"].as_bool(), v["first_id"].as_str()),
        (Some(true), Some("claude-haiku-4-5"))
    );
    let v = call(
        "open",
        "/v1/models",
        a,
        page(Some("2"), Some("gpt-4o"), None),
    )
    .unwrap();
    assert_eq!(
        (v["has_more"].as_bool(), v["first_id"].as_str()),
        (Some(false), Some("o3"))
    );
    let v = call("open", "/v1/models", a, page(Some("1"), None, Some("o3"))).unwrap();
    assert_eq!(
        (v["has_more"].as_bool(), v["first_id"].as_str()),
        (Some(true), Some("gpt-4o"))
    );
    let v = call("open", "/v1/models", a, page(None, Some("unknown"), None)).unwrap();
    assert_eq!(v["data"], json!([]));
    assert!(v["first_id"].is_null());
    for bad in ["0", "1001", "x", "-1"] {
        let e = call("open", "/v1/models", a, page(Some(bad), None, None)).unwrap_err();
        assert_eq!(e.status(), 400, "{bad}");
    }
    let v = call("open", "/v1/models/o3", a, Page::default()).unwrap();
    assert_eq!(v["id"], "o3");
}

#[test]
fn no_namespace_lists_nothing() {
    let c = config();
    let body = answer(
        &c,
        None,
        ModelsAsk::List { root: "/v1" },
        ErrorShape::OpenAi,
        &Page::default(),
    );
    let v: Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(v["data"], json!([]));
}
