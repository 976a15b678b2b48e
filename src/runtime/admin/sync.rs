//! MySQL against Redis: the nodes and the version they serve, a revision marked published,
//! and the reconciler that republishes what Redis does not have.

use mysql_async::prelude::Queryable;
use serde_json::json;

use super::db::{self};
use super::now;
use super::publish::nodes_view;
use super::{Admin, ApiResponse};
use crate::core::admin::error::ApiError;

pub(super) async fn mark_published(admin: &Admin, version: u64) {
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

/// `GET /api/v1/nodes`: the config of record, what Redis publishes, and every live node.
pub(super) async fn nodes(admin: &Admin) -> Result<ApiResponse, ApiError> {
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
