//! Errors the gateway answers with, and their OpenAI-shaped JSON rendering.
//!
//! Every rejection the module produces, and every error page nginx itself would produce inside
//! a gateway location (413, 502, 504, ...), reaches the client as
//! `{"error":{"message":..,"type":..,"param":..,"code":..}}` with `Content-Type:
//! application/json`. Messages never contain prompts or keys.

use serde_json::Value;

/// A reason the gateway refuses (or nginx failed) a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// The body is not valid JSON. `detail` is serde's position message (no body content).
    InvalidJson { detail: String },
    /// A known request field has the wrong type or value.
    InvalidField {
        param: &'static str,
        expected: &'static str,
    },
    /// No client key was sent and no matcher identified the request.
    MissingApiKey,
    /// A client key was sent, it is unknown, and no matcher identified the request.
    InvalidApiKey,
    /// The identified namespace exists but is disabled.
    NamespaceDisabled,
    /// Nothing identified the request and the config asks for the original gateway's 404.
    NamespaceNotFound,
    /// A `models` policy does not allow the requested model.
    ModelNotAllowed,
    /// A `message` policy refused the request.
    MessageDenied,
    /// The prompt has more tokens than an `input_tokens` policy allows.
    InputTooLong { tokens: u64, max: u64 },
    /// `max_tokens` is above an `output_tokens` policy with `"action": "reject"`.
    OutputTooLarge { requested: u64, max: u64 },
    /// A counter (window, quota, concurrency) has no room for the request.
    RateLimited {
        what: Limited,
        limit: u64,
        used: u64,
        requested: u64,
    },
    /// The limit zone has no free slot for a new counter.
    LimitZoneFull,
    /// A cluster policy with `"on_failure": "fail_closed"` could not reach Redis.
    LimitsUnavailable,
    /// No route serves the request's path, model and namespace.
    NoRoute,
    /// Every target of the route failed; `status` is the last attempt's (502 for no answer).
    TargetsFailed { status: u16 },
    /// An error page nginx generated itself (413 from `client_max_body_size`, 502, 504, ...).
    Http(u16),
}

/// Which kind of counter refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Requests,
    Tokens,
    Concurrency,
    Quota { tokens: bool },
}

impl GatewayError {
    /// The HTTP status sent to the client.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidJson { .. } | Self::InvalidField { .. } => 400,
            Self::MissingApiKey | Self::InvalidApiKey => 401,
            Self::NamespaceDisabled | Self::ModelNotAllowed | Self::MessageDenied => 403,
            Self::NamespaceNotFound | Self::NoRoute => 404,
            Self::InputTooLong { .. } | Self::OutputTooLarge { .. } => 400,
            Self::RateLimited { .. } => 429,
            Self::LimitZoneFull | Self::LimitsUnavailable => 503,
            Self::TargetsFailed { status } => match status {
                429 | 503 | 504 => *status,
                _ => 502,
            },
            Self::Http(status) => *status,
        }
    }

    /// The `error.code` field, also used as `$ai_gateway_reason`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson { .. } => "invalid_json",
            Self::InvalidField { .. } => "invalid_type",
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::NamespaceDisabled => "namespace_disabled",
            Self::NamespaceNotFound => "namespace_not_found",
            Self::ModelNotAllowed => "model_not_allowed",
            Self::MessageDenied => "message_denied",
            Self::InputTooLong { .. } => "context_length_exceeded",
            Self::OutputTooLarge { .. } => "max_tokens_too_large",
            Self::RateLimited { what, .. } => match what {
                Limited::Requests | Limited::Tokens => "rate_limit_exceeded",
                Limited::Concurrency => "concurrency_limit_exceeded",
                Limited::Quota { .. } => "insufficient_quota",
            },
            Self::LimitZoneFull => "limit_zone_full",
            Self::LimitsUnavailable => "limits_unavailable",
            Self::NoRoute => "model_not_found",
            Self::TargetsFailed { .. } => "all_targets_failed",
            Self::Http(status) => http_code(*status),
        }
    }

    /// Why the request was refused, for `$ai_gateway_reason` and the `reason` metric label:
    /// the error code, made precise where one code covers several causes.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RateLimited { what, .. } => match what {
                Limited::Requests => "requests_limit",
                Limited::Tokens => "tokens_limit",
                Limited::Concurrency => "concurrency_limit",
                Limited::Quota { tokens: true } => "tokens_quota",
                Limited::Quota { tokens: false } => "requests_quota",
            },
            other => other.code(),
        }
    }

    /// The `error.type` field, in OpenAI's vocabulary.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingApiKey | Self::InvalidApiKey => "invalid_request_error",
            Self::NamespaceDisabled | Self::ModelNotAllowed | Self::MessageDenied => {
                "permission_error"
            }
            // OpenAI's types for rate limits
            Self::RateLimited { what, .. } => match what {
                Limited::Requests | Limited::Concurrency => "requests",
                Limited::Tokens => "tokens",
                Limited::Quota { .. } => "insufficient_quota",
            },
            Self::LimitZoneFull | Self::LimitsUnavailable | Self::TargetsFailed { .. } => {
                "server_error"
            }
            Self::Http(status) if *status >= 500 => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The `error.param` field.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::InvalidField { param, .. } => Some(param),
            Self::InputTooLong { .. } => Some("messages"),
            Self::OutputTooLarge { .. } => Some("max_tokens"),
            _ => None,
        }
    }

    /// A human-readable message that never contains request content.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidJson { detail } => {
                format!("We could not parse the JSON body of your request ({detail}).")
            }
            Self::InvalidField { param, expected } => {
                format!("Invalid type for '{param}': expected {expected}.")
            }
            Self::MissingApiKey => "You didn't provide an API key. Send it in the \
                 Authorization header as 'Bearer YOUR_KEY', or in the x-api-key header."
                .to_string(),
            Self::InvalidApiKey => "Incorrect API key provided.".to_string(),
            Self::NamespaceDisabled => {
                "The namespace this request belongs to is disabled.".to_string()
            }
            Self::NamespaceNotFound => "No namespace matches this request.".to_string(),
            Self::ModelNotAllowed => {
                "The requested model is not allowed for this namespace.".to_string()
            }
            Self::MessageDenied => "This request is not allowed by a message policy.".to_string(),
            Self::InputTooLong { tokens, max } => format!(
                "This request's input has {tokens} tokens; this namespace allows at most {max}."
            ),
            Self::OutputTooLarge { requested, max } => format!(
                "max_tokens is {requested}; this namespace allows at most {max} output tokens."
            ),
            Self::RateLimited {
                what,
                limit,
                used,
                requested,
            } => match what {
                Limited::Requests => format!(
                    "Rate limit reached for requests: limit {limit}, used {used}, requested \
                     {requested}. Please retry after the time in the Retry-After header."
                ),
                Limited::Tokens if requested > limit => format!(
                    "Request too large for the tokens limit: limit {limit}, requested \
                     {requested} (prompt and max_tokens). Lower max_tokens or the input."
                ),
                Limited::Tokens => format!(
                    "Rate limit reached for tokens: limit {limit}, used {used}, requested \
                     {requested}. Please retry after the time in the Retry-After header."
                ),
                Limited::Concurrency => {
                    format!("Too many concurrent requests: limit {limit}. Please retry shortly.")
                }
                Limited::Quota { tokens } => format!(
                    "You exceeded your {} quota: limit {limit}, used {used}, requested \
                     {requested}.",
                    if *tokens { "token" } else { "request" }
                ),
            },
            Self::LimitZoneFull => {
                "The gateway's limit zone is full; please retry later.".to_string()
            }
            Self::LimitsUnavailable => "The gateway cannot check this namespace's limits \
                 right now; please retry after the time in the Retry-After header."
                .to_string(),
            Self::NoRoute => {
                "The requested model does not exist or this gateway has no route to it.".to_string()
            }
            Self::TargetsFailed { status: 429 } => {
                "Every provider for this request is rate limited; please retry later.".to_string()
            }
            Self::TargetsFailed { status } => {
                format!("No provider could serve this request (the last answered {status}).")
            }
            Self::Http(status) => http_message(*status).to_string(),
        }
    }

    /// The OpenAI-shaped JSON body, fields in OpenAI's order.
    pub fn to_json(&self) -> Vec<u8> {
        let text = format!(
            "{{\"error\":{{\"message\":{},\"type\":{},\"param\":{},\"code\":{}}}}}\n",
            Value::from(self.message()),
            Value::from(self.kind()),
            self.param().map_or(Value::Null, Value::from),
            Value::from(self.code()),
        );
        text.into_bytes()
    }
}

fn http_code(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "request_too_large",
        414 => "uri_too_long",
        429 => "rate_limit_exceeded",
        431 | 494 => "request_header_too_large",
        500 => "internal_error",
        501 => "not_implemented",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ if status >= 500 => "server_error",
        _ => "http_error",
    }
}

fn http_message(status: u16) -> &'static str {
    match status {
        400 => "The request could not be understood by the gateway.",
        401 => "Authentication is required.",
        403 => "Access to this resource is forbidden.",
        404 => "The requested resource was not found.",
        405 => "This method is not allowed for this resource.",
        408 => "The client took too long to send the request.",
        413 => "The request body is too large for this gateway (client_max_body_size).",
        414 => "The request URI is too long.",
        429 => "Too many requests.",
        431 | 494 => "The request headers are too large.",
        500 => "The gateway encountered an internal error.",
        501 => "This method is not implemented by the gateway.",
        502 => "The gateway could not get a valid response from the upstream provider.",
        503 => "The service is temporarily unavailable.",
        504 => "The upstream provider did not respond in time.",
        _ if status >= 500 => "The gateway encountered an error.",
        _ => "The request failed.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(e: &GatewayError) -> Value {
        serde_json::from_slice(&e.to_json()).expect("valid json")
    }

    #[test]
    fn statuses_follow_the_contract() {
        let cases = [
            (GatewayError::InvalidJson { detail: "x".into() }, 400),
            (
                GatewayError::InvalidField {
                    param: "model",
                    expected: "a string",
                },
                400,
            ),
            (GatewayError::MissingApiKey, 401),
            (GatewayError::InvalidApiKey, 401),
            (GatewayError::NamespaceDisabled, 403),
            (GatewayError::NamespaceNotFound, 404),
            (GatewayError::Http(413), 413),
            (GatewayError::Http(502), 502),
        ];
        for (err, status) in cases {
            assert_eq!(err.status(), status, "{err:?}");
        }
    }

    #[test]
    fn body_is_openai_shaped() {
        let v = parsed(&GatewayError::InvalidField {
            param: "stream",
            expected: "a boolean",
        });
        let e = &v["error"];
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["code"], "invalid_type");
        assert_eq!(e["param"], "stream");
        assert!(e["message"].as_str().unwrap().contains("'stream'"));

        let v = parsed(&GatewayError::Http(504));
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "gateway_timeout");
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn body_ends_with_newline_for_curl_users() {
        assert!(GatewayError::MissingApiKey.to_json().ends_with(b"}\n"));
    }

    #[test]
    fn message_comes_first_and_quotes_are_escaped() {
        let body = GatewayError::InvalidJson {
            detail: "a \"quoted\" detail".into(),
        }
        .to_json();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("{\"error\":{\"message\":"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"quoted\""));
    }
}
