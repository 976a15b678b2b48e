//! Which namespace a request belongs to.
//!
//! Order: the client key (`Authorization: Bearer`, then `x-api-key`, then `api-key`) is hashed
//! with sha256 and looked up; if that finds nothing, matchers are tried in order (priority
//! ascending, then declaration order) and the first that holds wins. A disabled namespace is
//! a 403 whichever way it was found. When nothing identifies the request the answer is 401
//! (`missing_api_key` or `invalid_api_key`), or 404 `namespace_not_found` when the config sets
//! `"unmatched_status": 404` like the original gateway. A key past its `expires_at` is as
//! unknown (the matchers are tried, then `invalid_api_key`).

use sha2::{Digest, Sha256};

use super::config::GatewayConfig;
use super::error::GatewayError;
use super::matcher::RequestView;

/// How a namespace was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Key,
    Matcher,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Key => "key",
            Via::Matcher => "matcher",
        }
    }
}

/// A successful identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identified {
    pub namespace: usize,
    pub via: Via,
}

/// A client key presented by the request, kept only as its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKey {
    pub sha256: [u8; 32],
}

impl ClientKey {
    pub fn new(key: &[u8]) -> Self {
        ClientKey {
            sha256: Sha256::digest(key).into(),
        }
    }

    /// The key id shown in logs and variables: the first 12 hex digits of the hash.
    pub fn id(&self) -> String {
        self.sha256[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Extracts the client key from the value of `Authorization` (Bearer scheme only).
pub fn bearer_token(authorization: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if authorization.len() <= SCHEME.len()
        || !authorization[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
    {
        return None;
    }
    let token = trim(&authorization[SCHEME.len()..]);
    (!token.is_empty()).then_some(token)
}

/// A non-empty key from `x-api-key` / `api-key`, trimmed.
pub fn plain_key(value: &[u8]) -> Option<&[u8]> {
    let v = trim(value);
    (!v.is_empty()).then_some(v)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// A refusal, with the namespace when one was found (a disabled one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub error: GatewayError,
    pub found: Option<Identified>,
}

/// Decides the namespace of a request at `now_ms` (unix milliseconds: keys expire).
pub fn identify(
    cfg: &GatewayConfig,
    key: Option<&ClientKey>,
    req: &dyn RequestView,
    now_ms: u64,
) -> Result<Identified, Rejected> {
    let found = key
        .and_then(|k| cfg.namespace_for_key(&k.sha256, now_ms))
        .map(|namespace| Identified {
            namespace,
            via: Via::Key,
        })
        .or_else(|| {
            cfg.matchers()
                .iter()
                .find(|m| m.matches(req))
                .map(|m| Identified {
                    namespace: m.namespace,
                    via: Via::Matcher,
                })
        });
    let error = match found {
        Some(id) if cfg.namespaces[id.namespace].enabled => return Ok(id),
        Some(_) => GatewayError::NamespaceDisabled,
        None if cfg.unmatched_status == 404 => GatewayError::NamespaceNotFound,
        None if key.is_some() => GatewayError::InvalidApiKey,
        None => GatewayError::MissingApiKey,
    };
    Err(Rejected { error, found })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::matcher::find_query_arg;
    use serde_json::{json, Value};
    use std::borrow::Cow;
    use std::collections::HashMap;

    struct Req {
        headers: HashMap<String, String>,
        query: Vec<u8>,
        body: Option<Value>,
    }

    impl Req {
        fn new() -> Self {
            Req {
                headers: HashMap::new(),
                query: Vec::new(),
                body: None,
            }
        }
        fn header(mut self, k: &str, v: &str) -> Self {
            self.headers.insert(k.to_ascii_lowercase(), v.to_string());
            self
        }
        fn query(mut self, q: &str) -> Self {
            self.query = q.as_bytes().to_vec();
            self
        }
        fn body(mut self, b: Value) -> Self {
            self.body = Some(b);
            self
        }
    }

    impl RequestView for Req {
        fn header(&self, name: &str) -> Option<Cow<'_, str>> {
            self.headers.get(name).map(|v| Cow::Borrowed(v.as_str()))
        }
        fn query_arg(&self, name: &str) -> Option<Cow<'_, str>> {
            find_query_arg(&self.query, name)
        }
        fn body(&self) -> Option<&Value> {
            self.body.as_ref()
        }
    }

    fn hex(key: &str) -> String {
        ClientKey::new(key.as_bytes())
            .sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// 2026-06-01T00:00:00Z
    const NOW: u64 = 1_780_272_000_000;

    fn config(extra: Value) -> GatewayConfig {
        let mut doc = json!({"namespaces": [
            {"code": "keyed", "api_keys": [hex("sk-a")]},
            {"code": "off", "status": "disabled", "api_keys": [hex("sk-off")],
             "matchers": [{"type": "header", "field": "x-team", "operator": "equals", "value": "off"}]},
            {"code": "hdr", "matchers": [{"type": "header", "field": "X-Team", "operator": "starts_with", "value": "red", "priority": 20}]},
            {"code": "qry", "matchers": [{"type": "query", "field": "tenant", "operator": "equals", "value": "q1"}]},
            {"code": "bdy", "matchers": [{"type": "body", "field": "metadata.team", "operator": "contains", "value": "blue", "priority": 10}]}
        ]});
        if let (Some(o), Value::Object(e)) = (doc.as_object_mut(), extra) {
            o.extend(e);
        }
        GatewayConfig::from_value(&doc).unwrap()
    }

    fn code(cfg: &GatewayConfig, key: Option<&str>, req: &Req) -> Result<(String, Via), u16> {
        let key = key.map(|k| ClientKey::new(k.as_bytes()));
        identify(cfg, key.as_ref(), req, NOW)
            .map(|id| (cfg.namespaces[id.namespace].code.clone(), id.via))
            .map_err(|e| e.error.status())
    }

    #[test]
    fn key_wins_over_matchers() {
        let cfg = config(json!({}));
        let req = Req::new().header("x-team", "red");
        assert_eq!(
            code(&cfg, Some("sk-a"), &req),
            Ok(("keyed".into(), Via::Key))
        );
    }

    #[test]
    fn unknown_key_falls_back_to_matchers() {
        let cfg = config(json!({}));
        let req = Req::new().header("X-TEAM", "red-1");
        assert_eq!(
            code(&cfg, Some("sk-unknown"), &req),
            Ok(("hdr".into(), Via::Matcher))
        );
    }

    #[test]
    fn outcomes() {
        let cfg = config(json!({}));
        assert_eq!(code(&cfg, None, &Req::new()), Err(401));
        let err = identify(&cfg, None, &Req::new(), NOW).unwrap_err();
        assert_eq!(err.error, GatewayError::MissingApiKey);
        assert_eq!(err.found, None);
        let k = ClientKey::new(b"sk-nope");
        assert_eq!(
            identify(&cfg, Some(&k), &Req::new(), NOW)
                .unwrap_err()
                .error,
            GatewayError::InvalidApiKey
        );
        assert_eq!(code(&cfg, Some("sk-off"), &Req::new()), Err(403));
        let k = ClientKey::new(b"sk-off");
        let off = identify(&cfg, Some(&k), &Req::new(), NOW).unwrap_err();
        assert_eq!(off.found.map(|f| f.namespace), Some(1));
        assert_eq!(
            code(&cfg, None, &Req::new().header("x-team", "off")),
            Err(403)
        );

        let cfg404 = config(json!({"unmatched_status": 404}));
        assert_eq!(code(&cfg404, None, &Req::new()), Err(404));
        assert_eq!(code(&cfg404, Some("sk-nope"), &Req::new()), Err(404));
    }

    #[test]
    fn an_expired_key_is_unknown() {
        let mut doc = json!({"namespaces": [
            {"code": "keyed", "api_keys": [
                {"sha256": hex("sk-old"), "expires_at": "2026-06-01T00:00:00Z"},
                {"sha256": hex("sk-new"), "expires_at": NOW / 1000 + 1}]},
            {"code": "hdr", "matchers": [{"type": "header", "field": "x-team", "operator": "equals", "value": "red"}]}
        ]});
        let cfg = GatewayConfig::from_value(&doc).unwrap();
        let old = ClientKey::new(b"sk-old");
        let new = ClientKey::new(b"sk-new");
        let plain = Req::new();
        // before its expiry the key identifies; at and after it, it is unknown
        assert_eq!(
            identify(&cfg, Some(&old), &plain, NOW - 1).map(|i| (i.namespace, i.via)),
            Ok((0, Via::Key))
        );
        for now in [NOW, NOW + 1] {
            let e = identify(&cfg, Some(&old), &plain, now).unwrap_err();
            assert_eq!(e.error, GatewayError::InvalidApiKey);
            assert_eq!(e.found, None);
        }
        assert_eq!(
            identify(&cfg, Some(&new), &plain, NOW + 999).map(|i| i.namespace),
            Ok(0)
        );
        assert!(identify(&cfg, Some(&new), &plain, NOW + 1000).is_err());
        // an expired key falls back to the matchers, as an unknown one does
        let red = Req::new().header("x-team", "red");
        assert_eq!(
            identify(&cfg, Some(&old), &red, NOW).map(|i| (i.namespace, i.via)),
            Ok((1, Via::Matcher))
        );
        // and gets the configured unmatched answer
        doc["unmatched_status"] = json!(404);
        let cfg404 = GatewayConfig::from_value(&doc).unwrap();
        assert_eq!(
            identify(&cfg404, Some(&old), &plain, NOW)
                .unwrap_err()
                .error,
            GatewayError::NamespaceNotFound
        );
    }

    #[test]
    fn priority_decides_between_matchers() {
        let cfg = config(json!({}));
        // both the header (priority 20) and the body (priority 10) matcher hold
        let req = Req::new()
            .header("x-team", "red")
            .body(json!({"metadata": {"team": "dark-blue"}}));
        assert_eq!(code(&cfg, None, &req).unwrap().0, "bdy");
        let req = Req::new().query("a=1&tenant=q1");
        assert_eq!(code(&cfg, None, &req).unwrap().0, "qry");
    }

    #[test]
    fn key_extraction() {
        assert_eq!(bearer_token(b"Bearer sk-1"), Some(&b"sk-1"[..]));
        assert_eq!(bearer_token(b"bearer   sk-1  "), Some(&b"sk-1"[..]));
        assert_eq!(bearer_token(b"Basic dXNlcg=="), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer    "), None);
        assert_eq!(plain_key(b" k "), Some(&b"k"[..]));
        assert_eq!(plain_key(b"  "), None);
    }

    #[test]
    fn key_id_is_a_hash_prefix() {
        let k = ClientKey::new(b"test");
        // sha256("test") = 9f86d081884c...
        assert_eq!(k.id(), "9f86d081884c");
    }
}
