//! Passwords as argon2id hashes (made and checked on a blocking thread, never on the
//! runtime's thread), and random secrets from the OS (session ids, CSRF tokens, API tokens,
//! generated keys).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;

use crate::core::admin::error::ApiError;

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
pub(super) async fn verify_password(hash: Option<String>, pw: String) -> bool {
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
