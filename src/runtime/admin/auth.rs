//! Admin users, sessions and API tokens in MySQL: who a request is, logging in (argon2id
//! on a blocking thread, never on the runtime's thread; lockout after repeated failures;
//! a limit per client address), the caller's own session and password, and the users and
//! tokens an admin manages. Passwords, session ids and tokens are stored as hashes only
//! and never logged or returned (a new token once, in the answer that makes it).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use super::db::{insert_audit, Audit};
use super::{Admin, ApiRequest, ApiResponse, Bootstrap};
use crate::core::admin::auth::{
    bearer, check_password, check_username, session_clear_cookie, session_cookie,
    session_set_cookie, Principal, Role, Via, IP_FAILURES, IP_WINDOW_MS, LOCK_AFTER, LOCK_MS,
    SESSION_TTL_MS, TOKEN_PREFIX,
};
use crate::core::admin::clock::{format_ms, time_value};
use crate::core::admin::endpoint::{Endpoint, Method};
use crate::core::admin::error::ApiError;
use crate::core::admin::query::{numeric_key, paginate, Query};
use crate::core::snapshot::sha256_hex;
use crate::runtime::redis_source::unix_ms;

fn now() -> i64 {
    unix_ms() as i64
}

/// `n` random bytes from the OS as base64url text; without OS randomness nothing that
/// needs it is made (an error, never a predictable value).
pub fn random_secret(n: usize) -> Result<String, ApiError> {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b)
        .map_err(|_| ApiError::internal("the system's random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Hashes a password with argon2id, on a blocking thread.
pub async fn hash_password(pw: String) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|_| ApiError::internal("the system's random source failed"))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(ApiError::internal)
}

/// Whether `pw` matches `hash` (argon2, on a blocking thread). An unknown user is checked
/// against a hash of nothing, so the answer takes as long.
async fn verify_password(hash: Option<String>, pw: String) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let hash = match hash {
        Some(h) => h,
        None => match DUMMY.get() {
            Some(d) => d.clone(),
            None => match hash_password("not a password of anyone".into()).await {
                Ok(d) => DUMMY.get_or_init(|| d).clone(),
                Err(_) => return false,
            },
        },
    };
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

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

fn string_field<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    match body.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ApiError::invalid(key, "is required")),
        Some(_) => Err(ApiError::invalid(key, "must be a string")),
    }
}

fn only(body: &Value, fields: &[&str]) -> Result<(), ApiError> {
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

fn audit<'a>(
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

/// The numeric key of an audit row, for pagination in descending order.
pub fn desc_key(id: i64) -> String {
    numeric_key(u64::MAX - id as u64)
}
