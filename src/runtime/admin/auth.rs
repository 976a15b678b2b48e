//! Who a request is (an API token or a session cookie), logging in (lockout after repeated
//! failures, a limit per client address), and the caller's own session and password.
//! Passwords, session ids and tokens are stored as hashes only and never logged or returned.

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use super::db::{insert_audit, Audit};
use super::now;
use super::password::{hash_password, random_secret, verify_password};
use super::{Admin, ApiRequest, ApiResponse};
use crate::core::admin::auth::{
    bearer, check_password, session_clear_cookie, session_cookie, session_set_cookie, Principal,
    Role, Via, IP_FAILURES, IP_WINDOW_MS, LOCK_AFTER, LOCK_MS, SESSION_TTL_MS, TOKEN_PREFIX,
};
use crate::core::admin::clock::format_ms;
use crate::core::admin::endpoint::Endpoint;
use crate::core::admin::error::ApiError;
use crate::core::snapshot::sha256_hex;

/// The caller, and how it proved it.
pub struct Session {
    pub principal: Principal,
    /// The CSRF token of a cookie session.
    pub csrf: String,
    /// The hash of the session id (a cookie session).
    pub id_sha256: Option<String>,
}

/// Who the request is: an API token (`Authorization: Bearer aigw_...`) or a session
/// cookie. A credential that is sent and does not hold is a 401 (no fallback to another).
pub async fn principal(admin: &Admin, req: &ApiRequest) -> Result<Option<Session>, ApiError> {
    let db = &admin.db;
    let now = now();
    if let Some(auth) = req.authorization.as_deref() {
        let bad = || {
            ApiError::new(
                401,
                "invalid_token",
                "the API token is not valid (unknown, expired or revoked)",
            )
        };
        let token = bearer(auth)
            .filter(|t| t.starts_with(TOKEN_PREFIX))
            .ok_or_else(bad)?;
        let sha = sha256_hex(token.as_bytes());
        let mut conn = db.conn().await?;
        let row: Option<(String, String, String, Option<i64>, String, i64)> = db
            .timed(conn.exec_first(
                "SELECT t.id, t.username, t.role, t.expires_at, u.role, u.enabled
                 FROM api_tokens t JOIN admin_users u ON u.username = t.username WHERE t.sha256 = ?",
                (&sha,),
            ))
            .await?;
        let (id, user, role, expires, user_role, enabled) = row.ok_or_else(bad)?;
        if enabled == 0 || expires.is_some_and(|e| e <= now) {
            return Err(bad());
        }
        let role = Role::parse(&role)
            .unwrap_or(Role::Viewer)
            .min(Role::parse(&user_role).unwrap_or(Role::Viewer));
        db.timed(conn.exec_drop(
            "UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            (now, &id, now - 60_000),
        ))
        .await?;
        return Ok(Some(Session {
            principal: Principal {
                user,
                role,
                via: Via::Token,
                token_id: Some(id),
            },
            csrf: String::new(),
            id_sha256: None,
        }));
    }
    let Some(sid) = req.cookie.as_deref().and_then(session_cookie) else {
        return Ok(None);
    };
    let sha = sha256_hex(sid.as_bytes());
    let mut conn = db.conn().await?;
    let row: Option<(String, String, i64, String, i64)> = db
        .timed(conn.exec_first(
            "SELECT s.username, s.csrf, s.expires_at, u.role, u.enabled
             FROM admin_sessions s JOIN admin_users u ON u.username = s.username WHERE s.id_sha256 = ?",
            (&sha,),
        ))
        .await?;
    match row {
        Some((user, csrf, expires, role, enabled)) if expires > now && enabled != 0 => {
            Ok(Some(Session {
                principal: Principal {
                    user,
                    role: Role::parse(&role).unwrap_or(Role::Viewer),
                    via: Via::Session,
                    token_id: None,
                },
                csrf,
                id_sha256: Some(sha),
            }))
        }
        _ => Err(ApiError::new(
            401,
            "session_expired",
            "the session has ended: log in again",
        )),
    }
}

pub(super) fn string_field<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    match body.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ApiError::invalid(key, "is required")),
        Some(_) => Err(ApiError::invalid(key, "must be a string")),
    }
}

pub(super) fn only(body: &Value, fields: &[&str]) -> Result<(), ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("", "the body must be a JSON object"))?;
    match obj.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(k.clone(), "unknown field")),
        None => Ok(()),
    }
}

/// `POST /api/v1/auth/login {"username", "password"}`.
pub async fn login(admin: &Admin, req: &ApiRequest, body: &Value) -> Result<ApiResponse, ApiError> {
    only(body, &["username", "password"])?;
    let user = string_field(body, "username")?.to_string();
    let pw = string_field(body, "password")?.to_string();
    let db = &admin.db;
    let now = now();
    let mut conn = db.conn().await?;
    let recent: Option<i64> = db
        .timed(conn.exec_first(
            "SELECT COUNT(*) FROM login_failures WHERE ip = ? AND at > ?",
            (&req.client_ip, now - IP_WINDOW_MS),
        ))
        .await?;
    if recent.unwrap_or(0) as u64 >= IP_FAILURES {
        return Err(ApiError::new(
            429,
            "too_many_attempts",
            "too many failed logins from this address: wait and try again",
        )
        .retry_after((IP_WINDOW_MS / 1000) as u64));
    }
    let row: Option<(String, String, i64, i64, i64)> = db
        .timed(conn.exec_first(
            "SELECT password_hash, role, enabled, failed_logins, locked_until FROM admin_users WHERE username = ?",
            (&user,),
        ))
        .await?;
    if let Some((_, _, _, _, locked_until)) = &row {
        if *locked_until > now {
            // a locked account's attempts count against the address too
            db.timed(conn.exec_drop(
                "INSERT INTO login_failures (ip, at) VALUES (?, ?)",
                (&req.client_ip, now),
            ))
            .await?;
            return Err(ApiError::new(
                403,
                "account_locked",
                format!("the account is locked after {LOCK_AFTER} failed logins; try again later or ask an admin to unlock it"),
            )
            .retry_after(((*locked_until - now) / 1000 + 1) as u64));
        }
    }
    if row.as_ref().is_some_and(|r| r.4 != 0) {
        // a lock that has ended starts the count again (one more wrong password does not
        // lock the account at once)
        db.timed(conn.exec_drop(
            "UPDATE admin_users SET failed_logins = 0, locked_until = 0 WHERE username = ? AND locked_until <= ?",
            (&user, now),
        ))
        .await?;
    }
    let ok = verify_password(row.as_ref().map(|r| r.0.clone()), pw).await;
    let enabled = row.as_ref().is_some_and(|r| r.2 != 0);
    if !ok || !enabled {
        db.timed(conn.exec_drop(
            "INSERT INTO login_failures (ip, at) VALUES (?, ?)",
            (&req.client_ip, now),
        ))
        .await?;
        db.timed(conn.exec_drop(
            "DELETE FROM login_failures WHERE at < ?",
            (now - IP_WINDOW_MS,),
        ))
        .await?;
        if row.is_some() {
            db.timed(conn.exec_drop(
                // locked_until first: MySQL and MariaDB assign left to right, so an
                // assignment after `failed_logins = failed_logins + 1` would see the new
                // count (and lock after LOCK_AFTER - 1 failures)
                "UPDATE admin_users SET locked_until = IF(failed_logins + 1 >= ?, ?, locked_until),
                    failed_logins = failed_logins + 1 WHERE username = ?",
                (LOCK_AFTER, now + LOCK_MS, &user),
            ))
            .await?;
        }
        insert_audit(
            db,
            &mut conn,
            Audit {
                at: now,
                actor: &user,
                role: None,
                action: "auth.login_failed",
                resource: "auth",
                version: None,
                ip: &req.client_ip,
                details: None,
            },
        )
        .await?;
        return Err(ApiError::new(
            401,
            "invalid_credentials",
            "wrong user name or password",
        ));
    }
    let role = row.map(|r| r.1).unwrap_or_default();
    let sid = random_secret(32)?;
    let csrf = random_secret(32)?;
    db.timed(conn.exec_drop(
        "UPDATE admin_users SET failed_logins = 0, locked_until = 0 WHERE username = ?",
        (&user,),
    ))
    .await?;
    db.timed(conn.exec_drop("DELETE FROM admin_sessions WHERE expires_at < ?", (now,)))
        .await?;
    db.timed(conn.exec_drop(
        "INSERT INTO admin_sessions (id_sha256, username, csrf, ip, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (sha256_hex(sid.as_bytes()), &user, &csrf, &req.client_ip, now, now + SESSION_TTL_MS),
    ))
    .await?;
    insert_audit(
        db,
        &mut conn,
        Audit {
            at: now,
            actor: &user,
            role: Some(&role),
            action: "auth.login",
            resource: "auth",
            version: None,
            ip: &req.client_ip,
            details: None,
        },
    )
    .await?;
    Ok(ApiResponse::json(
        200,
        &json!({"user": user, "role": role, "csrf_token": csrf, "expires_at": format_ms(now + SESSION_TTL_MS)}),
    )
    .header("Set-Cookie", session_set_cookie(&sid, req.secure))
    .header("Cache-Control", "no-store"))
}

/// The caller's own: logout, me, password.
pub async fn own(
    admin: &Admin,
    req: &ApiRequest,
    ep: &Endpoint,
    s: &Session,
    body: &Value,
) -> Result<ApiResponse, ApiError> {
    let db = &admin.db;
    let p = &s.principal;
    match ep {
        Endpoint::Me => Ok(ApiResponse::json(
            200,
            &json!({"user": p.user, "role": p.role.as_str(),
                    "via": if p.via == Via::Session { "session" } else { "token" },
                    "token_id": p.token_id,
                    "csrf_token": if p.via == Via::Session { Value::from(s.csrf.clone()) } else { Value::Null }}),
        )
        .header("Cache-Control", "no-store")),
        Endpoint::Logout => {
            let mut conn = db.conn().await?;
            if let Some(sha) = &s.id_sha256 {
                db.timed(conn.exec_drop("DELETE FROM admin_sessions WHERE id_sha256 = ?", (sha,))).await?;
            }
            insert_audit(db, &mut conn, audit(req, p, "auth.logout", "auth", None)).await?;
            Ok(ApiResponse::json(200, &json!({"logged_out": true}))
                .header("Set-Cookie", session_clear_cookie(req.secure)))
        }
        _ => {
            only(body, &["current_password", "new_password"])?;
            let current = string_field(body, "current_password")?.to_string();
            let new = string_field(body, "new_password")?.to_string();
            check_password("new_password", &new)?;
            let mut conn = db.conn().await?;
            let hash: Option<String> = db
                .timed(conn.exec_first("SELECT password_hash FROM admin_users WHERE username = ?", (&p.user,)))
                .await?;
            if !verify_password(hash, current).await {
                return Err(ApiError::invalid("current_password", "is not the current password"));
            }
            let hashed = hash_password(new).await?;
            db.timed(conn.exec_drop(
                "UPDATE admin_users SET password_hash = ?, updated_at = ? WHERE username = ?",
                (&hashed, now(), &p.user),
            ))
            .await?;
            // every other session of the user ends
            db.timed(conn.exec_drop(
                "DELETE FROM admin_sessions WHERE username = ? AND id_sha256 <> ?",
                (&p.user, s.id_sha256.clone().unwrap_or_default()),
            ))
            .await?;
            insert_audit(db, &mut conn, audit(req, p, "auth.password", &format!("users/{}", p.user), None)).await?;
            Ok(ApiResponse::json(200, &json!({"changed": true})))
        }
    }
}

pub(super) fn audit<'a>(
    req: &'a ApiRequest,
    p: &'a Principal,
    action: &'a str,
    resource: &'a str,
    details: Option<Value>,
) -> Audit<'a> {
    Audit {
        at: now(),
        actor: &p.user,
        role: Some(p.role.as_str()),
        action,
        resource,
        version: None,
        ip: &req.client_ip,
        details,
    }
}
