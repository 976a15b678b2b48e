//! The token service (the original design's port 8002): counting requests answered by nginx
//! itself.
//!
//! | request | answer |
//! |---|---|
//! | `POST …/calculate` `{"text","model_name"}` or `{"model","messages"}` | `{"token_count","model","success":true,"encoding","estimated"}` (the original service's shape) |
//! | `POST …/responses/input_tokens` (OpenAI) | `{"object":"response.input_tokens","input_tokens"}` |
//! | `POST …/messages/count_tokens` (Anthropic) | `{"input_tokens"}` |
//! | `GET …/health` | `{"status":"ok"}` |
//!
//! Text is counted as ordinary text; messages with OpenAI's chat framing (what the API
//! charges as prompt tokens, see [`count_prompt`]). Models whose encoding is not public are
//! counted with o200k_base and marked `"estimated": true`. Errors are JSON with status 400
//! (404 for unknown paths, 405 for other methods), in OpenAI's shape or, for Anthropic's
//! clients and paths, Anthropic's ([`ServiceReply::shaped`]).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{count_prompt, Encoding, PromptCount, Source};
use crate::core::error::GatewayError;
use crate::core::error_shape::ErrorShape;

/// A complete answer.
#[derive(Debug, PartialEq, Eq)]
pub struct ServiceReply {
    pub status: u16,
    pub body: Vec<u8>,
    /// The error answered, if any (rendered OpenAI's way until [`ServiceReply::shaped`]).
    pub error: Option<GatewayError>,
}

impl ServiceReply {
    fn json(status: u16, v: Value) -> Self {
        let mut body = v.to_string().into_bytes();
        body.push(b'\n');
        ServiceReply {
            status,
            body,
            error: None,
        }
    }

    fn error(err: GatewayError) -> Self {
        ServiceReply {
            status: err.status(),
            body: err.to_json(),
            error: Some(err),
        }
    }

    /// The reply with its error (if any) in the client's shape; `request_id` goes in
    /// Anthropic's body.
    pub fn shaped(mut self, shape: ErrorShape, request_id: &str) -> Self {
        if let Some(err) = &self.error {
            self.status = shape.status(self.status);
            self.body = err.render(shape, self.status, request_id);
        }
        self
    }
}

#[derive(Deserialize)]
struct Calculate {
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Option<Value>,
}

fn invalid(param: &'static str, expected: &'static str) -> ServiceReply {
    ServiceReply::error(GatewayError::InvalidField { param, expected })
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ServiceReply> {
    serde_json::from_slice(body).map_err(|e| {
        ServiceReply::error(GatewayError::InvalidJson {
            detail: format!("at line {} column {}", e.line(), e.column()),
        })
    })
}

/// Answers one request to the token service.
pub fn answer(method: &[u8], path: &[u8], body: &[u8]) -> ServiceReply {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    let post = method == b"POST";
    let endpoint = [
        &b"/calculate"[..],
        b"/responses/input_tokens",
        b"/messages/count_tokens",
        b"/health",
    ]
    .into_iter()
    .find(|e| path.ends_with(e));
    let result = match endpoint {
        Some(b"/health") if method == b"GET" || method == b"HEAD" => Ok(ServiceReply::json(
            200,
            json!({"status": "ok", "encodings": ["o200k_base", "cl100k_base"]}),
        )),
        Some(b"/calculate") if post => calculate(body),
        Some(b"/responses/input_tokens") if post => prompt(body).map(|c| {
            ServiceReply::json(
                200,
                json!({"object": "response.input_tokens", "input_tokens": c.tokens,
                       "encoding": c.encoding.name(), "estimated": c.source == Source::Estimated}),
            )
        }),
        Some(b"/messages/count_tokens") if post => prompt(body).map(|c| {
            ServiceReply::json(
                200,
                json!({"input_tokens": c.tokens, "encoding": c.encoding.name(),
                       "estimated": c.source == Source::Estimated}),
            )
        }),
        Some(_) => Ok(ServiceReply::error(GatewayError::Http(405))),
        None => Ok(ServiceReply::error(GatewayError::Http(404))),
    };
    result.unwrap_or_else(|e| e)
}

fn prompt(body: &[u8]) -> Result<PromptCount, ServiceReply> {
    parse::<Value>(body)?;
    count_prompt(body, None).ok_or_else(|| invalid("input", "messages, input or prompt"))
}

fn calculate(body: &[u8]) -> Result<ServiceReply, ServiceReply> {
    let req: Calculate = parse(body)?;
    let model = req.model_name.clone().or(req.model.clone());
    let count = match (&req.text, &req.messages) {
        (Some(Value::String(text)), _) => {
            let enc = model.as_deref().and_then(Encoding::for_model);
            PromptCount {
                tokens: enc.unwrap_or(Encoding::O200k).count(text),
                source: if enc.is_some() {
                    Source::Counted
                } else {
                    Source::Estimated
                },
                encoding: enc.unwrap_or(Encoding::O200k),
            }
        }
        (Some(_), _) => return Err(invalid("text", "a string")),
        (None, Some(Value::Array(_))) => {
            count_prompt(body, model.as_deref()).ok_or_else(|| invalid("messages", "an array"))?
        }
        (None, Some(_)) => return Err(invalid("messages", "an array")),
        (None, None) => return Err(invalid("text", "a string (or messages)")),
    };
    Ok(ServiceReply::json(
        200,
        json!({"token_count": count.tokens, "model": model, "success": true,
               "encoding": count.encoding.name(),
               "estimated": count.source == Source::Estimated}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, path: &str, body: &str) -> (u16, Value) {
        let r = answer(method.as_bytes(), path.as_bytes(), body.as_bytes());
        (r.status, serde_json::from_slice(&r.body).expect("JSON"))
    }

    #[test]
    fn calculate_text_and_messages() {
        let (s, v) = call(
            "POST",
            "/calculate",
            r#"{"text":"Hello world","model_name":"gpt-4o"}"#,
        );
        assert_eq!(s, 200);
        assert_eq!(
            v,
            json!({"token_count": 2, "model": "gpt-4o", "success": true,
                   "encoding": "o200k_base", "estimated": false})
        );
        let (_, v) = call(
            "POST",
            "/calculate",
            r#"{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}]}"#,
        );
        assert_eq!(v["token_count"], 8);
        assert_eq!(v["encoding"], "cl100k_base");
        let (_, v) = call("POST", "/calculate", r#"{"text":"Hello world"}"#);
        assert_eq!(
            (v["token_count"].as_u64(), v["estimated"].as_bool()),
            (Some(2), Some(true))
        );
        assert!(v["model"].is_null());
        let (_, v) = call(
            "POST",
            "/calculate",
            r#"{"text":"Hello world","model_name":"Qwen3-32B"}"#,
        );
        assert_eq!(v["estimated"], true);
    }

    #[test]
    fn openai_and_anthropic_shapes() {
        let (s, v) = call(
            "POST",
            "/v1/responses/input_tokens",
            r#"{"model":"gpt-4.1","input":"Hello"}"#,
        );
        assert_eq!(s, 200);
        assert_eq!(v["object"], "response.input_tokens");
        assert_eq!(v["input_tokens"], 8);
        let (s, v) = call(
            "POST",
            "/v1/messages/count_tokens",
            r#"{"model":"claude-sonnet-4","messages":[{"role":"user","content":"Hello"}]}"#,
        );
        assert_eq!((s, v["input_tokens"].as_u64()), (200, Some(8)));
        assert_eq!(v["estimated"], true);
    }

    #[test]
    fn errors_are_openai_shaped() {
        for (method, path, body, status) in [
            ("POST", "/calculate", "{", 400),
            ("POST", "/calculate", "{}", 400),
            ("POST", "/calculate", r#"{"text":1}"#, 400),
            ("POST", "/calculate", r#"{"messages":"x"}"#, 400),
            (
                "POST",
                "/v1/responses/input_tokens",
                r#"{"model":"gpt-4o"}"#,
                400,
            ),
            ("GET", "/calculate", "", 405),
            ("POST", "/nope", "{}", 404),
        ] {
            let (s, v) = call(method, path, body);
            assert_eq!(s, status, "{method} {path} {body}");
            assert!(v["error"]["message"].is_string(), "{v}");
        }
        let (s, v) = call("GET", "/health", "");
        assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    }

    #[test]
    fn anthropic_clients_get_anthropic_errors() {
        let r = answer(b"POST", b"/v1/messages/count_tokens", b"{")
            .shaped(ErrorShape::Anthropic, "id1");
        let v: Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(r.status, 400);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["request_id"], "id1");
        // a success is left alone
        let ok = br#"{"messages":[{"role":"user","content":"Hello"}]}"#;
        let r = answer(b"POST", b"/v1/messages/count_tokens", ok);
        let body = r.body.clone();
        assert_eq!(r.shaped(ErrorShape::Anthropic, "id1").body, body);
    }
}
