//! OpenAI embeddings (`POST .../embeddings`): `{"object":"list","data":[{"object":
//! "embedding","index":i,"embedding":[...]}],"model":...,"usage":{...}}`, one vector per input
//! (a string, or a list of strings or of token arrays). Vectors are deterministic: derived
//! from a hash of the input and scaled to length 1, as OpenAI's are; `dimensions` sets their
//! length (default 1536, 3072 for `*-large` models); `encoding_format: "base64"` sends the
//! little-endian `f32`s in base64, as OpenAI does (and its SDK asks for by default).

use base64::Engine;
use serde_json::Value;

use super::{openai_error, MockReply, MockRequest};

/// Inputs of one request at most (OpenAI's limit).
const INPUTS_MAX: usize = 2048;

fn invalid(code: &str, message: &str) -> MockReply {
    openai_error(400, "invalid_request_error", code, message)
}

/// The answer to `POST .../embeddings`.
pub(super) fn reply(req: &MockRequest<'_>) -> MockReply {
    let Ok(doc) = serde_json::from_slice::<Value>(req.body) else {
        return invalid(
            "invalid_json",
            "We could not parse the JSON body of your request.",
        );
    };
    let Some(model) = doc.get("model").and_then(Value::as_str) else {
        return invalid(
            "missing_required_parameter",
            "Missing required parameter: 'model'.",
        );
    };
    let Some(inputs) = inputs(doc.get("input")) else {
        return invalid("invalid_input", "'$.input' is invalid.");
    };
    let largest = if model.ends_with("-large") {
        3072
    } else {
        1536
    };
    let dims = match doc.get("dimensions") {
        None | Some(Value::Null) => largest as usize,
        Some(v) => match v.as_u64().filter(|d| (1..=largest).contains(d)) {
            Some(d) => d as usize,
            None => {
                return invalid(
                    "invalid_value",
                    &format!("Invalid 'dimensions': expected an integer from 1 to {largest}."),
                )
            }
        },
    };
    let base64 = match doc.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return invalid(
                "invalid_value",
                "Invalid 'encoding_format': expected 'float' or 'base64'.",
            )
        }
    };

    let mut body = String::from(r#"{"object":"list","data":["#);
    let mut tokens = 0u64;
    for (i, (seed, n)) in inputs.iter().enumerate() {
        tokens += n;
        let v = vector(seed, dims);
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"object":"embedding","index":{i},"embedding":"#
        ));
        if base64 {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            body.push('"');
            body.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
            body.push('"');
        } else {
            body.push('[');
            for (j, x) in v.iter().enumerate() {
                if j > 0 {
                    body.push(',');
                }
                // Display is the shortest text that reads back as the same f32
                body.push_str(&x.to_string());
            }
            body.push(']');
        }
        body.push('}');
    }
    body.push_str(&format!(
        r#"],"model":{},"usage":{{"prompt_tokens":{tokens},"total_tokens":{tokens}}}}}"#,
        Value::from(model)
    ));
    body.push('\n');
    MockReply {
        status: 200,
        content_type: "application/json",
        stream: false,
        chunks: vec![body.into_bytes()],
    }
}

/// The inputs as (hash seed bytes, mock token count): a string (one token per 4 bytes, at
/// least 1), a token array (its length), or a list of either. `None` when the input is
/// missing, empty or of another type.
fn inputs(input: Option<&Value>) -> Option<Vec<(Vec<u8>, u64)>> {
    let one = |v: &Value| -> Option<(Vec<u8>, u64)> {
        match v {
            Value::String(s) if !s.is_empty() => {
                Some((s.as_bytes().to_vec(), (s.len() as u64).div_ceil(4)))
            }
            Value::Array(ids) if !ids.is_empty() && ids.iter().all(Value::is_u64) => {
                Some((v.to_string().into_bytes(), ids.len() as u64))
            }
            _ => None,
        }
    };
    let input = input?;
    match input {
        Value::Array(list) if !list.is_empty() && list.iter().all(Value::is_u64) => {
            Some(vec![one(input)?])
        }
        Value::Array(list) if !list.is_empty() && list.len() <= INPUTS_MAX => {
            list.iter().map(one).collect()
        }
        v @ Value::String(_) => Some(vec![one(v)?]),
        _ => None,
    }
}

/// A vector of `dims` numbers derived from `seed` (FNV-1a, then splitmix64), of length 1.
fn vector(seed: &[u8], dims: usize) -> Vec<f32> {
    let mut state = seed.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    // uniform in [-1, 1)
    let mut v: Vec<f32> = (0..dims)
        .map(|_| (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::super::tests::{call, json_of};
    use super::*;

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    #[test]
    fn one_vector_per_input_of_length_one() {
        let r = call(
            "POST",
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":["hello","hello","other text"]}"#,
        );
        assert_eq!(r.status, 200);
        let v = json_of(&r);
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "text-embedding-3-small");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        for (i, d) in data.iter().enumerate() {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            let e = floats(&d["embedding"]);
            assert_eq!(e.len(), 1536);
            let norm: f32 = e.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-3, "{norm}");
        }
        // the same input, the same vector; another, another
        assert_eq!(data[0]["embedding"], data[1]["embedding"]);
        assert_ne!(data[0]["embedding"], data[2]["embedding"]);
        // 5 -> 2, 5 -> 2, 10 -> 3
        assert_eq!(v["usage"]["prompt_tokens"], 7);
        assert_eq!(v["usage"]["total_tokens"], 7);
    }

    #[test]
    fn dimensions_base64_and_token_arrays() {
        let v = json_of(&call(
            "POST",
            "/v1/embeddings",
            r#"{"model":"m","input":"hello","dimensions":8}"#,
        ));
        let plain = floats(&v["data"][0]["embedding"]);
        assert_eq!(plain.len(), 8);
        let v = json_of(&call(
            "POST",
            "/v1/embeddings",
            r#"{"model":"m","input":"hello","dimensions":8,"encoding_format":"base64"}"#,
        ));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(decoded, plain);

        let v = json_of(&call(
            "POST",
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-large","input":[[1,2,3],[4]]}"#,
        ));
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 3072);
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        let v = json_of(&call(
            "POST",
            "/v1/embeddings",
            r#"{"model":"m","input":[1,2,3]}"#,
        ));
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        assert_eq!(v["usage"]["prompt_tokens"], 3);
    }

    #[test]
    fn errors_in_openai_shape() {
        for body in [
            "{oops",
            r#"{"input":"x"}"#,
            r#"{"model":"m"}"#,
            r#"{"model":"m","input":""}"#,
            r#"{"model":"m","input":[]}"#,
            r#"{"model":"m","input":{"a":1}}"#,
            r#"{"model":"m","input":"x","dimensions":0}"#,
            r#"{"model":"m","input":"x","dimensions":1537}"#,
            r#"{"model":"m","input":"x","encoding_format":"hex"}"#,
        ] {
            let r = call("POST", "/v1/embeddings", body);
            assert_eq!(r.status, 400, "{body}");
            assert!(json_of(&r)["error"]["message"].is_string());
        }
        assert_eq!(call("GET", "/v1/embeddings", "").status, 405);
    }
}
