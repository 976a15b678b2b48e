//! Who may do what in the admin API, and the rules of its credentials: roles, what each
//! call needs, the session cookie, CSRF, names and passwords, login lockout.

use super::error::ApiError;

/// `viewer` reads, `editor` also changes the configuration, `admin` also manages users and
/// API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Public,
    Authenticated,
    Read,
    Edit,
    Admin,
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A session cookie: state-changing methods need the CSRF header.
    Session,
    /// `Authorization: Bearer` with an API token.
    Token,
}

/// Someone the API knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    pub via: Via,
    /// The API token's id, for the audit log.
    pub token_id: Option<String>,
}

impl Principal {
    /// The actor as the audit log names it.
    pub fn actor(&self) -> String {
        match &self.token_id {
            Some(t) => format!("{} (token {t})", self.user),
            None => self.user.clone(),
        }
    }
}

/// Whether `who` may make a call that needs `need`: `Err` is the 401 or 403 to answer.
pub fn authorize(need: Need, who: Option<&Principal>) -> Result<(), ApiError> {
    if need == Need::Public {
        return Ok(());
    }
    let Some(p) = who else {
        return Err(ApiError::new(
            401,
            "unauthenticated",
            "log in (POST /api/v1/auth/login) or send an API token as Authorization: Bearer",
        ));
    };
    let required = match need {
        Need::Public | Need::Authenticated | Need::Read => Role::Viewer,
        Need::Edit => Role::Editor,
        Need::Admin => Role::Admin,
    };
    if p.role < required {
        return Err(ApiError::new(
            403,
            "forbidden",
            format!(
                "this needs the {} role; {} has {}",
                required.as_str(),
                p.user,
                p.role.as_str()
            ),
        ));
    }
    Ok(())
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "aigw_session";
/// The header a cookie session's state-changing calls carry its CSRF token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// How long a session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Consecutive failed logins that lock an account, and for how long.
pub const LOCK_AFTER: u32 = 5;
pub const LOCK_MS: i64 = 15 * 60 * 1000;
/// Failed logins from one address within `IP_WINDOW_MS` after which it must wait.
pub const IP_FAILURES: u64 = 20;
pub const IP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Password length bounds.
pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 1024;

/// The session id in a `Cookie` header.
pub fn session_cookie(header: &str) -> Option<&str> {
    header.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        (name == SESSION_COOKIE && !value.is_empty()).then_some(value)
    })
}

/// `Set-Cookie` for a new session (`secure`: the API is served over TLS).
pub fn session_set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub fn session_clear_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// A cookie session's state-changing call must carry the session's CSRF token (a page of another
/// site can make the browser send the cookie, not this header). Compared in constant time.
pub fn csrf_holds(expected: &str, sent: Option<&str>) -> bool {
    let Some(sent) = sent else {
        return false;
    };
    let (a, b) = (expected.as_bytes(), sent.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An admin user's name: 1-64 of letters, digits, `.`, `_`, `-`, `@`, but not `.` or `..`
/// (a URL cannot name them: /api/v1/users/.. is /api/v1/).
pub fn check_username(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
    {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 64 letters, digits, '.', '_', '-' or '@'",
        ));
    }
    if name == "." || name == ".." {
        return Err(ApiError::invalid(
            "name",
            "cannot be \".\" or \"..\" (a URL cannot name it)",
        ));
    }
    Ok(())
}

pub fn check_password(path: &str, pw: &str) -> Result<(), ApiError> {
    let n = pw.chars().count();
    if n < PASSWORD_MIN || pw.len() > PASSWORD_MAX {
        return Err(ApiError::invalid(
            path,
            format!("must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
        ));
    }
    Ok(())
}

/// `Authorization: Bearer <token>` of an API token.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let t = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !t.is_empty()).then_some(t)
}

/// API tokens start with this, to tell them from client keys in a leak scan.
pub const TOKEN_PREFIX: &str = "aigw_";

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role) -> Principal {
        Principal {
            user: "u".into(),
            role,
            via: Via::Token,
            token_id: None,
        }
    }

    #[test]
    fn roles_and_needs() {
        assert!(authorize(Need::Public, None).is_ok());
        assert_eq!(authorize(Need::Read, None).unwrap_err().status, 401);
        assert!(authorize(Need::Read, Some(&who(Role::Viewer))).is_ok());
        assert_eq!(
            authorize(Need::Edit, Some(&who(Role::Viewer)))
                .unwrap_err()
                .status,
            403
        );
        assert!(authorize(Need::Edit, Some(&who(Role::Editor))).is_ok());
        assert_eq!(
            authorize(Need::Admin, Some(&who(Role::Editor)))
                .unwrap_err()
                .status,
            403
        );
        assert!(authorize(Need::Admin, Some(&who(Role::Admin))).is_ok());
    }

    #[test]
    fn cookies_csrf_names() {
        assert_eq!(session_cookie("a=1; aigw_session=xyz; b=2"), Some("xyz"));
        assert_eq!(session_cookie("aigw_session="), None);
        assert_eq!(session_cookie("x_aigw_session=1"), None);
        assert!(session_set_cookie("id", false).contains("HttpOnly; SameSite=Strict"));
        assert!(session_set_cookie("id", true).ends_with("; Secure"));
        assert!(csrf_holds("abc", Some("abc")));
        assert!(!csrf_holds("abc", Some("abd")));
        assert!(!csrf_holds("abc", None));
        assert!(!csrf_holds("", Some("")));
        assert!(check_username("ops.admin@x").is_ok());
        assert!(check_username("a b").is_err());
        assert!(check_username("..").is_err());
        assert!(check_username(".").is_err());
        assert!(check_username(".x").is_ok());
        assert!(check_password("password", "short").is_err());
        assert!(check_password("password", "long enough pw").is_ok());
        assert_eq!(bearer("Bearer aigw_x"), Some("aigw_x"));
        assert_eq!(bearer("Basic x"), None);
    }
}
