//! The admin API's URLs: a request's method and path to the endpoint that serves it (404
//! for a path the API does not have, 405 with the allowed methods for a method it does not
//! take), and the role each needs.

use super::auth::Need;
use super::error::ApiError;
use super::ops::ItemKind;

/// The API's root.
pub const ROOT: &str = "/api/v1/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Other,
}

impl Method {
    pub fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Other => "OTHER",
        }
    }

    /// GET and HEAD change nothing.
    pub fn is_safe(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Login,
    Logout,
    Me,
    Password,
    OpenApi,
    Namespaces,
    Namespace(String),
    Keys(String),
    Key(String, String),
    KeyRotate(String, String),
    Items(ItemKind, String),
    Item(ItemKind, String, u64),
    Targets,
    Target(String),
    Routes,
    Route(String),
    Settings,
    Config,
    ConfigValidate,
    Revisions,
    Revision(u64),
    Diff,
    Rollback,
    Nodes,
    AuditLogs,
    AccessLogs,
    AccessLog(String),
    Usage,
    Users,
    User(String),
    Tokens,
    Token(String),
}

use Method::{Delete, Get, Patch, Post, Put};

impl Endpoint {
    /// The methods the endpoint takes (HEAD goes with GET).
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Endpoint::Login | Endpoint::Logout | Endpoint::Password => &[Post],
            Endpoint::KeyRotate(..) | Endpoint::ConfigValidate | Endpoint::Rollback => &[Post],
            Endpoint::Me | Endpoint::OpenApi | Endpoint::Revisions | Endpoint::Revision(_) => {
                &[Get]
            }
            Endpoint::Diff | Endpoint::Nodes | Endpoint::AuditLogs => &[Get],
            Endpoint::AccessLogs | Endpoint::AccessLog(_) | Endpoint::Usage => &[Get],
            Endpoint::Namespaces | Endpoint::Keys(_) | Endpoint::Items(..) => &[Get, Post],
            Endpoint::Targets | Endpoint::Routes | Endpoint::Users | Endpoint::Tokens => {
                &[Get, Post]
            }
            Endpoint::Namespace(_)
            | Endpoint::Item(..)
            | Endpoint::Target(_)
            | Endpoint::Route(_) => &[Get, Put, Patch, Delete],
            Endpoint::Key(..) | Endpoint::User(_) => &[Get, Patch, Delete],
            Endpoint::Token(_) => &[Get, Delete],
            Endpoint::Settings => &[Get, Put, Patch],
            Endpoint::Config => &[Get, Put],
        }
    }

    /// The role a call needs.
    pub fn need(&self, method: Method) -> Need {
        match self {
            Endpoint::Login | Endpoint::OpenApi => Need::Public,
            Endpoint::Logout | Endpoint::Me | Endpoint::Password => Need::Authenticated,
            Endpoint::Users | Endpoint::User(_) | Endpoint::Tokens | Endpoint::Token(_) => {
                Need::Admin
            }
            Endpoint::ConfigValidate | Endpoint::Rollback => Need::Edit,
            _ if method.is_safe() => Need::Read,
            _ => Need::Edit,
        }
    }

    /// Whether a successful call of `method` changes the configuration (and makes a
    /// revision).
    pub fn writes_config(&self, method: Method) -> bool {
        !method.is_safe()
            && !matches!(
                self,
                Endpoint::Login
                    | Endpoint::Logout
                    | Endpoint::Password
                    | Endpoint::ConfigValidate
                    | Endpoint::Users
                    | Endpoint::User(_)
                    | Endpoint::Tokens
                    | Endpoint::Token(_)
            )
    }
}

/// The endpoint of `path` (nginx's decoded `$uri`) for `method`.
pub fn route(method: Method, path: &str) -> Result<Endpoint, ApiError> {
    let not_found = || ApiError::new(404, "not_found", format!("no such API path: {path}"));
    let rest = path.strip_prefix(ROOT).ok_or_else(not_found)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let seg: Vec<&str> = rest.split('/').collect();
    if seg.iter().any(|s| s.is_empty()) {
        return Err(not_found());
    }
    let id = |s: &str| -> Result<u64, ApiError> { s.parse().map_err(|_| not_found()) };
    let item_kind = |s: &str| match s {
        "matchers" => Some(ItemKind::Matcher),
        "policies" => Some(ItemKind::Policy),
        _ => None,
    };
    let e = match seg.as_slice() {
        ["auth", "login"] => Endpoint::Login,
        ["auth", "logout"] => Endpoint::Logout,
        ["auth", "me"] => Endpoint::Me,
        ["auth", "password"] => Endpoint::Password,
        ["openapi.json"] => Endpoint::OpenApi,
        ["namespaces"] => Endpoint::Namespaces,
        ["namespaces", ns] => Endpoint::Namespace(ns.to_string()),
        ["namespaces", ns, "keys"] => Endpoint::Keys(ns.to_string()),
        ["namespaces", ns, "keys", k] => Endpoint::Key(ns.to_string(), k.to_string()),
        ["namespaces", ns, "keys", k, "rotate"] => {
            Endpoint::KeyRotate(ns.to_string(), k.to_string())
        }
        ["namespaces", ns, list] => match item_kind(list) {
            Some(kind) => Endpoint::Items(kind, ns.to_string()),
            None => return Err(not_found()),
        },
        ["namespaces", ns, list, i] => match item_kind(list) {
            Some(kind) => Endpoint::Item(kind, ns.to_string(), id(i)?),
            None => return Err(not_found()),
        },
        ["targets"] => Endpoint::Targets,
        ["targets", t] => Endpoint::Target(t.to_string()),
        ["routes"] => Endpoint::Routes,
        ["routes", r] => Endpoint::Route(r.to_string()),
        ["settings"] => Endpoint::Settings,
        ["config"] => Endpoint::Config,
        ["config", "validate"] => Endpoint::ConfigValidate,
        ["config", "revisions"] => Endpoint::Revisions,
        ["config", "revisions", v] => Endpoint::Revision(id(v)?),
        ["config", "diff"] => Endpoint::Diff,
        ["config", "rollback"] => Endpoint::Rollback,
        ["nodes"] => Endpoint::Nodes,
        ["audit-logs"] => Endpoint::AuditLogs,
        ["access-logs"] => Endpoint::AccessLogs,
        ["access-logs", id] => Endpoint::AccessLog(id.to_string()),
        ["usage"] => Endpoint::Usage,
        ["users"] => Endpoint::Users,
        ["users", u] => Endpoint::User(u.to_string()),
        ["tokens"] => Endpoint::Tokens,
        ["tokens", t] => Endpoint::Token(t.to_string()),
        _ => return Err(not_found()),
    };
    let allowed = e.methods();
    let m = if method == Method::Head {
        Method::Get
    } else {
        method
    };
    if !allowed.contains(&m) {
        let mut list: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
        if allowed.contains(&Method::Get) {
            list.push("HEAD");
        }
        return Err(ApiError::new(
            405,
            "method_not_allowed",
            format!(
                "{} is not allowed here (allowed: {})",
                method.as_str(),
                list.join(", ")
            ),
        ));
    }
    Ok(e)
}

/// The `Allow` header's value for a path (for a 405).
pub fn allow_header(path: &str) -> Option<String> {
    let e = route(Method::Get, path)
        .or_else(|_| route(Method::Post, path))
        .ok()?;
    let mut list: Vec<&str> = e.methods().iter().map(|m| m.as_str()).collect();
    if e.methods().contains(&Method::Get) {
        list.push("HEAD");
    }
    Some(list.join(", "))
}

/// Every endpoint's path template and methods, as the OpenAPI document names them.
pub fn templates() -> Vec<(&'static str, Endpoint)> {
    let s = || "x".to_string();
    vec![
        ("/api/v1/auth/login", Endpoint::Login),
        ("/api/v1/auth/logout", Endpoint::Logout),
        ("/api/v1/auth/me", Endpoint::Me),
        ("/api/v1/auth/password", Endpoint::Password),
        ("/api/v1/openapi.json", Endpoint::OpenApi),
        ("/api/v1/namespaces", Endpoint::Namespaces),
        ("/api/v1/namespaces/{code}", Endpoint::Namespace(s())),
        ("/api/v1/namespaces/{code}/keys", Endpoint::Keys(s())),
        (
            "/api/v1/namespaces/{code}/keys/{key_id}",
            Endpoint::Key(s(), s()),
        ),
        (
            "/api/v1/namespaces/{code}/keys/{key_id}/rotate",
            Endpoint::KeyRotate(s(), s()),
        ),
        (
            "/api/v1/namespaces/{code}/matchers",
            Endpoint::Items(ItemKind::Matcher, s()),
        ),
        (
            "/api/v1/namespaces/{code}/matchers/{id}",
            Endpoint::Item(ItemKind::Matcher, s(), 1),
        ),
        (
            "/api/v1/namespaces/{code}/policies",
            Endpoint::Items(ItemKind::Policy, s()),
        ),
        (
            "/api/v1/namespaces/{code}/policies/{id}",
            Endpoint::Item(ItemKind::Policy, s(), 1),
        ),
        ("/api/v1/targets", Endpoint::Targets),
        ("/api/v1/targets/{name}", Endpoint::Target(s())),
        ("/api/v1/routes", Endpoint::Routes),
        ("/api/v1/routes/{name}", Endpoint::Route(s())),
        ("/api/v1/settings", Endpoint::Settings),
        ("/api/v1/config", Endpoint::Config),
        ("/api/v1/config/validate", Endpoint::ConfigValidate),
        ("/api/v1/config/revisions", Endpoint::Revisions),
        ("/api/v1/config/revisions/{version}", Endpoint::Revision(1)),
        ("/api/v1/config/diff", Endpoint::Diff),
        ("/api/v1/config/rollback", Endpoint::Rollback),
        ("/api/v1/nodes", Endpoint::Nodes),
        ("/api/v1/audit-logs", Endpoint::AuditLogs),
        ("/api/v1/access-logs", Endpoint::AccessLogs),
        ("/api/v1/access-logs/{request_id}", Endpoint::AccessLog(s())),
        ("/api/v1/usage", Endpoint::Usage),
        ("/api/v1/users", Endpoint::Users),
        ("/api/v1/users/{name}", Endpoint::User(s())),
        ("/api/v1/tokens", Endpoint::Tokens),
        ("/api/v1/tokens/{token_id}", Endpoint::Token(s())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_endpoints() {
        assert_eq!(
            route(Get, "/api/v1/namespaces").unwrap(),
            Endpoint::Namespaces
        );
        assert_eq!(
            route(Get, "/api/v1/namespaces/").unwrap(),
            Endpoint::Namespaces
        );
        assert_eq!(
            route(Post, "/api/v1/namespaces/a/keys/0123/rotate").unwrap(),
            Endpoint::KeyRotate("a".into(), "0123".into())
        );
        assert_eq!(
            route(Patch, "/api/v1/namespaces/a/policies/7").unwrap(),
            Endpoint::Item(ItemKind::Policy, "a".into(), 7)
        );
        assert_eq!(
            route(Method::Head, "/api/v1/nodes").unwrap(),
            Endpoint::Nodes
        );
        for bad in [
            "/api/v1/",
            "/api/v1/nope",
            "/api/v1/namespaces/a/policies/x",
            "/api/v1//namespaces",
            "/api/v2/namespaces",
            "/api/v1/namespaces/a/colours",
        ] {
            assert_eq!(route(Get, bad).unwrap_err().status, 404, "{bad}");
        }
        let e = route(Delete, "/api/v1/settings").unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(
            allow_header("/api/v1/settings").as_deref(),
            Some("GET, PUT, PATCH, HEAD")
        );
        assert_eq!(
            route(Method::Other, "/api/v1/nodes").unwrap_err().status,
            405
        );
    }

    #[test]
    fn roles_per_endpoint() {
        assert_eq!(Endpoint::Login.need(Post), Need::Public);
        assert_eq!(Endpoint::Namespaces.need(Get), Need::Read);
        assert_eq!(Endpoint::Namespaces.need(Post), Need::Edit);
        assert_eq!(Endpoint::Users.need(Get), Need::Admin);
        assert_eq!(Endpoint::ConfigValidate.need(Post), Need::Edit);
        assert!(Endpoint::Rollback.writes_config(Post));
        assert!(!Endpoint::ConfigValidate.writes_config(Post));
        assert!(!Endpoint::Namespaces.writes_config(Get));
        // every template routes to its own endpoint with every method it lists
        for (path, e) in templates() {
            let concrete = path
                .replace("{code}", "x")
                .replace("{key_id}", "x")
                .replace("{token_id}", "x")
                .replace("{id}", "1")
                .replace("{name}", "x")
                .replace("{request_id}", "x")
                .replace("{version}", "1");
            for m in e.methods() {
                assert_eq!(route(*m, &concrete).unwrap(), e, "{path}");
            }
        }
    }
}
