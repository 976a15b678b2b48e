use serde_json::json;

use super::*;
use crate::core::admin::state::StoredCredential;

const KEY: &str = "sk-gw-0123456789abcdefghijklmnopqrstuvwxyzABCDE";

fn ctx() -> Ctx<'static> {
    Ctx {
        now_ms: 1_000_000,
        seal: &crate::core::admin::test_seal,
        new_key: Some(KEY),
    }
}

fn run(state: &mut State, op: Op) -> Result<Applied, ApiError> {
    let mut next = state.clone();
    let a = apply(&mut next, &op, &ctx())?;
    *state = next;
    Ok(a)
}

fn with_namespace() -> State {
    let mut s = State::default();
    run(
        &mut s,
        Op::CreateNamespace(json!({"code": "team-a", "name": "Team A"})),
    )
    .unwrap();
    s
}

#[test]
fn namespaces_are_created_updated_and_deleted() {
    let mut s = with_namespace();
    let e = run(&mut s, Op::CreateNamespace(json!({"code": "team-a"}))).unwrap_err();
    assert_eq!((e.status, e.details[0].path.as_str()), (409, "code"));
    let e = run(&mut s, Op::CreateNamespace(json!({"code": "a b"}))).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.details[0].path, "code");
    assert!(e.message.contains("may only contain"), "{}", e.message);
    let e = run(
        &mut s,
        Op::CreateNamespace(json!({"code": "x", "colour": "red"})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "colour");
    let e = run(&mut s, Op::CreateNamespace(json!({"code": "x", "name": 5}))).unwrap_err();
    assert_eq!(
        (e.details[0].path.as_str(), e.details[0].message.as_str()),
        ("name", "must be a string")
    );
    let e = run(&mut s, Op::CreateNamespace(json!([]))).unwrap_err();
    assert_eq!(e.details[0].path, "");

    let a = run(
        &mut s,
        Op::PatchNamespace("team-a".into(), json!({"status": "disabled"})),
    )
    .unwrap();
    assert_eq!(a.body["status"], "disabled");
    assert_eq!(a.body["name"], "Team A");
    let a = run(
        &mut s,
        Op::ReplaceNamespace("team-a".into(), json!({"description": "d"})),
    )
    .unwrap();
    assert_eq!(
        (a.body["status"].as_str(), a.body["name"].as_str()),
        (Some("enabled"), None)
    );
    let e = run(
        &mut s,
        Op::PatchNamespace("team-a".into(), json!({"code": "b"})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "code");
    // the view as GET shows it goes back unchanged
    let view = crate::core::admin::views::namespace(s.namespace("team-a").unwrap());
    let a = run(&mut s, Op::ReplaceNamespace("team-a".into(), view.clone())).unwrap();
    assert_eq!(a.body, view);
    let e = run(&mut s, Op::PatchNamespace("nope".into(), json!({}))).unwrap_err();
    assert_eq!(e.status, 404);
    run(&mut s, Op::DeleteNamespace("team-a".into())).unwrap();
    assert!(s.namespaces.is_empty());
}

#[test]
fn keys_are_generated_imported_rotated_and_expire() {
    let mut s = with_namespace();
    let a = run(
        &mut s,
        Op::CreateKey("team-a".into(), json!({"name": "ci"})),
    )
    .unwrap();
    assert_eq!(a.status, 201);
    assert_eq!(a.secret.as_deref(), Some(KEY));
    assert_eq!(a.body["key"], KEY);
    assert_eq!(a.body["prefix"], "sk-gw-0123");
    let id = a.body["id"].as_str().unwrap().to_string();
    let sha = crate::core::snapshot::sha256_hex(KEY.as_bytes());
    assert_eq!(id, sha[..12]);
    // the plaintext is nowhere in the state
    assert!(!serde_json::to_string(&s).unwrap().contains(KEY));
    // the same key again: a conflict
    let e = run(
        &mut s,
        Op::CreateKey("team-a".into(), json!({"sha256": sha})),
    )
    .unwrap_err();
    assert_eq!(e.status, 409);
    let e = run(
        &mut s,
        Op::CreateKey("team-a".into(), json!({"sha256": "abc"})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "sha256");
    let e = run(
        &mut s,
        Op::CreateKey("team-a".into(), json!({"expires_at": "yesterday"})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "expires_at");
    let e = run(
        &mut s,
        Op::CreateKey("team-a".into(), json!({"expires_at": 5})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].message, "must be in the future");
    let imported = "a".repeat(64);
    let a = run(
        &mut s,
        Op::CreateKey(
            "team-a".into(),
            json!({"sha256": imported, "prefix": "sk-old"}),
        ),
    )
    .unwrap();
    assert_eq!(a.action, "key.import");
    assert!(a.secret.is_none());

    let a = run(
        &mut s,
        Op::PatchKey("team-a".into(), id.clone(), json!({"enabled": false})),
    )
    .unwrap();
    assert_eq!(a.body["status"], "disabled");
    let doc = crate::core::admin::document::document(&s, 1, 0);
    assert_eq!(
        doc["namespaces"][0]["api_keys"].as_array().unwrap().len(),
        1
    );
    run(
        &mut s,
        Op::PatchKey(
            "team-a".into(),
            id.clone(),
            json!({"enabled": true, "expires_at": 2_000_000_000}),
        ),
    )
    .unwrap();
    assert_eq!(
        s.namespaces["team-a"].keys[&id].expires_at,
        Some(2_000_000_000_000)
    );
    run(
        &mut s,
        Op::PatchKey("team-a".into(), id.clone(), json!({"expires_at": null})),
    )
    .unwrap();
    assert_eq!(s.namespaces["team-a"].keys[&id].expires_at, None);

    // rotation: the new key comes from the generator, the old one ends after the grace
    let rotated = "sk-gw-rotated-key-rotated-key-rotated-key-rota";
    let mut next = s.clone();
    let rctx = Ctx {
        new_key: Some(rotated),
        ..ctx()
    };
    let a = apply(
        &mut next,
        &Op::RotateKey("team-a".into(), id.clone(), json!({"grace": "1h"})),
        &rctx,
    )
    .unwrap();
    s = next;
    assert_eq!(a.body["key"], rotated);
    assert_eq!(a.body["new"]["name"], "ci");
    let old = &s.namespaces["team-a"].keys[&id];
    assert_eq!(old.expires_at, Some(1_000_000 + 3_600_000));
    assert_eq!(
        old.rotated_to.as_deref(),
        Some(a.body["new"]["id"].as_str().unwrap())
    );
    let e = run(
        &mut s,
        Op::RotateKey("team-a".into(), id.clone(), json!({"grace": "90d"})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "grace");
    run(&mut s, Op::DeleteKey("team-a".into(), id.clone())).unwrap();
    assert!(!s.namespaces["team-a"].keys.contains_key(&id));
    assert_eq!(
        run(&mut s, Op::DeleteKey("team-a".into(), id))
            .unwrap_err()
            .status,
        404
    );
}

#[test]
fn policies_are_checked_by_the_data_plane_parser() {
    let mut s = with_namespace();
    let a = run(
        &mut s,
        Op::CreateItem(
            ItemKind::Policy,
            "team-a".into(),
            json!({"type": "requests", "limit": 5, "window": "1m"}),
        ),
    )
    .unwrap();
    let id = a.body["id"].as_u64().unwrap();
    assert_eq!(a.body["position"], 0);
    let e = run(
        &mut s,
        Op::CreateItem(
            ItemKind::Policy,
            "team-a".into(),
            json!({"type": "requests", "limit": -1, "window": "1m"}),
        ),
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.details[0].path, "limit");
    let e = run(
        &mut s,
        Op::CreateItem(
            ItemKind::Policy,
            "team-a".into(),
            json!({"type": "requests", "limit": 5, "window": "1m", "color": 1}),
        ),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "color");
    // a second policy with the same effective name
    let e = run(
        &mut s,
        Op::CreateItem(
            ItemKind::Policy,
            "team-a".into(),
            json!({"type": "requests", "limit": 9, "window": "60s"}),
        ),
    )
    .unwrap_err();
    assert_eq!(e.status, 400, "{e:?}");
    let a = run(
        &mut s,
        Op::CreateItem(
            ItemKind::Policy,
            "team-a".into(),
            json!({"type": "models", "allow": ["gpt-*"], "position": 0}),
        ),
    )
    .unwrap();
    assert_eq!(a.body["position"], 0);
    assert_eq!(s.namespaces["team-a"].policies[1].id, id);
    let a = run(
        &mut s,
        Op::PatchItem(
            ItemKind::Policy,
            "team-a".into(),
            id,
            json!({"limit": 10, "position": 0}),
        ),
    )
    .unwrap();
    assert_eq!(
        (a.body["limit"].as_u64(), a.body["position"].as_u64()),
        (Some(10), Some(0))
    );
    assert_eq!(a.body["window"], "1m");
    let e = run(
        &mut s,
        Op::PatchItem(
            ItemKind::Policy,
            "team-a".into(),
            id,
            json!({"position": 7}),
        ),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "position");
    let a = run(
        &mut s,
        Op::ReplaceItem(ItemKind::Matcher, "team-a".into(), 99, json!({})),
    )
    .unwrap_err();
    assert_eq!(a.status, 404);
    let a = run(
        &mut s,
        Op::CreateItem(
            ItemKind::Matcher,
            "team-a".into(),
            json!({"type": "header", "field": "x-team", "operator": "equals", "value": "a"}),
        ),
    )
    .unwrap();
    let m = a.body["id"].as_u64().unwrap();
    let e = run(
        &mut s,
        Op::ReplaceItem(
            ItemKind::Matcher,
            "team-a".into(),
            m,
            json!({"type": "header", "field": "x", "operator": "regex", "value": "("}),
        ),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "value");
    run(
        &mut s,
        Op::DeleteItem(ItemKind::Policy, "team-a".into(), id),
    )
    .unwrap();
    assert_eq!(s.namespaces["team-a"].policies.len(), 1);
}

#[test]
fn targets_keep_their_credential_write_only_and_routes_reference_them() {
    let mut s = with_namespace();
    let t = json!({"name": "openai", "provider": "openai", "base_url": "https://api.openai.com/v1", "credential": {"value": "sk-provider-1234"}});
    let a = run(&mut s, Op::CreateTarget(t)).unwrap();
    assert_eq!(
        a.body["credential"],
        json!({"set": true, "kind": "value", "last4": "1234"})
    );
    assert!(!a.body.to_string().contains("sk-provider"));
    // GET, edit, PUT: the credential view sent back keeps the credential
    let mut back = a.body.clone();
    back["max_failures"] = json!(5);
    run(&mut s, Op::ReplaceTarget("openai".into(), back)).unwrap();
    assert!(matches!(
        s.targets["openai"].credential,
        Some(StoredCredential::Sealed { .. })
    ));
    assert_eq!(s.targets["openai"].spec["max_failures"], 5);
    let e = run(
        &mut s,
        Op::PatchTarget("openai".into(), json!({"credential": {"value": "a b"}})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "credential.value");
    let e = run(
        &mut s,
        Op::PatchTarget("openai".into(), json!({"base_url": "ftp://x"})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "base_url");
    let a = run(
        &mut s,
        Op::PatchTarget("openai".into(), json!({"credential": null})),
    )
    .unwrap();
    assert_eq!(a.body["credential"], json!({"set": false}));

    let e = run(
        &mut s,
        Op::CreateRoute(json!({"name": "r", "targets": ["nope"]})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "targets[0]");
    run(
        &mut s,
        Op::CreateRoute(json!({"name": "r", "targets": ["openai"], "namespaces": ["team-a"]})),
    )
    .unwrap();
    let a = run(
        &mut s,
        Op::CreateRoute(json!({"name": "first", "targets": ["openai"], "position": 0})),
    )
    .unwrap();
    assert_eq!(a.body["position"], 0);
    assert_eq!(s.routes[1].name, "r");
    assert_eq!(
        run(&mut s, Op::DeleteTarget("openai".into()))
            .unwrap_err()
            .status,
        409
    );
    assert_eq!(
        run(&mut s, Op::DeleteNamespace("team-a".into()))
            .unwrap_err()
            .status,
        409
    );
    let a = run(
        &mut s,
        Op::PatchRoute(
            "r".into(),
            json!({"targets": [{"target": "openai", "weight": 3}], "position": 0}),
        ),
    )
    .unwrap();
    assert_eq!(a.body["position"], 0);
    assert_eq!(a.body["namespaces"], json!(["team-a"]));
    run(&mut s, Op::DeleteRoute("r".into())).unwrap();
    run(&mut s, Op::DeleteRoute("first".into())).unwrap();
    run(&mut s, Op::DeleteTarget("openai".into())).unwrap();
    assert!(s.targets.is_empty());
}

#[test]
fn settings_and_merge_patch() {
    let mut s = State::default();
    let a = run(&mut s, Op::PatchSettings(json!({"unmatched_status": 404}))).unwrap();
    assert_eq!(a.body["unmatched_status"], 404);
    let e = run(
        &mut s,
        Op::ReplaceSettings(json!({"unmatched_status": 403})),
    )
    .unwrap_err();
    assert_eq!(e.details[0].path, "unmatched_status");
    run(&mut s, Op::ReplaceSettings(json!({}))).unwrap();
    assert_eq!(s.settings.unmatched_status, 401);

    let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
    merge_patch(&mut v, &json!({"a": {"b": null, "e": 3}, "d": [2, 3]}));
    assert_eq!(v, json!({"a": {"c": 2, "e": 3}, "d": [2, 3]}));
}

#[test]
fn a_namespace_put_back_as_get_shows_it_changes_nothing() {
    let mut s = with_namespace();
    let view = crate::core::admin::views::namespace(&s.namespaces["team-a"]);
    let before = s.clone();
    run(&mut s, Op::ReplaceNamespace("team-a".into(), view.clone())).unwrap();
    assert_eq!(s, before);
    run(&mut s, Op::PatchNamespace("team-a".into(), view)).unwrap();
    assert_eq!(s, before);
}

#[test]
fn what_mysql_cannot_store_or_no_url_can_name_is_refused_with_its_path() {
    let mut s = with_namespace();
    let long = "n".repeat(256);
    let e = run(
        &mut s,
        Op::CreateNamespace(json!({"code": "b", "name": long})),
    )
    .unwrap_err();
    assert_eq!((e.status, e.details[0].path.as_str()), (400, "name"));
    let e = run(
        &mut s,
        Op::PatchNamespace("team-a".into(), json!({"description": "d".repeat(65_536)})),
    )
    .unwrap_err();
    assert_eq!((e.status, e.details[0].path.as_str()), (400, "description"));
    // 255 characters of 4 bytes each fit a utf8mb4 VARCHAR(255)
    run(
        &mut s,
        Op::PatchNamespace("team-a".into(), json!({"name": "\u{1F600}".repeat(255)})),
    )
    .unwrap();
    let target = |name: &str| {
        Op::CreateTarget(
            json!({"name": name, "provider": "openai", "base_url": "http://127.0.0.1:9/v1"}),
        )
    };
    for bad in ["a/b", ".", "..", &"t".repeat(256)] {
        let e = run(&mut s, target(bad)).unwrap_err();
        assert_eq!(
            (e.status, e.details[0].path.as_str()),
            (400, "name"),
            "{bad}"
        );
    }
    run(&mut s, target("a.b")).unwrap();
    let e = run(
        &mut s,
        Op::CreateRoute(json!({"name": "r/1", "targets": ["a.b"]})),
    )
    .unwrap_err();
    assert_eq!((e.status, e.details[0].path.as_str()), (400, "name"));
    let e = crate::core::admin::document::import(
        &json!({"targets": [{"name": "x/y", "provider": "openai", "base_url": "http://127.0.0.1:9/v1"}]}),
        &State::default(),
        &crate::core::admin::document::ImportEnv {
            now_ms: 1,
            seal: &crate::core::admin::test_seal,
            any_file: false,
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.status, e.details[0].path.as_str()),
        (400, "targets[0].name")
    );
}

#[test]
fn names_a_url_cannot_hold_and_values_too_long_to_store_are_refused() {
    let mut s = with_namespace();
    let invalid = |e: ApiError| (e.status, e.details[0].path.clone());
    // nginx resolves "." and ".." and decodes %2F before the API sees the path
    for code in [".", ".."] {
        let e = run(&mut s, Op::CreateNamespace(json!({ "code": code }))).unwrap_err();
        assert_eq!(invalid(e), (400, "code".to_string()), "{code}");
    }
    run(&mut s, Op::CreateNamespace(json!({"code": ".a"}))).unwrap();
    let target = |name: &str| json!({"name": name, "provider": "openai", "base_url": "http://127.0.0.1:9/v1"});
    for name in [".", "..", "a/b"] {
        let e = run(&mut s, Op::CreateTarget(target(name))).unwrap_err();
        assert_eq!(invalid(e), (400, "name".to_string()), "{name}");
    }
    run(&mut s, Op::CreateTarget(target("t"))).unwrap();
    for name in [".", "a/b"] {
        let e = run(
            &mut s,
            Op::CreateRoute(json!({"name": name, "targets": ["t"]})),
        )
        .unwrap_err();
        assert_eq!(invalid(e), (400, "name".to_string()), "{name}");
    }
    // the columns' sizes
    let long = "n".repeat(256);
    let e = run(&mut s, Op::CreateTarget(target(&long))).unwrap_err();
    assert_eq!(invalid(e), (400, "name".to_string()));
    run(&mut s, Op::CreateTarget(target(&"é".repeat(255)))).unwrap();
    let e = run(
        &mut s,
        Op::PatchNamespace("team-a".into(), json!({ "name": long })),
    )
    .unwrap_err();
    assert_eq!(invalid(e), (400, "name".to_string()));
    let e = run(
        &mut s,
        Op::PatchNamespace("team-a".into(), json!({"description": "d".repeat(10_001)})),
    )
    .unwrap_err();
    assert_eq!(invalid(e), (400, "description".to_string()));
    let e = run(
        &mut s,
        Op::PatchTarget(
            "t".into(),
            json!({"credential": {"value": "k".repeat(4097)}}),
        ),
    )
    .unwrap_err();
    assert_eq!(invalid(e), (400, "credential.value".to_string()));
    run(
        &mut s,
        Op::PatchTarget(
            "t".into(),
            json!({"credential": {"value": "k".repeat(4096)}}),
        ),
    )
    .unwrap();
    // a whole document is held to the same
    let e = crate::core::admin::document::import(
        &json!({"routes": [{"name": "..", "targets": ["t"]}],
                "targets": [{"name": "t", "provider": "openai", "base_url": "http://h"}]}),
        &State::default(),
        &crate::core::admin::document::ImportEnv {
            now_ms: 0,
            seal: &crate::core::admin::test_seal,
            any_file: false,
        },
    )
    .unwrap_err();
    assert_eq!(invalid(e), (400, "routes[0].name".to_string()));
}

#[test]
fn file_credentials_sent_to_the_api_name_only_files_beside_the_config() {
    let mut s = with_namespace();
    let t = |file: &str| {
        json!({"name": "t", "provider": "openai", "base_url": "http://127.0.0.1:9/v1",
               "credential": {"file": file}})
    };
    for bad in ["/etc/passwd", "../secret", "keys/../../x"] {
        let e = run(&mut s, Op::CreateTarget(t(bad))).unwrap_err();
        assert_eq!(
            (e.status, e.details[0].path.as_str()),
            (400, "credential.file"),
            "{bad}"
        );
    }
    run(&mut s, Op::CreateTarget(t("keys/openai"))).unwrap();
    // a whole document sent to the API is held to the same; a node's own file is not
    let doc = json!({"targets": [{"name": "a", "provider": "openai", "base_url": "http://h",
                                  "credential": {"file": "/etc/nginx/keys/a"}}]});
    let env = |any_file| crate::core::admin::document::ImportEnv {
        now_ms: 0,
        seal: &crate::core::admin::test_seal,
        any_file,
    };
    let e = crate::core::admin::document::import(&doc, &State::default(), &env(false)).unwrap_err();
    assert_eq!(e.details[0].path, "targets[0].credential");
    assert!(crate::core::admin::document::import(&doc, &State::default(), &env(true)).is_ok());
}
