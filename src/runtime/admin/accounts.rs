//! The users and API tokens an admin manages, and the first admin made from
//! `ai_gateway_admin_bootstrap`. A token acts as its user with at most the role it was given;
//! it is answered once, when it is made, and stored as its sha256.

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use super::auth::{audit, only, string_field};
use super::db::{insert_audit, Audit};
use super::now;
use super::password::{hash_password, random_secret};
use super::{Admin, ApiRequest, ApiResponse, Bootstrap};
use crate::core::admin::auth::{check_password, check_username, Principal, Role, TOKEN_PREFIX};
use crate::core::admin::clock::{format_ms, time_value};
use crate::core::admin::endpoint::{Endpoint, Method};
use crate::core::admin::error::ApiError;
use crate::core::admin::query::{paginate, Query};
use crate::core::snapshot::sha256_hex;

type UserRow = (String, String, i64, i64, i64, i64, i64);

const USER_COLUMNS: &str =
    "username, role, enabled, failed_logins, locked_until, created_at, updated_at";

fn user_view(r: &UserRow) -> Value {
    let now = now();
    json!({
        "name": r.0, "role": r.1, "enabled": r.2 != 0,
        "failed_logins": r.3,
        "locked_until": if r.4 > now { Value::from(format_ms(r.4)) } else { Value::Null },
        "created_at": format_ms(r.5), "updated_at": format_ms(r.6),
    })
}

fn role_field(body: &Value, key: &str) -> Result<Option<Role>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Role::parse(s)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(key, "must be \"admin\", \"editor\" or \"viewer\"")),
        Some(_) => Err(ApiError::invalid(key, "must be a string")),
    }
}

/// `/api/v1/users[/{name}]` (admins only).
pub async fn users(
    admin: &Admin,
    req: &ApiRequest,
    method: Method,
    ep: &Endpoint,
    p: &Principal,
    body: &Value,
) -> Result<ApiResponse, ApiError> {
    let db = &admin.db;
    let mut conn = db.conn().await?;
    let now = now();
    match (ep, method) {
        (Endpoint::Users, Method::Post) => {
            only(body, &["name", "role", "password", "enabled"])?;
            let name = string_field(body, "name")?.to_string();
            check_username(&name)?;
            let role = role_field(body, "role")?
                .ok_or_else(|| ApiError::invalid("role", "is required"))?;
            let pw = string_field(body, "password")?.to_string();
            check_password("password", &pw)?;
            let enabled = bool_field(body, "enabled")?.unwrap_or(true);
            let hash = hash_password(pw).await?;
            db.timed(conn.exec_drop(
                "INSERT IGNORE INTO admin_users (username, password_hash, role, enabled, failed_logins, locked_until, created_at, updated_at)
                 VALUES (?, ?, ?, ?, 0, 0, ?, ?)",
                (&name, &hash, role.as_str(), enabled as i64, now, now),
            ))
            .await?;
            let affected = conn.affected_rows();
            if affected == 0 {
                return Err(
                    ApiError::conflict(format!("user \"{name}\" already exists"))
                        .with_detail("name", "already exists"),
                );
            }
            insert_audit(
                db,
                &mut conn,
                audit(
                    req,
                    p,
                    "user.create",
                    &format!("users/{name}"),
                    Some(json!({"role": role.as_str()})),
                ),
            )
            .await?;
            let row = load_user(admin, &mut conn, &name).await?;
            Ok(ApiResponse::json(201, &user_view(&row))
                .header("Location", format!("/api/v1/users/{name}")))
        }
        (Endpoint::Users, _) => {
            let q = Query::parse(&req.query);
            let page = q.page()?;
            let rows: Vec<UserRow> = db
                .timed(conn.query(format!(
                    "SELECT {USER_COLUMNS} FROM admin_users ORDER BY username"
                )))
                .await?;
            Ok(ApiResponse::json(
                200,
                &paginate(rows.iter().map(|r| (r.0.clone(), user_view(r))), &page),
            ))
        }
        (Endpoint::User(name), Method::Get | Method::Head) => {
            let row = load_user(admin, &mut conn, name).await?;
            Ok(ApiResponse::json(200, &user_view(&row)))
        }
        (Endpoint::User(name), Method::Patch) => {
            only(body, &["role", "password", "enabled", "unlock"])?;
            let row = load_user(admin, &mut conn, name).await?;
            let role = role_field(body, "role")?;
            let enabled = bool_field(body, "enabled")?;
            let demoted = role.is_some_and(|r| r != Role::Admin) || enabled == Some(false);
            if row.1 == "admin" && demoted {
                last_admin_check(admin, &mut conn, name).await?;
            }
            if let Some(r) = role {
                db.timed(conn.exec_drop(
                    "UPDATE admin_users SET role = ?, updated_at = ? WHERE username = ?",
                    (r.as_str(), now, name),
                ))
                .await?;
            }
            if let Some(e) = enabled {
                db.timed(conn.exec_drop(
                    "UPDATE admin_users SET enabled = ?, updated_at = ? WHERE username = ?",
                    (e as i64, now, name),
                ))
                .await?;
                if !e {
                    db.timed(
                        conn.exec_drop("DELETE FROM admin_sessions WHERE username = ?", (name,)),
                    )
                    .await?;
                }
            }
            match body.get("password") {
                None | Some(Value::Null) => {}
                Some(Value::String(pw)) => {
                    check_password("password", pw)?;
                    let hash = hash_password(pw.clone()).await?;
                    db.timed(conn.exec_drop("UPDATE admin_users SET password_hash = ?, updated_at = ? WHERE username = ?", (hash, now, name))).await?;
                    db.timed(
                        conn.exec_drop("DELETE FROM admin_sessions WHERE username = ?", (name,)),
                    )
                    .await?;
                }
                Some(_) => return Err(ApiError::invalid("password", "must be a string")),
            }
            if bool_field(body, "unlock")? == Some(true) {
                db.timed(conn.exec_drop(
                    "UPDATE admin_users SET failed_logins = 0, locked_until = 0 WHERE username = ?",
                    (name,),
                ))
                .await?;
            }
            let mut changed: Vec<&str> = body
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            changed.sort_unstable();
            insert_audit(
                db,
                &mut conn,
                audit(
                    req,
                    p,
                    "user.update",
                    &format!("users/{name}"),
                    Some(json!({"fields": changed})),
                ),
            )
            .await?;
            let row = load_user(admin, &mut conn, name).await?;
            Ok(ApiResponse::json(200, &user_view(&row)))
        }
        (Endpoint::User(name), _) => {
            let row = load_user(admin, &mut conn, name).await?;
            if row.1 == "admin" {
                last_admin_check(admin, &mut conn, name).await?;
            }
            db.timed(conn.exec_drop("DELETE FROM admin_users WHERE username = ?", (name,)))
                .await?;
            insert_audit(
                db,
                &mut conn,
                audit(req, p, "user.delete", &format!("users/{name}"), None),
            )
            .await?;
            Ok(ApiResponse::json(200, &json!({"deleted": name})))
        }
        _ => Err(ApiError::internal("unexpected endpoint")),
    }
}

fn bool_field(body: &Value, key: &str) -> Result<Option<bool>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid(key, "must be true or false")),
    }
}

async fn load_user(
    admin: &Admin,
    conn: &mut mysql_async::Conn,
    name: &str,
) -> Result<UserRow, ApiError> {
    let row: Option<UserRow> = admin
        .db
        .timed(conn.exec_first(
            format!("SELECT {USER_COLUMNS} FROM admin_users WHERE username = ?"),
            (name,),
        ))
        .await?;
    row.ok_or_else(|| ApiError::not_found("user", name))
}

/// An enabled admin other than `name` must remain.
async fn last_admin_check(
    admin: &Admin,
    conn: &mut mysql_async::Conn,
    name: &str,
) -> Result<(), ApiError> {
    let others: Option<i64> = admin
        .db
        .timed(conn.exec_first(
            "SELECT COUNT(*) FROM admin_users WHERE role = 'admin' AND enabled = 1 AND username <> ?",
            (name,),
        ))
        .await?;
    if others.unwrap_or(0) == 0 {
        return Err(ApiError::conflict(
            "this is the last enabled admin: make another admin first",
        ));
    }
    Ok(())
}

type TokenRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

const TOKEN_COLUMNS: &str =
    "id, name, username, role, prefix, created_at, expires_at, last_used_at";

fn token_view(r: &TokenRow) -> Value {
    json!({
        "id": r.0, "name": r.1, "user": r.2, "role": r.3, "prefix": r.4,
        "created_at": format_ms(r.5), "expires_at": r.6.map(format_ms), "last_used_at": r.7.map(format_ms),
    })
}

/// `/api/v1/tokens[/{id}]` (admins only): a token acts as its user, with at most the
/// role it was given.
pub async fn tokens(
    admin: &Admin,
    req: &ApiRequest,
    method: Method,
    ep: &Endpoint,
    p: &Principal,
    body: &Value,
) -> Result<ApiResponse, ApiError> {
    let db = &admin.db;
    let mut conn = db.conn().await?;
    let now = now();
    match (ep, method) {
        (Endpoint::Tokens, Method::Post) => {
            only(body, &["name", "role", "user", "expires_at"])?;
            let name = string_field(body, "name")?.to_string();
            if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "name",
                    "must be 1 to 255 characters without control characters",
                ));
            }
            let user = match body.get("user") {
                None | Some(Value::Null) => p.user.clone(),
                Some(Value::String(u)) => u.clone(),
                Some(_) => return Err(ApiError::invalid("user", "must be a string")),
            };
            let owner = load_user(admin, &mut conn, &user)
                .await
                .map_err(|_| ApiError::invalid("user", format!("no user \"{user}\"")))?;
            let owner_role = Role::parse(&owner.1).unwrap_or(Role::Viewer);
            let role = role_field(body, "role")?.unwrap_or(owner_role);
            if role > owner_role {
                return Err(ApiError::invalid(
                    "role",
                    format!("cannot exceed the user's role ({})", owner_role.as_str()),
                ));
            }
            let expires = match body.get("expires_at") {
                None | Some(Value::Null) => None,
                Some(v) => match time_value(v) {
                    Some(t) if t > now => Some(t),
                    _ => {
                        return Err(ApiError::invalid(
                            "expires_at",
                            "must be a future RFC 3339 time or unix seconds",
                        ))
                    }
                },
            };
            let token = format!("{TOKEN_PREFIX}{}", random_secret(32)?);
            let sha = sha256_hex(token.as_bytes());
            let id = sha[..12].to_string();
            let prefix: String = token.chars().take(10).collect();
            db.timed(conn.exec_drop(
                "INSERT INTO api_tokens (id, sha256, name, username, role, prefix, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (&id, &sha, &name, &user, role.as_str(), &prefix, now, expires),
            ))
            .await?;
            insert_audit(
                db,
                &mut conn,
                audit(
                    req,
                    p,
                    "token.create",
                    &format!("tokens/{id}"),
                    Some(json!({"user": user, "role": role.as_str()})),
                ),
            )
            .await?;
            let row = load_token(admin, &mut conn, &id).await?;
            let mut v = token_view(&row);
            v["token"] = Value::from(token);
            Ok(ApiResponse::json(201, &v)
                .header("Location", format!("/api/v1/tokens/{id}"))
                .header("Cache-Control", "no-store"))
        }
        (Endpoint::Tokens, _) => {
            let page = Query::parse(&req.query).page()?;
            let rows: Vec<TokenRow> = db
                .timed(conn.query(format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
                )))
                .await?;
            Ok(ApiResponse::json(
                200,
                &paginate(rows.iter().map(|r| (r.0.clone(), token_view(r))), &page),
            ))
        }
        (Endpoint::Token(id), Method::Get | Method::Head) => {
            let row = load_token(admin, &mut conn, id).await?;
            Ok(ApiResponse::json(200, &token_view(&row)))
        }
        (Endpoint::Token(id), _) => {
            load_token(admin, &mut conn, id).await?;
            db.timed(conn.exec_drop("DELETE FROM api_tokens WHERE id = ?", (id,)))
                .await?;
            insert_audit(
                db,
                &mut conn,
                audit(req, p, "token.delete", &format!("tokens/{id}"), None),
            )
            .await?;
            Ok(ApiResponse::json(200, &json!({"deleted": id})))
        }
        _ => Err(ApiError::internal("unexpected endpoint")),
    }
}

async fn load_token(
    admin: &Admin,
    conn: &mut mysql_async::Conn,
    id: &str,
) -> Result<TokenRow, ApiError> {
    let row: Option<TokenRow> = admin
        .db
        .timed(conn.exec_first(
            format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?"),
            (id,),
        ))
        .await?;
    row.ok_or_else(|| ApiError::not_found("token", id))
}

/// Creates the first admin when there is no user at all (once, whichever worker or node
/// gets there first). `Ok(true)`: created.
pub async fn bootstrap(admin: &Admin, b: &Bootstrap) -> Result<bool, ApiError> {
    let db = &admin.db;
    let mut conn = db.conn().await?;
    let users: Option<i64> = db
        .timed(conn.query_first("SELECT COUNT(*) FROM admin_users"))
        .await?;
    if users.unwrap_or(0) > 0 {
        return Ok(false);
    }
    check_username(&b.user)?;
    check_password("password", &b.password)?;
    let hash = hash_password(b.password.clone()).await?;
    let now = now();
    db.timed(conn.exec_drop(
        "INSERT IGNORE INTO admin_users (username, password_hash, role, enabled, failed_logins, locked_until, created_at, updated_at)
         SELECT ?, ?, 'admin', 1, 0, 0, ?, ? FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM admin_users)",
        (&b.user, &hash, now, now),
    ))
    .await?;
    let created = conn.affected_rows() > 0;
    if created {
        insert_audit(
            db,
            &mut conn,
            Audit {
                at: now,
                actor: "bootstrap",
                role: None,
                action: "user.bootstrap",
                resource: &format!("users/{}", b.user),
                version: None,
                ip: "",
                details: None,
            },
        )
        .await?;
    }
    Ok(created)
}
