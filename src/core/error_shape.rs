//! The shape a gateway error takes for the API a client speaks.
//!
//! OpenAI's clients get `{"error":{"message","type","param","code"}}` (see
//! [`GatewayError::to_json`]). Anthropic's clients get Anthropic's envelope,
//! `{"type":"error","error":{"type","message","details":{"error_code"}},"request_id"}` (the
//! gateway's own code in `details.error_code`, where Anthropic puts its specific codes), with
//! Anthropic's error types and
//! statuses: a gateway that cannot serve for now (503) answers Anthropic's 529
//! `overloaded_error`, which Anthropic's SDKs retry like a 503. The status decides the type, so
//! nginx's own error pages (413, 502, 504, ...) get the same treatment as the gateway's
//! rejections.

use serde_json::Value;

use super::error::GatewayError;

/// The API whose errors a client expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    OpenAi,
    Anthropic,
}

/// Anthropic's status for an overloaded API.
pub const OVERLOADED: u16 = 529;

impl ErrorShape {
    /// Anthropic's when the request carries `anthropic-version` (Anthropic's API requires
    /// it, its SDKs always send it, OpenAI's never do) or goes to the Messages API
    /// (`…/v1/messages`, `…/v1/messages/count_tokens`, `…/v1/messages/batches…`); OpenAI's
    /// otherwise. OpenAI's own `…/threads/{id}/messages` stays OpenAI's.
    pub fn of_request(path: &[u8], anthropic_version: bool) -> ErrorShape {
        if anthropic_version || is_messages_path(path) {
            ErrorShape::Anthropic
        } else {
            ErrorShape::OpenAi
        }
    }

    /// The status sent for an error whose status is `status`.
    pub fn status(self, status: u16) -> u16 {
        match (self, status) {
            (ErrorShape::Anthropic, 503) => OVERLOADED,
            _ => status,
        }
    }

    /// The name of the header that carries the request id.
    pub fn request_id_header(self) -> &'static str {
        match self {
            ErrorShape::OpenAi => "x-request-id",
            ErrorShape::Anthropic => "request-id",
        }
    }
}

fn is_messages_path(path: &[u8]) -> bool {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    let Some(at) = find(path, b"/v1/messages") else {
        return false;
    };
    let rest = &path[at + b"/v1/messages".len()..];
    rest.is_empty() || rest.starts_with(b"/")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// Anthropic's error type for a status (after [`ErrorShape::status`]).
pub fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        OVERLOADED => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

impl GatewayError {
    /// The body for `shape`, `status` being what is sent (see [`ErrorShape::status`]) and
    /// `request_id` the gateway's id of the request (Anthropic's body repeats it).
    pub fn render(&self, shape: ErrorShape, status: u16, request_id: &str) -> Vec<u8> {
        match shape {
            ErrorShape::OpenAi => self.to_json(),
            ErrorShape::Anthropic => {
                let text = format!(
                    "{{\"type\":\"error\",\"error\":{{\"type\":{},\"message\":{},\
                     \"details\":{{\"error_code\":{}}}}},\"request_id\":{}}}\n",
                    Value::from(anthropic_type(status)),
                    Value::from(self.message()),
                    Value::from(self.code()),
                    Value::from(request_id),
                );
                text.into_bytes()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::Limited;

    fn anthropic(e: &GatewayError) -> (u16, Value) {
        let status = ErrorShape::Anthropic.status(e.status());
        let body = e.render(ErrorShape::Anthropic, status, "abc123");
        (status, serde_json::from_slice(&body).expect("valid json"))
    }

    #[test]
    fn shape_follows_the_header_and_the_messages_paths() {
        let of = ErrorShape::of_request;
        assert_eq!(of(b"/v1/messages", false), ErrorShape::Anthropic);
        assert_eq!(of(b"/v1/messages/", false), ErrorShape::Anthropic);
        assert_eq!(
            of(b"/claude/v1/messages/count_tokens", false),
            ErrorShape::Anthropic
        );
        assert_eq!(
            of(b"/v1/messages/batches/b1/results", false),
            ErrorShape::Anthropic
        );
        assert_eq!(of(b"/v1/threads/t1/messages", false), ErrorShape::OpenAi);
        assert_eq!(of(b"/v1/messagesx", false), ErrorShape::OpenAi);
        assert_eq!(of(b"/v1/chat/completions", false), ErrorShape::OpenAi);
        assert_eq!(of(b"/v1/models", true), ErrorShape::Anthropic);
        assert_eq!(of(b"/v1/models", false), ErrorShape::OpenAi);
    }

    #[test]
    fn every_reason_gets_anthropics_type_and_status() {
        let limited = |what| GatewayError::RateLimited {
            what,
            limit: 3,
            used: 3,
            requested: 1,
        };
        let cases = [
            (
                GatewayError::InvalidJson { detail: "x".into() },
                400,
                "invalid_request_error",
            ),
            (GatewayError::MissingApiKey, 401, "authentication_error"),
            (GatewayError::InvalidApiKey, 401, "authentication_error"),
            (GatewayError::NamespaceDisabled, 403, "permission_error"),
            (GatewayError::ModelNotAllowed, 403, "permission_error"),
            (GatewayError::MessageDenied, 403, "permission_error"),
            (GatewayError::NamespaceNotFound, 404, "not_found_error"),
            (GatewayError::NoRoute, 404, "not_found_error"),
            (
                GatewayError::InputTooLong {
                    tokens: 30,
                    max: 20,
                },
                400,
                "invalid_request_error",
            ),
            (limited(Limited::Requests), 429, "rate_limit_error"),
            (limited(Limited::Concurrency), 429, "rate_limit_error"),
            (
                limited(Limited::Quota { tokens: true }),
                429,
                "rate_limit_error",
            ),
            (GatewayError::LimitsUnavailable, 529, "overloaded_error"),
            (GatewayError::LimitZoneFull, 529, "overloaded_error"),
            (
                GatewayError::TargetsFailed { status: 503 },
                529,
                "overloaded_error",
            ),
            (
                GatewayError::TargetsFailed { status: 429 },
                429,
                "rate_limit_error",
            ),
            (
                GatewayError::TargetsFailed { status: 502 },
                502,
                "api_error",
            ),
            (
                GatewayError::TargetsFailed { status: 504 },
                504,
                "api_error",
            ),
            (GatewayError::Http(413), 413, "request_too_large"),
            (GatewayError::Http(500), 500, "api_error"),
            (GatewayError::Http(405), 405, "invalid_request_error"),
        ];
        for (err, status, kind) in cases {
            let (s, v) = anthropic(&err);
            assert_eq!(s, status, "{err:?}");
            assert_eq!(v["type"], "error", "{err:?}");
            assert_eq!(v["error"]["type"], kind, "{err:?}");
            assert_eq!(v["error"]["message"], err.message().as_str(), "{err:?}");
            assert_eq!(v["error"]["details"]["error_code"], err.code(), "{err:?}");
            assert_eq!(v["request_id"], "abc123");
            assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{err:?}");
        }
    }

    #[test]
    fn openai_shape_is_unchanged() {
        let e = GatewayError::LimitsUnavailable;
        assert_eq!(ErrorShape::OpenAi.status(e.status()), 503);
        assert_eq!(e.render(ErrorShape::OpenAi, 503, "id"), e.to_json());
        assert_eq!(ErrorShape::OpenAi.request_id_header(), "x-request-id");
        assert_eq!(ErrorShape::Anthropic.request_id_header(), "request-id");
    }
}
