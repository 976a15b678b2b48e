//! Client keys of a namespace: generated (the plaintext is in the answer once, only its
//! sha256 and a display prefix are kept) or imported as a hash; disabled, given an expiry,
//! rotated with a grace period, deleted. A key's id is the first 12 hex digits of its
//! sha256, as the gateway's logs and `$ai_gateway_key_id` show it.

use serde_json::{json, Map, Value};

use super::namespaces::doc_path as ns_path;
use super::{body_object, known, merge_patch, opt_string, Applied, Ctx};
use crate::core::admin::clock::{duration_value, time_value};
use crate::core::admin::error::ApiError;
use crate::core::admin::state::{key_id, Key, State};
use crate::core::admin::views;
use crate::core::snapshot::sha256_hex;

/// How many characters of a generated key are kept to recognise it.
pub const DISPLAY_PREFIX: usize = 10;
/// The longest grace period of a rotation.
const MAX_GRACE_MS: u64 = 30 * 86_400_000;

fn expiry(obj: &Map<String, Value>, key: &str, now: i64) -> Result<Option<i64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match time_value(v) {
            Some(t) if t > now => Ok(Some(t)),
            Some(_) => Err(ApiError::invalid(key, "must be in the future")),
            None => Err(ApiError::invalid(
                key,
                "must be an RFC 3339 time (e.g. \"2026-12-31T00:00:00Z\") or unix seconds",
            )),
        },
    }
}

fn name(obj: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let n = opt_string(obj, "name")?;
    if n.as_deref()
        .is_some_and(|n| n.chars().any(char::is_control) || n.len() > 255)
    {
        return Err(ApiError::invalid(
            "name",
            "must be at most 255 characters without control characters",
        ));
    }
    Ok(n)
}

/// Key `id` of namespace `ns`, or the 404 of whichever is missing.
fn key_of<'a>(state: &'a State, ns: &str, id: &str) -> Result<&'a Key, ApiError> {
    state
        .namespaces
        .get(ns)
        .ok_or_else(|| ApiError::not_found("namespace", ns))?
        .keys
        .get(id)
        .ok_or_else(|| ApiError::not_found("key", id))
}

fn path(state: &State, ns: &str) -> Option<String> {
    ns_path(state, ns).map(|p| format!("{p}.api_keys"))
}

/// A new key from a plaintext the runtime drew, or from a hash.
fn new_key(
    state: &State,
    obj: &Map<String, Value>,
    ctx: &Ctx,
) -> Result<(Key, Option<String>), ApiError> {
    let (sha, prefix, secret) = match opt_string(obj, "sha256")? {
        Some(h) => {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::invalid(
                    "sha256",
                    "must be 64 hexadecimal characters (the sha256 of the key, never the key)",
                ));
            }
            let prefix = opt_string(obj, "prefix")?;
            if prefix
                .as_deref()
                .is_some_and(|p| p.len() > 16 || !p.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(ApiError::invalid(
                    "prefix",
                    "must be at most 16 printable characters",
                ));
            }
            (h.to_ascii_lowercase(), prefix, None)
        }
        None => {
            if obj.contains_key("prefix") {
                return Err(ApiError::invalid(
                    "prefix",
                    "only with \"sha256\" (a generated key has its own)",
                ));
            }
            let plain = ctx
                .new_key
                .ok_or_else(|| ApiError::internal("no key was generated"))?;
            (
                sha256_hex(plain.as_bytes()),
                Some(plain.chars().take(DISPLAY_PREFIX).collect()),
                Some(plain.to_string()),
            )
        }
    };
    let name = name(obj)?;
    let expires_at = expiry(obj, "expires_at", ctx.now_ms)?;
    if let Some((ns, k)) = state.key_by_sha(&sha) {
        return Err(ApiError::conflict(format!(
            "this key is already key {} of namespace \"{}\"",
            k.id, ns.code
        ))
        .with_detail("sha256", "already exists"));
    }
    let id = key_id(&sha);
    if state.key_id_taken(&id) {
        return Err(ApiError::new(
            409,
            "key_id_taken",
            format!("another key has the id {id}"),
        ));
    }
    let key = Key {
        id,
        name,
        sha256: sha,
        prefix,
        enabled: match obj.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid("enabled", "must be true or false")),
        },
        expires_at,
        rotated_to: None,
        created_at: ctx.now_ms,
        updated_at: ctx.now_ms,
    };
    Ok((key, secret))
}

pub fn create(state: &mut State, ns: &str, body: &Value, ctx: &Ctx) -> Result<Applied, ApiError> {
    if !state.namespaces.contains_key(ns) {
        return Err(ApiError::not_found("namespace", ns));
    }
    let obj = body_object(body)?;
    known(obj, &["name", "expires_at", "sha256", "prefix", "enabled"])?;
    let (key, secret) = new_key(state, obj, ctx)?;
    let id = key.id.clone();
    let mut view = views::key(ns, &key, ctx.now_ms);
    if let Some(s) = &secret {
        view["key"] = Value::from(s.clone());
    }
    let doc = path(state, ns);
    if let Some(n) = state.namespaces.get_mut(ns) {
        n.keys.insert(id.clone(), key);
    }
    let mut a = Applied::new(
        201,
        if secret.is_some() {
            "key.generate"
        } else {
            "key.import"
        },
        format!("namespaces/{ns}/keys/{id}"),
        view,
    );
    a.location = Some(a.resource.clone());
    a.secret = secret;
    a.doc_path = doc;
    Ok(a)
}

pub fn patch(
    state: &mut State,
    ns: &str,
    id: &str,
    body: &Value,
    ctx: &Ctx,
) -> Result<Applied, ApiError> {
    let key = key_of(state, ns, id)?;
    body_object(body)?;
    let mut cur = json!({"name": key.name, "enabled": key.enabled,
                         "expires_at": key.expires_at.map(|t| t / 1000)});
    merge_patch(&mut cur, body);
    let obj = body_object(&cur)?;
    known(obj, &["name", "enabled", "expires_at"])?;
    let name = name(obj)?;
    let enabled = match obj.get("enabled") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => true,
        Some(_) => return Err(ApiError::invalid("enabled", "must be true or false")),
    };
    // an unchanged expiry may be in the past (an expired key renamed); a new one may not
    let expires_at = match (obj.get("expires_at"), body.get("expires_at")) {
        (_, Some(_)) => expiry(obj, "expires_at", ctx.now_ms)?,
        _ => key.expires_at,
    };
    let doc = path(state, ns);
    let key = state
        .namespaces
        .get_mut(ns)
        .and_then(|n| n.keys.get_mut(id))
        .ok_or_else(|| ApiError::not_found("key", id))?;
    if key.name != name || key.enabled != enabled || key.expires_at != expires_at {
        key.name = name;
        key.enabled = enabled;
        key.expires_at = expires_at;
        key.updated_at = ctx.now_ms;
    }
    let mut a = Applied::new(
        200,
        "key.update",
        format!("namespaces/{ns}/keys/{id}"),
        views::key(ns, key, ctx.now_ms),
    );
    a.doc_path = doc;
    Ok(a)
}

pub fn delete(state: &mut State, ns: &str, id: &str) -> Result<Applied, ApiError> {
    let n = state
        .namespaces
        .get_mut(ns)
        .ok_or_else(|| ApiError::not_found("namespace", ns))?;
    n.keys
        .remove(id)
        .ok_or_else(|| ApiError::not_found("key", id))?;
    Ok(Applied::new(
        200,
        "key.delete",
        format!("namespaces/{ns}/keys/{id}"),
        Value::Null,
    ))
}

/// A new key replaces `id`, which keeps working for `grace` (default 0: it stops now).
pub fn rotate(
    state: &mut State,
    ns: &str,
    id: &str,
    body: &Value,
    ctx: &Ctx,
) -> Result<Applied, ApiError> {
    let old = key_of(state, ns, id)?.clone();
    let obj = body_object(body)?;
    known(obj, &["grace", "name", "expires_at"])?;
    let grace = match obj.get("grace") {
        None | Some(Value::Null) => 0,
        Some(v) => duration_value(v)
            .filter(|g| *g <= MAX_GRACE_MS)
            .ok_or_else(|| {
                ApiError::invalid(
                    "grace",
                    "must be seconds or \"<n>s\", \"<n>m\", \"<n>h\", \"<n>d\" (at most 30 days)",
                )
            })?,
    };
    let mut fields = Map::new();
    fields.insert(
        "name".into(),
        match obj.get("name") {
            Some(v) => v.clone(),
            None => old.name.clone().map_or(Value::Null, Value::from),
        },
    );
    if let Some(e) = obj.get("expires_at") {
        fields.insert("expires_at".into(), e.clone());
    }
    let (key, secret) = new_key(state, &fields, ctx)?;
    let new_id = key.id.clone();
    let ends = ctx.now_ms + grace as i64;
    let doc = path(state, ns);
    let n = state
        .namespaces
        .get_mut(ns)
        .ok_or_else(|| ApiError::not_found("namespace", ns))?;
    n.keys.insert(new_id.clone(), key);
    let o = n
        .keys
        .get_mut(id)
        .ok_or_else(|| ApiError::not_found("key", id))?;
    o.expires_at = Some(o.expires_at.map_or(ends, |t| t.min(ends)));
    o.rotated_to = Some(new_id.clone());
    o.updated_at = ctx.now_ms;
    let old_view = views::key(ns, o, ctx.now_ms);
    let mut new_view = views::key(ns, &n.keys[&new_id], ctx.now_ms);
    if let Some(s) = &secret {
        new_view["key"] = Value::from(s.clone());
    }
    let mut a = Applied::new(
        201,
        "key.rotate",
        format!("namespaces/{ns}/keys/{id}"),
        json!({"key": secret, "new": new_view, "old": old_view}),
    );
    a.location = Some(format!("namespaces/{ns}/keys/{new_id}"));
    a.secret = secret;
    a.doc_path = doc;
    Ok(a)
}
