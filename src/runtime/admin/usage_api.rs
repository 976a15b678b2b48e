//! The usage API's reads for the config center (`GET /api/v1/access-logs`,
//! `/api/v1/access-logs/{request_id}`, `/api/v1/usage`), JSON or CSV.

use serde_json::json;

use super::{now, Admin, ApiResponse};
use crate::core::access_log::query::{log_cursor, log_sql, log_table, logs_sql, wants_csv};
use crate::core::access_log::usage::{usage_sql, usage_table};
use crate::core::admin::error::ApiError;
use crate::core::admin::query::Query;
use crate::runtime::access_log::store::read;

/// Which columns of a log row are numbers.
fn log_numeric(i: usize) -> bool {
    matches!(i, 1 | 8 | 10..=15 | 17 | 18)
}

pub async fn logs(admin: &Admin, accept: Option<&str>, q: &Query) -> Result<ApiResponse, ApiError> {
    let csv = wants_csv(q, accept)?;
    let (sql, limit) = logs_sql(q, now(), csv)?;
    let mut rows = read(&admin.db, &sql, log_numeric).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().and_then(|r| log_cursor(r))
    } else {
        None
    };
    let table = log_table(rows);
    if csv {
        let mut r = ApiResponse::csv(table.csv(), "access-logs");
        if let Some(n) = next {
            r = r.header("X-Next-Cursor", n);
        }
        return Ok(r);
    }
    Ok(ApiResponse::json(
        200,
        &json!({"items": table.items(), "next_cursor": next}),
    ))
}

pub async fn log(admin: &Admin, request_id: &str) -> Result<ApiResponse, ApiError> {
    if request_id.len() > 64 {
        return Err(ApiError::not_found("access log", request_id));
    }
    let rows = read(&admin.db, &log_sql(request_id), log_numeric).await?;
    let table = log_table(rows);
    let item = table
        .items()
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("access log", request_id))?;
    Ok(ApiResponse::json(200, &item))
}

pub async fn usage(
    admin: &Admin,
    accept: Option<&str>,
    q: &Query,
) -> Result<ApiResponse, ApiError> {
    let csv = wants_csv(q, accept)?;
    let u = usage_sql(q, now())?;
    let dims = u.group_by.len();
    let mut rows = read(&admin.db, &u.sql, |i| i == 0 || i > dims).await?;
    let truncated = rows.len() > u.limit;
    rows.truncate(u.limit);
    let table = usage_table(&u, rows);
    if csv {
        return Ok(ApiResponse::csv(table.csv(), "usage"));
    }
    Ok(ApiResponse::json(
        200,
        &json!({
            "interval": u.interval.name(),
            "group_by": u.group_by,
            "items": table.items(),
            "truncated": truncated,
        }),
    ))
}
