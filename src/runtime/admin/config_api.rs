//! The configuration's resources as the API reads them: from the state of record (one
//! consistent read of its tables, cached per version), with their ETags; the dispatcher of
//! the configuration's calls (writes in `write`, history in `history`, nodes in `sync`).

use std::sync::Arc;

use serde_json::Value;

use super::db::{self, load_state, read_tx, HeadRow};
use super::history::{audit_logs, diff_of, export, revision, revisions};
use super::now;
use super::sync::nodes;
use super::usage_api;
use super::write::{validate, write, Intent};
use super::{Admin, ApiRequest, ApiResponse};
use crate::core::admin::auth::Principal;
use crate::core::admin::endpoint::{Endpoint, Method};
use crate::core::admin::error::ApiError;
use crate::core::admin::ops::{ItemKind, Op};
use crate::core::admin::query::{numeric_key, paginate, Query};
use crate::core::admin::resource::view_of;
use crate::core::admin::state::State;
use crate::core::admin::views::{self, config_etag, etag};

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
        return read(admin, ep, &q, who, req.accept.as_deref()).await;
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

pub(super) async fn read(
    admin: &Admin,
    ep: &Endpoint,
    q: &Query,
    who: &Principal,
    req_accept: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let now = now();
    match ep {
        Endpoint::Revisions => return revisions(admin, q).await,
        Endpoint::Revision(v) => return revision(admin, *v, who).await,
        Endpoint::Diff => return diff_of(admin, q).await,
        Endpoint::AuditLogs => return audit_logs(admin, q).await,
        Endpoint::AccessLogs => return usage_api::logs(admin, req_accept, q).await,
        Endpoint::AccessLog(id) => return usage_api::log(admin, id).await,
        Endpoint::Usage => return usage_api::usage(admin, req_accept, q).await,
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
                        search.as_ref().map_or(true, |s| {
                            n.code.to_lowercase().contains(s.as_str())
                                || n.name
                                    .as_deref()
                                    .unwrap_or("")
                                    .to_lowercase()
                                    .contains(s.as_str())
                        })
                    })
                    .filter(|n| {
                        status.map_or(true, |s| {
                            s == if n.enabled { "enabled" } else { "disabled" }
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
