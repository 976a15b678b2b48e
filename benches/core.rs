//! Micro-benchmarks of the pure core: `cargo bench --no-default-features --bench core`.
//!
//! A small harness (no extra crates): each case is calibrated to ~20 ms per sample, run for
//! 15 samples (5 with `BENCH_QUICK=1`), and reported as the median ns per operation with the
//! min-max spread. Lines starting with `BENCH` are what `bench/bench.py` reads.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Instant;

use ngx_http_ai_gateway_module::core::config::GatewayConfig;
use ngx_http_ai_gateway_module::core::identify::{identify, ClientKey};
use ngx_http_ai_gateway_module::core::matcher::RequestView;
use ngx_http_ai_gateway_module::core::metrics::{render, RenderInfo, RequestSample, Store};
use ngx_http_ai_gateway_module::core::policy::rules::parse_policies;
use ngx_http_ai_gateway_module::core::policy::slot::Slot;
use ngx_http_ai_gateway_module::core::policy::stream_cap::{StreamApi, StreamCap};
use ngx_http_ai_gateway_module::core::policy::{
    admit, precheck, release, settle, Facts, Table, TableHeader,
};
use ngx_http_ai_gateway_module::core::request::parse_request;
use ngx_http_ai_gateway_module::core::stream_rewrite::StreamRewriter;
use ngx_http_ai_gateway_module::core::tokens::{bound_fields, count_prompt, Encoding};
use ngx_http_ai_gateway_module::core::usage::{Framing, ResponseTracker};
use serde_json::{json, Value};

fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Runs `f` repeatedly; prints and returns the median ns per call.
fn bench(name: &str, mut f: impl FnMut()) -> f64 {
    let sample_target = if quick() { 0.005 } else { 0.02 };
    let samples = if quick() { 5 } else { 15 };
    // calibrate
    let mut iters: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let secs = t.elapsed().as_secs_f64();
        if secs >= sample_target / 4.0 || iters >= 1 << 30 {
            iters = ((iters as f64) * sample_target / secs.max(1e-9))
                .ceil()
                .max(1.0) as u64;
            break;
        }
        iters *= 4;
    }
    let mut per_op: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e9 / iters as f64
        })
        .collect();
    per_op.sort_by(|a, b| a.total_cmp(b));
    let median = per_op[per_op.len() / 2];
    println!(
        "BENCH {name} {median:.1} ns/op (min {:.1}, max {:.1}, {samples} samples x {iters})",
        per_op[0],
        per_op[per_op.len() - 1]
    );
    median
}

fn key(i: usize) -> String {
    format!("sk-bench-{i:08}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `keys` client keys spread over namespaces of 10 keys each, plus 10 header matchers.
fn config(keys: usize) -> GatewayConfig {
    let per_ns = 10.min(keys);
    let namespaces: Vec<Value> = (0..keys / per_ns)
        .map(|n| {
            let api_keys: Vec<String> = (0..per_ns)
                .map(|k| hex(&ClientKey::new(key(n * per_ns + k).as_bytes()).sha256))
                .collect();
            let mut ns = json!({"code": format!("ns-{n}"), "api_keys": api_keys});
            if n < 10 {
                ns["matchers"] = json!([{"type": "header", "field": "X-Team",
                                         "operator": "equals", "value": format!("team-{n}")}]);
            }
            ns
        })
        .collect();
    GatewayConfig::from_value(&json!({ "namespaces": namespaces })).expect("valid config")
}

struct Headers(Vec<(&'static str, String)>);

impl RequestView for Headers {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| Cow::Borrowed(v.as_str()))
    }
    fn query_arg(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
    fn body(&self) -> Option<&Value> {
        None
    }
}

fn chat_body(bytes: usize) -> Vec<u8> {
    let filler = bytes.saturating_sub(120);
    format!(
        r#"{{"model":"gpt-4o","stream":false,"max_tokens":256,"messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{}"}}]}}"#,
        "lorem ipsum ".repeat(filler / 12 + 1)
    )
    .into_bytes()
}

fn main() {
    for n in [10usize, 1_000, 100_000] {
        let cfg = config(n);
        let keys: Vec<String> = (0..n).map(key).collect();
        let no_headers = Headers(vec![]);
        let mut i = 0usize;
        // a different key each time (sha256 of the key + hash lookup)
        bench(&format!("identify/key_hit/{n}_keys"), || {
            i = (i + 7919) % n;
            let k = ClientKey::new(keys[i].as_bytes());
            black_box(identify(&cfg, Some(&k), &no_headers, 0).is_ok());
        });
        let last_matcher = Headers(vec![
            ("Content-Type", "application/json".into()),
            ("X-Team", format!("team-{}", (n / 10).min(10) - 1)),
        ]);
        let unknown = ClientKey::new(b"sk-unknown");
        bench(
            &format!("identify/unknown_key_last_matcher/{n}_keys"),
            || {
                black_box(identify(&cfg, Some(&unknown), &last_matcher, 0).is_ok());
            },
        );
    }
    bench("identify/sha256_of_key", || {
        black_box(ClientKey::new(black_box(b"sk-bench-00000042")));
    });

    for (label, size) in [
        ("1KB", 1024usize),
        ("32KB", 32 * 1024),
        ("1MB", 1024 * 1024),
    ] {
        let body = chat_body(size);
        bench(&format!("parse_request/{label}"), || {
            black_box(parse_request(black_box(&body), true).is_ok());
        });
        let spans = parse_request(&body, true).expect("valid").spans;
        let text = std::str::from_utf8(&body).expect("UTF-8");
        bench(&format!("prompt_bound/{label}"), || {
            let fields = spans.prompt_fields(black_box(text));
            black_box(bound_fields(&fields, Some("gpt-4o")));
        });
    }

    // the log phase's work with metrics on: one request series (found, not created), its
    // histogram, and the overhead histogram
    let words: Vec<std::sync::atomic::AtomicU64> = (0..Store::words_needed(4096))
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    let store = Store::create(&words, 0, None).expect("fits");
    let models: Vec<String> = (0..100).map(|m| format!("model-{m}")).collect();
    let mut i = 0usize;
    bench("metrics/record_request/1000_series", || {
        i = (i + 7) % 1000;
        store.record_request(&RequestSample {
            namespace: &format!("team-{}", i / 100),
            model: &models[i % 100],
            status: 200,
            duration_ms: black_box(42),
            usage: None,
        });
        store.observe_overhead(black_box(9_000));
    });
    bench("metrics/render/1000_series", || {
        black_box(render(&store, &RenderInfo::default()).len());
    });

    access_log();
    tokens();
    usage();
    policies();
}

/// A request's access-log record written into the worker's buffer (the log phase's work
/// with `ai_gateway_usage_log`), batches taken and given back as the shipper does.
fn access_log() {
    use ngx_http_ai_gateway_module::core::access_log::buffer::{Buffer, Push};
    use ngx_http_ai_gateway_module::core::access_log::record::{Record, Source, Tokens};
    let mut buffer = Buffer::new(500, 10_000);
    let mut i = 0u64;
    bench("access_log/record_into_buffer", || {
        i += 1;
        let r = Record {
            request_id: "6f1c2a9b0e4d4c21a3b5c7d9e1f30415".into(),
            ts_ms: 1_796_000_000_000 + i,
            node: "gw-1".into(),
            namespace: "team-a".into(),
            key_id: "9f86d081884c".into(),
            model: "gpt-4o-mini".into(),
            route: "chat".into(),
            target: "openai-eu".into(),
            status: 200,
            error: "".into(),
            latency_ms: 1234,
            ttfb_ms: Some(87),
            tokens: Tokens {
                prompt: Some(1200),
                completion: Some(340),
                cached: Some(0),
                reasoning: None,
            },
            source: Source::Provider,
            attempts: 1,
            stream: false,
        };
        if buffer.push(black_box(&r)) == Push::Ready {
            black_box(buffer.take());
        }
    });
}

/// Texts of one kind from the oracle corpus, concatenated and cut to `bytes` (at a char
/// boundary).
fn corpus_text(kind: &str, bytes: usize) -> String {
    let corpus = include_str!("../t/fixtures/tokens/corpus.jsonl");
    let mut text = String::new();
    while text.len() < bytes {
        for line in corpus.lines().skip(1) {
            let v: Value = serde_json::from_str(line).expect("corpus line");
            if v["kind"] == kind {
                text.push_str(v["text"].as_str().unwrap_or(""));
            }
        }
    }
    let mut cut = bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

/// Token counting (the exact encoders) on kinds of text; `bench.py` turns these into MB/s.
fn tokens() {
    for (kind, label) in [
        ("english", "en"),
        ("code", "code"),
        ("chinese", "zh"),
        ("base64", "b64"),
    ] {
        for (size_label, size) in [("1KB", 1024usize), ("32KB", 32 * 1024), ("1MB", 1 << 20)] {
            if kind != "english" && size_label != "32KB" {
                continue;
            }
            let text = corpus_text(kind, size);
            for enc in [Encoding::O200k, Encoding::Cl100k] {
                let name = format!("tokens/count/{}/{label}_{size_label}", enc.name());
                bench(&name, || {
                    black_box(enc.count(black_box(&text)));
                });
            }
        }
    }
    let spaces = " ".repeat(1 << 20);
    bench("tokens/count/o200k_base/spaces_1MB", || {
        black_box(Encoding::O200k.count(black_box(&spaces)));
    });
    let body = chat_body(32 * 1024);
    bench("tokens/count_prompt/chat_32KB", || {
        black_box(count_prompt(black_box(&body), None));
    });
}

/// The response side, per SSE chunk: reading usage as it passes, and the include_usage strip.
fn usage() {
    let chunk = br#"data: {"id":"chatcmpl-9x8y7z","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_abc","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}],"usage":null}

"#;
    let mut tracker = ResponseTracker::new(Framing::Sse, Some(Encoding::O200k));
    bench("usage/sse_chunk/track", || {
        tracker.feed(black_box(chunk));
    });
    // the rewritten stream of a request the gateway asked usage for, with an output cap:
    // the tracker reads each event once and both stages decide from what it read
    let chunk_with_null = chunk;
    let mut t = ResponseTracker::new(Framing::Sse, Some(Encoding::O200k));
    let mut w = StreamRewriter::new(true, None, &mut t);
    let mut out = Vec::with_capacity(4096);
    bench("stream/sse_chunk/track_strip", || {
        out.clear();
        w.feed(black_box(chunk_with_null), &mut t, &mut out);
        black_box(out.len());
    });
    let mut t = ResponseTracker::new(Framing::Sse, Some(Encoding::O200k));
    let cap = StreamCap::new(u64::MAX, StreamApi::OpenAiChat, Encoding::O200k);
    let mut w = StreamRewriter::new(true, Some(cap), &mut t);
    bench("stream/sse_chunk/track_strip_cap", || {
        out.clear();
        w.feed(black_box(chunk_with_null), &mut t, &mut out);
        black_box(out.len());
    });
    // a megabyte of such events in 4 KB pieces (as nginx reads them): the byte rate
    let mb: Vec<u8> = chunk.iter().copied().cycle().take(1 << 20).collect();
    let mut big_out = Vec::with_capacity(2 << 20);
    bench("stream/sse_1MB/track_strip_cap", || {
        let mut t = ResponseTracker::new(Framing::Sse, Some(Encoding::O200k));
        let cap = StreamCap::new(u64::MAX, StreamApi::OpenAiChat, Encoding::O200k);
        let mut w = StreamRewriter::new(true, Some(cap), &mut t);
        big_out.clear();
        for piece in mb.chunks(4096) {
            w.feed(black_box(piece), &mut t, &mut big_out);
        }
        w.finish(&mut t, &mut big_out);
        black_box(big_out.len());
    });
    let json = br#"{"id":"chatcmpl-9x8y7z","object":"chat.completion","created":1732000000,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}"#;
    bench("usage/json_response/track", || {
        let mut t = ResponseTracker::new(Framing::Json, Some(Encoding::O200k));
        t.feed(black_box(json));
        t.finish();
        black_box(t.reported().output);
    });
}

/// The limiter path of one request with every policy type (as `make bench`'s policies
/// target): stateless checks, four counters taken under the (caller's) lock, settled and
/// released; the prompt count is given (it is `tokens/count_prompt`).
fn policies() {
    let list = json!([
        {"type": "models", "allow": ["gpt-4o*", "gpt-4.1*"]},
        {"type": "message", "source": "header", "field": "X-Blocked", "value": "yes",
         "action": "deny"},
        {"type": "input_tokens", "max": 100000},
        {"type": "output_tokens", "max": 4096, "action": "reject"},
        {"type": "concurrency", "limit": 100000},
        {"type": "requests", "limit": 1000000000u64, "window": "1m"},
        {"type": "tokens", "limit": 1000000000000u64, "window": "1m"},
        {"type": "quota", "limit": 1000000000000000u64, "period": "day"}
    ]);
    let policies = parse_policies(list.as_array().expect("array"), "p").expect("valid");
    let view = Headers(vec![]);
    let facts = Facts {
        namespace: "team-4",
        model: Some("gpt-4o-mini"),
        max_output: Some(256),
        view: &view,
        cluster: None,
    };
    let mut header = TableHeader::default();
    let mut slots = vec![Slot::default(); 4096];
    let mut now = 1_764_547_200_000u64;
    bench("policy/admit_settle_release/8_policies", || {
        now += 1;
        let plan = precheck(&policies, &facts, &mut || 331).expect("passes");
        let mut table = Table::open(&mut header, &mut slots);
        let a = admit(&policies, &plan, &mut table, now).expect("admitted");
        settle(&mut table, &a.takes, Some(371), now);
        release(&mut table, &a.takes);
        black_box(a.headers);
    });
}
