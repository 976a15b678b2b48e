//! The configuration's resources: reads from the state of record (one consistent read of
//! its tables, cached per version), and writes in one transaction each: lock the config
//! head, apply the operation, build the document, check it with the data plane's own
//! loader, store the rows that changed, the revision and the audit row, commit, publish to
//! Redis (and, when asked, wait until every live node applied it).

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use super::auth::AuditRow;
use super::db::{
    self, insert_audit, load_state, lock_head, read_tx, store_changes, write_tx, Audit, HeadRow,
};
use super::publish::{nodes_view, wait_applied};
use super::{auth, wait_arg, Admin, ApiRequest, ApiResponse};
use crate::core::admin::auth::{Principal, Role};
use crate::core::admin::diff::diff;
use crate::core::admin::document::{document, document_bytes, import, ImportEnv};
use crate::core::admin::endpoint::{Endpoint, Method};
use crate::core::admin::error::{split_config_message, strip_prefix, ApiError};
use crate::core::admin::ops::{self, Applied, Ctx, ItemKind, Op};
use crate::core::admin::query::{numeric_key, paginate, Query};
use crate::core::admin::state::State;
use crate::core::admin::tables;
use crate::core::admin::views::{self, config_etag, etag, if_match_holds, redact_document};
use crate::core::snapshot::{sha256_hex, Source};
use crate::runtime::redis_source::unix_ms;

fn now() -> i64 {
    unix_ms() as i64
}

/// The head and the state of record, from one consistent read (or the cache).
pub async fn read_state(admin: &Admin) -> Result<(HeadRow, Arc<State>), ApiError> {
    let d = &admin.db;
    let mut conn = d.conn().await?;
    let mut tx = d.timed(conn.start_transaction(read_tx())).await?;
    let head = db::head(d, &mut tx).await?;
    if let Some(s) = admin.cached(&head.epoch, head.version) {
        let _ = d.timed(tx.rollback()).await;
        return Ok((head, s));
    }
    let state = Arc::new(load_state(d, &mut tx, head.next_id).await?);
    let _ = d.timed(tx.rollback()).await;
    admin.remember(&head.epoch, head.version, state.clone());
    Ok((head, state))
}

/// A resource as the API shows it, or 404.
fn view_of(state: &State, ep: &Endpoint, now: i64) -> Result<Value, ApiError> {
    let ns_of = |code: &str| {
        state
            .namespace(code)
            .ok_or_else(|| ApiError::not_found("namespace", code))
    };
    match ep {
        Endpoint::Namespace(code) => Ok(views::namespace(ns_of(code)?)),
        Endpoint::Key(code, id) | Endpoint::KeyRotate(code, id) => {
            let k = ns_of(code)?
                .keys
                .get(id)
                .ok_or_else(|| ApiError::not_found("key", id))?;
            Ok(views::key(code, k, now))
        }
        Endpoint::Item(kind, code, id) => {
            let ns = ns_of(code)?;
            let list = match kind {
                ItemKind::Matcher => &ns.matchers,
                ItemKind::Policy => &ns.policies,
            };
            list.iter()
                .enumerate()
                .find(|(_, i)| i.id == *id)
                .map(|(p, i)| views::item(code, p, i))
                .ok_or_else(|| ApiError::not_found(kind.singular(), &id.to_string()))
        }
        Endpoint::Target(name) => state
            .targets
            .get(name)
            .map(views::target)
            .ok_or_else(|| ApiError::not_found("target", name)),
        Endpoint::Route(name) => state
            .route_index(name)
            .map(|i| views::route(i, &state.routes[i]))
            .ok_or_else(|| ApiError::not_found("route", name)),
        Endpoint::Settings => Ok(views::settings(state)),
        _ => Err(ApiError::internal("not a single resource")),
    }
}

/// The ETag a write's `If-Match` is compared with: the resource's, or (collections, the
/// whole configuration) the config version's. `None`: the resource does not exist.
fn etag_for(state: &State, head: &HeadRow, ep: &Endpoint, now: i64) -> Option<String> {
    match ep {
        Endpoint::Namespace(_)
        | Endpoint::Key(..)
        | Endpoint::KeyRotate(..)
        | Endpoint::Item(..)
        | Endpoint::Target(_)
        | Endpoint::Route(_)
        | Endpoint::Settings => view_of(state, ep, now).ok().map(|v| etag(&v)),
        _ => Some(config_etag(head.version)),
    }
}

pub async fn serve(
    admin: &Admin,
    req: &ApiRequest,
    method: Method,
    ep: &Endpoint,
    who: &Principal,
    body: Value,
) -> Result<ApiResponse, ApiError> {
    let q = Query::parse(&req.query);
    if method.is_safe() {
        return read(admin, ep, &q, who).await;
    }
    let op = match (ep, method) {
        (Endpoint::ConfigValidate, _) => return validate(admin, body).await,
        (Endpoint::Config, Method::Put) => Intent::Import(body),
        (Endpoint::Rollback, _) => Intent::Rollback(body),
        (Endpoint::Namespaces, Method::Post) => Intent::Op(Op::CreateNamespace(body)),
        (Endpoint::Namespace(c), Method::Put) => Intent::Op(Op::ReplaceNamespace(c.clone(), body)),
        (Endpoint::Namespace(c), Method::Patch) => Intent::Op(Op::PatchNamespace(c.clone(), body)),
        (Endpoint::Namespace(c), Method::Delete) => Intent::Op(Op::DeleteNamespace(c.clone())),
        (Endpoint::Keys(c), Method::Post) => Intent::Op(Op::CreateKey(c.clone(), body)),
        (Endpoint::Key(c, k), Method::Patch) => {
            Intent::Op(Op::PatchKey(c.clone(), k.clone(), body))
        }
        (Endpoint::Key(c, k), Method::Delete) => Intent::Op(Op::DeleteKey(c.clone(), k.clone())),
        (Endpoint::KeyRotate(c, k), _) => Intent::Op(Op::RotateKey(c.clone(), k.clone(), body)),
        (Endpoint::Items(t, c), Method::Post) => Intent::Op(Op::CreateItem(*t, c.clone(), body)),
        (Endpoint::Item(t, c, i), Method::Put) => {
            Intent::Op(Op::ReplaceItem(*t, c.clone(), *i, body))
        }
        (Endpoint::Item(t, c, i), Method::Patch) => {
            Intent::Op(Op::PatchItem(*t, c.clone(), *i, body))
        }
        (Endpoint::Item(t, c, i), Method::Delete) => Intent::Op(Op::DeleteItem(*t, c.clone(), *i)),
        (Endpoint::Targets, Method::Post) => Intent::Op(Op::CreateTarget(body)),
        (Endpoint::Target(n), Method::Put) => Intent::Op(Op::ReplaceTarget(n.clone(), body)),
        (Endpoint::Target(n), Method::Patch) => Intent::Op(Op::PatchTarget(n.clone(), body)),
        (Endpoint::Target(n), Method::Delete) => Intent::Op(Op::DeleteTarget(n.clone())),
        (Endpoint::Routes, Method::Post) => Intent::Op(Op::CreateRoute(body)),
        (Endpoint::Route(n), Method::Put) => Intent::Op(Op::ReplaceRoute(n.clone(), body)),
        (Endpoint::Route(n), Method::Patch) => Intent::Op(Op::PatchRoute(n.clone(), body)),
        (Endpoint::Route(n), Method::Delete) => Intent::Op(Op::DeleteRoute(n.clone())),
        (Endpoint::Settings, Method::Put) => Intent::Op(Op::ReplaceSettings(body)),
        (Endpoint::Settings, Method::Patch) => Intent::Op(Op::PatchSettings(body)),
        _ => return Err(ApiError::internal("unexpected endpoint")),
    };
    write(admin, req, ep, who, &q, op).await
}

/// What a write asks for.
enum Intent {
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

async fn read(
    admin: &Admin,
    ep: &Endpoint,
    q: &Query,
    who: &Principal,
) -> Result<ApiResponse, ApiError> {
    let now = now();
    match ep {
        Endpoint::Revisions => return revisions(admin, q).await,
        Endpoint::Revision(v) => return revision(admin, *v, who).await,
        Endpoint::Diff => return diff_of(admin, q).await,
        Endpoint::AuditLogs => return audit_logs(admin, q).await,
        Endpoint::Nodes => return nodes(admin).await,
        Endpoint::Config => return export(admin, who).await,
        _ => {}
    }
    let (head, state) = read_state(admin).await?;
    let list = |items: Vec<(String, Value)>| -> Result<ApiResponse, ApiError> {
        let page = q.page()?;
        Ok(ApiResponse::json(200, &paginate(items, &page))
            .header("ETag", config_etag(head.version))
            .header("X-Config-Version", head.version.to_string()))
    };
    let ns_of = |code: &str| {
        state
            .namespace(code)
            .ok_or_else(|| ApiError::not_found("namespace", code))
    };
    match ep {
        Endpoint::Namespaces => {
            let search = q.get("q").map(str::to_lowercase);
            let status = q.get("status");
            list(
                state
                    .namespaces
                    .values()
                    .filter(|n| {
                        search.as_ref().is_none_or_compat(|s| {
                            n.code.to_lowercase().contains(s.as_str())
                                || n.name
                                    .as_deref()
                                    .unwrap_or("")
                                    .to_lowercase()
                                    .contains(s.as_str())
                        })
                    })
                    .filter(|n| {
                        status.is_none_or_compat(|s| {
                            *s == if n.enabled { "enabled" } else { "disabled" }
                        })
                    })
                    .map(|n| (n.code.clone(), views::namespace(n)))
                    .collect(),
            )
        }
        Endpoint::Keys(code) => list(
            ns_of(code)?
                .keys
                .values()
                .map(|k| (k.id.clone(), views::key(code, k, now)))
                .collect(),
        ),
        Endpoint::Items(kind, code) => {
            let ns = ns_of(code)?;
            let items = match kind {
                ItemKind::Matcher => &ns.matchers,
                ItemKind::Policy => &ns.policies,
            };
            list(
                items
                    .iter()
                    .enumerate()
                    .map(|(p, i)| (numeric_key(p as u64), views::item(code, p, i)))
                    .collect(),
            )
        }
        Endpoint::Targets => list(
            state
                .targets
                .values()
                .map(|t| (t.name.clone(), views::target(t)))
                .collect(),
        ),
        Endpoint::Routes => list(
            state
                .routes
                .iter()
                .enumerate()
                .map(|(p, r)| (numeric_key(p as u64), views::route(p, r)))
                .collect(),
        ),
        _ => {
            let v = view_of(&state, ep, now)?;
            Ok(ApiResponse::json(200, &v)
                .header("ETag", etag(&v))
                .header("X-Config-Version", head.version.to_string()))
        }
    }
}

/// `Option::is_none_or` for the toolchain the crate supports.
trait NoneOr<T> {
    fn is_none_or_compat(&self, f: impl FnOnce(&T) -> bool) -> bool;
}

impl<T> NoneOr<T> for Option<T> {
    fn is_none_or_compat(&self, f: impl FnOnce(&T) -> bool) -> bool {
        match self {
            None => true,
            Some(v) => f(v),
        }
    }
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
async fn validate(admin: &Admin, body: Value) -> Result<ApiResponse, ApiError> {
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

async fn write(
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
            Some(format!("sk-gw-{}", auth::random_secret(32)?))
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
        if !if_match_holds(m, etag_for(&state, &head, ep, now).as_deref()) {
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

async fn mark_published(admin: &Admin, version: u64) {
    let d = &admin.db;
    if let Ok(mut conn) = d.conn().await {
        let _ = d
            .timed(conn.exec_drop(
                "UPDATE config_revisions SET published_at = ? WHERE version = ? AND published_at IS NULL",
                (now(), version),
            ))
            .await;
    }
}

/// A write's answer: `{data, config_version, changed, published, dry_run, applied}`.
fn answer(
    a: &Applied,
    version: u64,
    changed: bool,
    published: bool,
    dry_run: bool,
    propagation: Option<(bool, Value)>,
    _ep: &Endpoint,
) -> ApiResponse {
    let complete = propagation.as_ref().is_none_or_compat(|(c, _)| *c);
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

/// `GET /api/v1/config`: the document the nodes have (credentials sealed).
async fn export(admin: &Admin, who: &Principal) -> Result<ApiResponse, ApiError> {
    let d = &admin.db;
    let mut conn = d.conn().await?;
    let head = db::head(d, &mut conn).await?;
    let doc: Value = if head.version == 0 {
        document(&State::default(), 0, now())
    } else {
        let text: Option<String> = d
            .timed(conn.exec_first(
                "SELECT document FROM config_revisions WHERE version = ?",
                (head.version,),
            ))
            .await?;
        serde_json::from_str(&text.unwrap_or_default())
            .map_err(|e| ApiError::internal(e.to_string()))?
    };
    let doc = if who.role == Role::Viewer {
        redact_document(doc)
    } else {
        doc
    };
    Ok(ApiResponse::json(200, &doc)
        .header("ETag", config_etag(head.version))
        .header("X-Config-Version", head.version.to_string()))
}

type RevisionRow = (
    u64,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
);
/// A revision with its document.
type RevisionDocRow = (
    u64,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    String,
);

fn revision_view(r: &RevisionRow) -> Value {
    json!({
        "version": r.0, "epoch": r.1, "sha256": r.2, "action": r.3, "actor": r.4, "message": r.5,
        "created_at": crate::core::admin::clock::format_ms(r.6),
        "published_at": r.7.map(crate::core::admin::clock::format_ms),
    })
}

const REVISION_COLUMNS: &str =
    "version, epoch, sha256, action, actor, message, created_at, published_at";

async fn revisions(admin: &Admin, q: &Query) -> Result<ApiResponse, ApiError> {
    let page = q.page()?;
    let before = match &page.after {
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| ApiError::invalid("?cursor", "is not a cursor of this list"))?,
        None => u64::MAX >> 1,
    };
    let d = &admin.db;
    let mut conn = d.conn().await?;
    let rows: Vec<RevisionRow> = d
        .timed(conn.exec(
            format!("SELECT {REVISION_COLUMNS} FROM config_revisions WHERE version < ? ORDER BY version DESC LIMIT ?"),
            (before, page.limit as u64 + 1),
        ))
        .await?;
    let more = rows.len() > page.limit;
    let items: Vec<Value> = rows.iter().take(page.limit).map(revision_view).collect();
    let next = if more {
        rows.get(page.limit - 1)
            .map(|r| crate::core::admin::query::cursor_encode(&r.0.to_string()))
    } else {
        None
    };
    Ok(ApiResponse::json(
        200,
        &json!({"items": items, "next_cursor": next}),
    ))
}

async fn revision(admin: &Admin, v: u64, who: &Principal) -> Result<ApiResponse, ApiError> {
    let d = &admin.db;
    let mut conn = d.conn().await?;
    let row: Option<RevisionDocRow> = d
        .timed(conn.exec_first(
            format!("SELECT {REVISION_COLUMNS}, document FROM config_revisions WHERE version = ?"),
            (v,),
        ))
        .await?;
    let r = row.ok_or_else(|| ApiError::not_found("revision", &v.to_string()))?;
    let mut view = revision_view(&(r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7));
    let doc = serde_json::from_str(&r.8).unwrap_or(Value::Null);
    view["document"] = if who.role == Role::Viewer {
        redact_document(doc)
    } else {
        doc
    };
    Ok(ApiResponse::json(200, &view))
}

async fn document_of(
    admin: &Admin,
    conn: &mut mysql_async::Conn,
    v: u64,
) -> Result<Value, ApiError> {
    if v == 0 {
        return Ok(document(&State::default(), 0, 0));
    }
    let text: Option<String> = admin
        .db
        .timed(conn.exec_first(
            "SELECT document FROM config_revisions WHERE version = ?",
            (v,),
        ))
        .await?;
    let text = text.ok_or_else(|| ApiError::not_found("revision", &v.to_string()))?;
    serde_json::from_str(&text).map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /api/v1/config/diff?from=&to=` (default: the current version and the one before).
async fn diff_of(admin: &Admin, q: &Query) -> Result<ApiResponse, ApiError> {
    let d = &admin.db;
    let mut conn = d.conn().await?;
    let head = db::head(d, &mut conn).await?;
    let num = |name: &str| -> Result<Option<u64>, ApiError> {
        q.get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::invalid(format!("?{name}"), "must be a revision number"))
            })
            .transpose()
    };
    let to = num("to")?.unwrap_or(head.version);
    let from = num("from")?.unwrap_or(to.saturating_sub(1));
    let a = document_of(admin, &mut conn, from).await?;
    let b = document_of(admin, &mut conn, to).await?;
    let changes: Vec<Value> = diff(&a, &b).iter().map(|c| c.to_json()).collect();
    Ok(ApiResponse::json(
        200,
        &json!({"from": from, "to": to, "changes": changes}),
    ))
}

/// `GET /api/v1/audit-logs` newest first, filtered by `actor`, `action` (a prefix),
/// `resource` (a prefix), `since`/`until` (RFC 3339 or unix seconds).
async fn audit_logs(admin: &Admin, q: &Query) -> Result<ApiResponse, ApiError> {
    let page = q.page()?;
    let before = match &page.after {
        Some(c) => c
            .parse::<i64>()
            .map_err(|_| ApiError::invalid("?cursor", "is not a cursor of this list"))?,
        None => i64::MAX,
    };
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        q.get(name)
            .map(|v| {
                let val = if v.bytes().all(|b| b.is_ascii_digit()) {
                    Value::from(v.parse::<i64>().unwrap_or(-1))
                } else {
                    Value::from(v)
                };
                crate::core::admin::clock::time_value(&val).ok_or_else(|| {
                    ApiError::invalid(
                        format!("?{name}"),
                        "must be an RFC 3339 time or unix seconds",
                    )
                })
            })
            .transpose()
    };
    let since = time("since")?.unwrap_or(0);
    let until = time("until")?.unwrap_or(i64::MAX);
    let like = |v: Option<&str>| {
        v.map_or("%".to_string(), |s| {
            format!(
                "{}%",
                s.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        })
    };
    let d = &admin.db;
    let mut conn = d.conn().await?;
    let mut sql =
        "SELECT id, at, actor, role, action, resource, version, ip, details FROM audit_logs
         WHERE id < ? AND at >= ? AND at <= ? AND action LIKE ? AND resource LIKE ?"
            .to_string();
    let mut params: Vec<mysql_async::Value> = vec![
        before.into(),
        since.into(),
        until.into(),
        like(q.get("action")).into(),
        like(q.get("resource")).into(),
    ];
    if let Some(a) = q.get("actor") {
        sql.push_str(" AND actor = ?");
        params.push(a.into());
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    params.push((page.limit as u64 + 1).into());
    let rows: Vec<AuditRow> = d.timed(conn.exec(sql, params)).await?;
    let more = rows.len() > page.limit;
    let items: Vec<Value> = rows.iter().take(page.limit).map(auth::audit_view).collect();
    let next = if more {
        rows.get(page.limit - 1)
            .map(|r| crate::core::admin::query::cursor_encode(&r.0.to_string()))
    } else {
        None
    };
    Ok(ApiResponse::json(
        200,
        &json!({"items": items, "next_cursor": next}),
    ))
}

/// `GET /api/v1/nodes`: the config of record, what Redis publishes, and every live node.
async fn nodes(admin: &Admin) -> Result<ApiResponse, ApiError> {
    let d = &admin.db;
    let mut conn = d.conn().await?;
    let head = db::head(d, &mut conn).await?;
    let Some(p) = &admin.publisher else {
        return Err(ApiError::unavailable(
            "no Redis is configured (ai_gateway_redis): nodes report through it",
        ));
    };
    let published = p
        .head()
        .await
        .map_err(|e| ApiError::unavailable(format!("Redis: {e}")))?;
    let workers = p
        .workers()
        .await
        .map_err(|e| ApiError::unavailable(format!("Redis: {e}")))?;
    Ok(ApiResponse::json(
        200,
        &json!({
            "config": {"version": head.version, "epoch": head.epoch, "sha256": head.sha256},
            "published": published.map(|h| json!({"version": h.version, "epoch": h.epoch, "sha256": h.sha256})),
            "items": nodes_view(&workers, Some((head.version, &head.epoch))),
        }),
    ))
}

/// Republishes the config of record when Redis does not have it (a crash between commit
/// and publish, Redis restarted empty, the snapshot key lost, a head of another epoch). Returns the version
/// republished.
pub async fn reconcile(admin: &Admin) -> Result<Option<u64>, String> {
    let Some(p) = &admin.publisher else {
        return Ok(None);
    };
    let d = &admin.db;
    let mut conn = d.conn().await.map_err(|e| e.message)?;
    let head = db::head(d, &mut conn).await.map_err(|e| e.message)?;
    if head.version == 0 {
        return Ok(None);
    }
    let published = p.head().await?;
    let behind = match &published {
        None => true,
        Some(h) if h.epoch != head.epoch || h.version < head.version => true,
        // the head is there but not its snapshot (keys lost): the nodes could not load it
        Some(h) if h.version == head.version => !p.has_snapshot(head.version).await?,
        Some(_) => false,
    };
    if !behind {
        return Ok(None);
    }
    let text: Option<String> = d
        .timed(conn.exec_first(
            "SELECT document FROM config_revisions WHERE version = ?",
            (head.version,),
        ))
        .await
        .map_err(|e| e.message)?;
    let text = text.ok_or("the head's revision is missing")?;
    if p.publish(head.version, &head.epoch, &head.sha256, text.as_bytes())
        .await?
    {
        mark_published(admin, head.version).await;
        return Ok(Some(head.version));
    }
    Ok(None)
}
