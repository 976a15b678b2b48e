//! The configuration's history: the document the nodes have (export), revisions, the
//! difference between two versions, and the audit log.

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use super::db::{self};
use super::now;
use super::{Admin, ApiResponse};
use crate::core::admin::auth::{Principal, Role};
use crate::core::admin::clock::format_ms;
use crate::core::admin::diff::diff;
use crate::core::admin::document::document;
use crate::core::admin::error::ApiError;
use crate::core::admin::query::Query;
use crate::core::admin::query::{before_id, page_of_rows};
use crate::core::admin::state::State;
use crate::core::admin::views::{config_etag, redact_document};

/// `GET /api/v1/config`: the document the nodes have (credentials sealed).
pub(super) async fn export(admin: &Admin, who: &Principal) -> Result<ApiResponse, ApiError> {
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

pub(super) async fn revisions(admin: &Admin, q: &Query) -> Result<ApiResponse, ApiError> {
    let page = q.page()?;
    let before = before_id::<u64>(&page)?.unwrap_or(u64::MAX >> 1);
    let d = &admin.db;
    let mut conn = d.conn().await?;
    let rows: Vec<RevisionRow> = d
        .timed(conn.exec(
            format!("SELECT {REVISION_COLUMNS} FROM config_revisions WHERE version < ? ORDER BY version DESC LIMIT ?"),
            (before, page.limit as u64 + 1),
        ))
        .await?;
    Ok(ApiResponse::json(
        200,
        &page_of_rows(&rows, page.limit, |r| r.0.to_string(), revision_view),
    ))
}

pub(super) async fn revision(
    admin: &Admin,
    v: u64,
    who: &Principal,
) -> Result<ApiResponse, ApiError> {
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
pub(super) async fn diff_of(admin: &Admin, q: &Query) -> Result<ApiResponse, ApiError> {
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
pub(super) async fn audit_logs(admin: &Admin, q: &Query) -> Result<ApiResponse, ApiError> {
    let page = q.page()?;
    let before = before_id::<i64>(&page)?.unwrap_or(i64::MAX);
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
    Ok(ApiResponse::json(
        200,
        &page_of_rows(&rows, page.limit, |r| r.0.to_string(), audit_view),
    ))
}

/// An audit row as read: id, at, actor, role, action, resource, version, ip, details.
pub type AuditRow = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    String,
    Option<i64>,
    String,
    Option<String>,
);

/// Audit log rows as the API shows them.
pub fn audit_view(r: &AuditRow) -> Value {
    json!({
        "id": r.0, "at": format_ms(r.1), "actor": r.2, "role": r.3, "action": r.4,
        "resource": r.5, "config_version": r.6, "ip": r.7,
        "details": r.8.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
    })
}
