//! The configuration's writes, one MySQL transaction each: lock the config head, apply the
//! operation (or import, rollback, the first revision from a file), build the document,
//! check it with the data plane's own loader, store the rows that changed, the revision and
//! the audit row, commit, publish to Redis and, when asked, wait until every live node
//! applied it.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use super::db::{insert_audit, load_state, lock_head, store_changes, write_tx, Audit};
use super::now;
use super::password::random_secret;
use super::publish::wait_applied;
use super::sync::mark_published;
use super::{wait_arg, Admin, ApiRequest, ApiResponse};
use crate::core::admin::auth::Principal;
use crate::core::admin::diff::diff;
use crate::core::admin::document::{document, document_bytes, import, ImportEnv};
use crate::core::admin::endpoint::Endpoint;
use crate::core::admin::error::{split_config_message, strip_prefix, ApiError};
use crate::core::admin::ops::{self, Applied, Ctx, Op};
use crate::core::admin::query::Query;
use crate::core::admin::resource::etag_for;
use crate::core::admin::state::State;
use crate::core::admin::tables;
use crate::core::admin::views::{etag, if_match_holds};
use crate::core::snapshot::{sha256_hex, Source};

/// What a write asks for.
pub(super) enum Intent {
    Op(Op),
    Import(Value),
    Rollback(Value),
    /// The first revision, from a node's configuration file: only while there is none.
    Seed(Value),
}

/// Seeds a config center that has no revision yet with `document` (the node's
/// `ai_gateway_config` file), so that turning the config center on does not replace what
/// the gateway serves with an empty configuration. `Ok(Some(version))` when it did.
pub async fn seed(admin: &Admin, document: &[u8]) -> Result<Option<u64>, ApiError> {
    let doc =
        crate::core::strict_json::parse(document).map_err(|e| ApiError::from_config(&e, ""))?;
    let req = ApiRequest::default();
    let who = Principal {
        user: "bootstrap".into(),
        role: crate::core::admin::auth::Role::Admin,
        via: crate::core::admin::auth::Via::Token,
        token_id: None,
    };
    let r = write(
        admin,
        &req,
        &Endpoint::Config,
        &who,
        &Query::parse(""),
        Intent::Seed(doc),
    )
    .await?;
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    Ok((v["changed"] == Value::Bool(true)).then(|| v["config_version"].as_u64().unwrap_or(0)))
}

/// A loader error (the data plane's message "<path>: <message>") as the API answers it:
/// inside the written resource relative to the body (400), else the document's path (409).
fn loader_error(text: &str, doc_path: Option<&str>) -> ApiError {
    let d = split_config_message(text);
    match doc_path {
        Some(prefix)
            if !prefix.is_empty()
                && (d.path == prefix || strip_prefix(&d.path, prefix) != d.path) =>
        {
            ApiError::invalid(strip_prefix(&d.path, prefix), d.message)
        }
        _ => ApiError::new(
            409,
            "invalid_config",
            format!("the configuration would not load on the nodes: {text}"),
        )
        .with_detail(d.path, d.message),
    }
}

/// The data plane's loader on a document (hosts resolved, credentials opened), on a
/// blocking thread.
async fn load_check(
    admin: &Admin,
    bytes: Vec<u8>,
    doc_path: Option<String>,
) -> Result<(), ApiError> {
    let dir = admin.settings.config_dir.clone();
    let keys = admin.settings.seal_keys.clone();
    let r = tokio::task::spawn_blocking(move || {
        crate::runtime::load::snapshot(&bytes, Source::Redis, 1, "", &dir, &keys).map(|_| ())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    r.map_err(|e| loader_error(&e, doc_path.as_deref()))
}

/// `POST /api/v1/config/validate`: a whole document, through the data plane's loader.
pub(super) async fn validate(admin: &Admin, body: Value) -> Result<ApiResponse, ApiError> {
    let bytes = document_bytes(&body);
    load_check(admin, bytes, Some(String::new()))
        .await
        .map_err(|mut e| {
            if e.status == 409 {
                e.status = 400;
                e.code = "validation_failed";
            }
            e
        })?;
    let cfg = crate::core::config::GatewayConfig::from_value(&body)
        .map_err(|e| ApiError::from_config(&e, ""))?;
    Ok(ApiResponse::json(
        200,
        &json!({"valid": true, "namespaces": cfg.namespaces.len(), "keys": cfg.key_count(),
                "policies": cfg.policy_count(), "targets": cfg.routing.targets.len(),
                "routes": cfg.routing.routes.len()}),
    ))
}

pub(super) async fn write(
    admin: &Admin,
    req: &ApiRequest,
    ep: &Endpoint,
    who: &Principal,
    q: &Query,
    intent: Intent,
) -> Result<ApiResponse, ApiError> {
    let dry_run = q.flag("dry_run")?;
    let wait = wait_arg(q)?;
    let message = q
        .get("message")
        .map(|m| m.chars().take(1000).collect::<String>());
    if matches!(intent, Intent::Import(_)) && req.if_match.is_none() {
        return Err(ApiError::new(
            428,
            "precondition_required",
            "replacing the whole configuration needs If-Match with the ETag of GET /api/v1/config",
        ));
    }
    let new_key = match &intent {
        Intent::Op(Op::CreateKey(..) | Op::RotateKey(..)) => {
            Some(format!("sk-gw-{}", random_secret(32)?))
        }
        _ => None,
    };
    let d = &admin.db;
    let _turn = match tokio::time::timeout(d.lock_timeout, admin.write_gate.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            return Err(ApiError::unavailable(format!(
                "other writes kept this one waiting for {} ms",
                d.lock_timeout.as_millis()
            )))
        }
    };
    let mut conn = d.conn().await?;
    let mut tx = d.timed(conn.start_transaction(write_tx())).await?;
    let head = lock_head(d, &mut tx).await?;
    let now = now();
    let state = match admin.cached(&head.epoch, head.version) {
        Some(s) => s,
        None => Arc::new(load_state(d, &mut tx, head.next_id).await?),
    };
    if let Some(m) = req.if_match.as_deref() {
        if !if_match_holds(m, etag_for(&state, head.version, ep, now).as_deref()) {
            return Err(ApiError::new(
                412,
                "precondition_failed",
                "the resource changed since you read it (If-Match does not match its ETag): read it again",
            ));
        }
    }
    let mut next = (*state).clone();
    let seeding = matches!(intent, Intent::Seed(_));
    let seal = |s: &str| admin.seal(s);
    let applied = match intent {
        Intent::Op(op) => {
            let ctx = Ctx {
                now_ms: now,
                seal: &seal,
                new_key: new_key.as_deref(),
            };
            ops::apply(&mut next, &op, &ctx)?
        }
        Intent::Seed(_) if head.version != 0 => {
            let _ = d.timed(tx.rollback()).await;
            return Ok(ApiResponse::json(
                200,
                &json!({"changed": false, "config_version": head.version}),
            ));
        }
        Intent::Import(doc) | Intent::Seed(doc) => {
            next = import(
                &doc,
                &state,
                &ImportEnv {
                    now_ms: now,
                    seal: &seal,
                    any_file: seeding,
                },
            )?;
            Applied {
                status: 200,
                body: Value::Null,
                location: None,
                action: if seeding {
                    "config.seed"
                } else {
                    "config.import"
                },
                resource: "config".into(),
                doc_path: Some(String::new()),
                secret: None,
            }
        }
        Intent::Rollback(body) => {
            let obj = body
                .as_object()
                .ok_or_else(|| ApiError::invalid("", "the body must be a JSON object"))?;
            if let Some(k) = obj.keys().find(|k| *k != "version" && *k != "message") {
                return Err(ApiError::invalid(k.clone(), "unknown field"));
            }
            let v = obj
                .get("version")
                .and_then(Value::as_u64)
                .ok_or_else(|| ApiError::invalid("version", "must be a revision number"))?;
            let saved: Option<String> = d
                .timed(tx.exec_first("SELECT state FROM config_revisions WHERE version = ?", (v,)))
                .await?;
            let saved = saved.ok_or_else(|| ApiError::not_found("revision", &v.to_string()))?;
            let mut old: State = serde_json::from_str(&saved)
                .map_err(|e| ApiError::internal(format!("revision {v} does not read back: {e}")))?;
            old.next_id = old.next_id.max(next.next_id);
            next = old;
            Applied {
                status: 200,
                body: json!({"rolled_back_to": v}),
                location: None,
                action: "config.rollback",
                resource: format!("config/revisions/{v}"),
                doc_path: None,
                secret: None,
            }
        }
    };
    if next == *state {
        let _ = d.timed(tx.rollback()).await;
        return Ok(answer(
            &applied,
            head.version,
            false,
            false,
            dry_run,
            None,
            ep,
        ));
    }
    let version = head.version + 1;
    let doc = document(&next, version, now);
    let bytes = document_bytes(&doc);
    let sha = sha256_hex(&bytes);
    load_check(admin, bytes.clone(), applied.doc_path.clone()).await?;
    if dry_run {
        let _ = d.timed(tx.rollback()).await;
        return Ok(answer(&applied, version, true, false, true, None, ep));
    }
    store_changes(d, &mut tx, &tables::rows(&state), &tables::rows(&next)).await?;
    let state_text = serde_json::to_string(&next).map_err(|e| ApiError::internal(e.to_string()))?;
    let doc_text = String::from_utf8_lossy(&bytes).into_owned();
    d.timed(tx.exec_drop(
        "INSERT INTO config_revisions (version, epoch, sha256, document, state, action, actor, message, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (version, &head.epoch, &sha, doc_text, state_text, applied.action, who.actor(), &message, now),
    ))
    .await?;
    d.timed(tx.exec_drop(
        "UPDATE config_head SET version = ?, sha256 = ?, next_id = ?, updated_at = ? WHERE id = 1",
        (version, &sha, next.next_id, now),
    ))
    .await?;
    let old_doc = document(&state, head.version, now);
    let changes: Vec<Value> = diff(&old_doc, &doc)
        .iter()
        .take(50)
        .map(|c| c.to_json())
        .collect();
    insert_audit(
        d,
        &mut tx,
        Audit {
            at: now,
            actor: &who.actor(),
            role: Some(who.role.as_str()),
            action: applied.action,
            resource: &applied.resource,
            version: Some(version),
            ip: &req.client_ip,
            details: Some(json!({"changes": changes, "message": message})),
        },
    )
    .await?;
    d.timed(tx.commit()).await?;
    admin.remember(&head.epoch, version, Arc::new(next));
    let published = match &admin.publisher {
        Some(p) => match p.publish(version, &head.epoch, &sha, &bytes).await {
            Ok(_) => {
                mark_published(admin, version).await;
                true
            }
            Err(_) => false,
        },
        None => false,
    };
    let propagation = match (wait, &admin.publisher) {
        (Some(limit), Some(p)) if published => {
            Some(wait_applied(p, version, &head.epoch, limit).await)
        }
        _ => None,
    };
    Ok(answer(
        &applied,
        version,
        true,
        published,
        false,
        propagation.map(|p| (p.complete, p.to_json())),
        ep,
    ))
}

/// A write's answer: `{data, config_version, changed, published, dry_run, applied}`.
pub(super) fn answer(
    a: &Applied,
    version: u64,
    changed: bool,
    published: bool,
    dry_run: bool,
    propagation: Option<(bool, Value)>,
    _ep: &Endpoint,
) -> ApiResponse {
    let complete = propagation.as_ref().map_or(true, |(c, _)| *c);
    let status = if !complete { 202 } else { a.status };
    let mut r = ApiResponse::json(
        status,
        &json!({
            "data": a.body,
            "config_version": version,
            "changed": changed,
            "published": published,
            "dry_run": dry_run,
            "applied": propagation.map(|(_, v)| v),
        }),
    )
    .header("X-Config-Version", version.to_string());
    if !a.body.is_null() && a.action != "config.rollback" {
        let mut shown = a.body.clone();
        if let Some(o) = shown.as_object_mut() {
            o.remove("key");
        }
        r = r.header("ETag", etag(&shown));
    }
    if let Some(l) = &a.location {
        r = r.header("Location", format!("/api/v1/{l}"));
    }
    if a.secret.is_some() {
        r = r.header("Cache-Control", "no-store");
    }
    r
}
