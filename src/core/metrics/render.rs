//! The Prometheus text exposition (format 0.0.4) of a [`Store`].
//!
//! Families derived from request series (success/failure, durations, tokens) are summed over
//! the status code at render time, so the hot path updates one series per request.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use super::labels::{decode, Kind};
use super::store::{
    Store, DURATION_BOUNDS_MS, HIST_WORDS, RESERVED_ENTRIES, V_ATTEMPTS, V_COMPLETION, V_COUNT,
    V_DURATION, V_PROMPT, V_RETRIED, V_USAGE_REQUESTS,
};

/// What the exposition says besides the store.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderInfo<'a> {
    pub now_secs: u64,
    /// The label of the snapshot this worker serves (its store version, else the
    /// document's `version`), if any config is loaded; its source and sha256.
    pub config_version: Option<&'a str>,
    pub config_source: &'a str,
    pub config_sha256: &'a str,
    /// Set when the Redis configuration source is configured.
    pub sync: Option<SyncInfo<'a>>,
    /// Set when cluster limits are configured (`ai_gateway_cluster_limits`).
    pub cluster: bool,
    /// Set when usage logs are configured (`ai_gateway_usage_log`).
    pub access_log: bool,
    pub module_version: &'a str,
    pub nginx_version: &'a str,
}

/// The Redis configuration source, as this worker sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncInfo<'a> {
    /// Names of the error reasons, by index (see `Store::sync_error`).
    pub reasons: &'a [&'a str],
    /// How long the published head has named a snapshot this worker does not serve.
    pub seconds_behind: u64,
}

type Hist = [u64; HIST_WORDS];

#[derive(Default)]
struct RequestAgg {
    success: u64,
    failed: u64,
    duration: Hist,
    prompt: u64,
    completion: u64,
    with_usage: u64,
}

#[derive(Default)]
struct UpstreamAgg {
    duration: Hist,
    retried: u64,
}

/// Series read out of the store, sorted by labels.
#[derive(Default)]
struct Snapshot {
    requests: BTreeMap<Vec<String>, u64>,
    by_model: BTreeMap<(String, String), RequestAgg>,
    inflight: BTreeMap<String, i64>,
    rejections: BTreeMap<(String, String), u64>,
    dry_runs: BTreeMap<(String, String), u64>,
    upstream_attempts: BTreeMap<(String, String), u64>,
    upstreams: BTreeMap<String, UpstreamAgg>,
}

fn load(words: &[AtomicU64]) -> Vec<u64> {
    words.iter().map(|w| w.load(Relaxed)).collect()
}

fn hist(values: &[u64]) -> Hist {
    let mut h = [0; HIST_WORDS];
    h.copy_from_slice(&values[V_DURATION..V_DURATION + HIST_WORDS]);
    h
}

fn add(into: &mut Hist, from: &Hist) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// 1xx-3xx count as success; 4xx, 5xx and "no status" as failure.
fn succeeded(code: &str) -> bool {
    code.len() == 3 && matches!(code.as_bytes()[0], b'1'..=b'3')
}

impl Snapshot {
    fn read(store: &Store) -> Snapshot {
        let mut s = Snapshot::default();
        for e in 0..store.used() {
            let (words, len) = store.key(e);
            let Some((kind, labels)) = decode(words, len) else {
                continue;
            };
            let values = load(store.values(e));
            // overflow series show up only once something went into them
            if e < RESERVED_ENTRIES && values.iter().all(|v| *v == 0) {
                continue;
            }
            match kind {
                Kind::Request => s.add_request(labels, &values),
                Kind::Upstream => {
                    let (upstream, code) = (labels[0].clone(), labels[1].clone());
                    *s.upstream_attempts
                        .entry((upstream.clone(), code))
                        .or_default() += values[V_ATTEMPTS];
                    let agg = s.upstreams.entry(upstream).or_default();
                    add(&mut agg.duration, &hist(&values));
                    agg.retried += values[V_RETRIED];
                }
                Kind::Rejection => {
                    let key = (labels[0].clone(), labels[1].clone());
                    *s.rejections.entry(key).or_default() += values[V_COUNT];
                }
                Kind::DryRun => {
                    let key = (labels[0].clone(), labels[1].clone());
                    *s.dry_runs.entry(key).or_default() += values[V_COUNT];
                }
                Kind::InFlight => {
                    // the gauge wraps below zero only transiently (leave before enter is seen)
                    *s.inflight.entry(labels[0].clone()).or_default() += values[V_COUNT] as i64;
                }
            }
        }
        s
    }

    fn add_request(&mut self, labels: Vec<String>, values: &[u64]) {
        let h = hist(values);
        let count: u64 = h[..=DURATION_BOUNDS_MS.len()].iter().sum();
        let ok = succeeded(&labels[2]);
        let agg = self
            .by_model
            .entry((labels[0].clone(), labels[1].clone()))
            .or_default();
        if ok {
            agg.success += count;
        } else {
            agg.failed += count;
        }
        add(&mut agg.duration, &h);
        agg.prompt += values[V_PROMPT];
        agg.completion += values[V_COMPLETION];
        agg.with_usage += values[V_USAGE_REQUESTS];
        *self.requests.entry(labels).or_default() += count;
    }
}

/// Writes a label set `{a="x",b="y"}` (nothing for no labels).
fn labels(out: &mut String, pairs: &[(&str, &str)]) {
    if pairs.is_empty() {
        return;
    }
    out.push('{');
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, pairs: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    labels(out, pairs);
    let _ = writeln!(out, " {value}");
}

/// Appends `v` in decimal (the bucket lines are most of an exposition).
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|b| char::from(*b)));
}

/// `le` values of the duration buckets (seconds), as written.
const DURATION_LE: [&str; 15] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60",
    "120", "300",
];
/// `le` values of the overhead buckets (seconds), as written.
const OVERHEAD_LE: [&str; 10] = [
    "0.000005", "0.00001", "0.000025", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
    "0.01",
];

/// A histogram's bucket, sum and count lines; `scale` converts stored units to seconds.
fn histogram(
    out: &mut String,
    name: &str,
    pairs: &[(&str, &str)],
    counts: &[u64],
    le: &[&str],
    scale: f64,
) {
    // the series' own labels, rendered once and followed by `le` on every bucket
    let mut prefix = String::new();
    labels(&mut prefix, pairs);
    let prefix = prefix.strip_suffix('}').unwrap_or("{");
    let sep = if prefix.len() > 1 { "," } else { "" };
    let mut cumulative = 0;
    for (i, bound) in le.iter().chain(["+Inf"].iter()).enumerate() {
        cumulative += counts[i];
        for part in [name, "_bucket", prefix, sep, "le=\"", bound, "\"} "] {
            out.push_str(part);
        }
        push_u64(out, cumulative);
        out.push('\n');
    }
    let sum = counts[le.len() + 1] as f64 / scale;
    sample(out, &format!("{name}_sum"), pairs, sum);
    sample(out, &format!("{name}_count"), pairs, cumulative);
}

/// The exposition of `store`.
pub fn render(store: &Store, info: &RenderInfo) -> String {
    let s = Snapshot::read(store);
    let mut out = String::with_capacity(4096 + 600 * s.requests.len());

    let name = "gateway_requests_total";
    header(
        &mut out,
        name,
        "counter",
        "Requests handled by the gateway, by namespace, requested model and HTTP status code.",
    );
    for (l, count) in &s.requests {
        sample(
            &mut out,
            name,
            &[("namespace", &l[0]), ("model", &l[1]), ("code", &l[2])],
            count,
        );
    }
    let name = "gateway_requests_success_total";
    header(
        &mut out,
        name,
        "counter",
        "Requests answered with a 1xx-3xx status.",
    );
    for ((ns, model), agg) in &s.by_model {
        sample(
            &mut out,
            name,
            &[("namespace", ns), ("model", model)],
            agg.success,
        );
    }
    let name = "gateway_requests_failed_total";
    header(
        &mut out,
        name,
        "counter",
        "Requests answered with a 4xx/5xx status or ended without one.",
    );
    for ((ns, model), agg) in &s.by_model {
        sample(
            &mut out,
            name,
            &[("namespace", ns), ("model", model)],
            agg.failed,
        );
    }
    let name = "gateway_request_duration_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Time from the first byte of the request to the last byte of the response.",
    );
    for ((ns, model), agg) in &s.by_model {
        let pairs = [("namespace", ns.as_str()), ("model", model.as_str())];
        histogram(&mut out, name, &pairs, &agg.duration, &DURATION_LE, 1e3);
    }
    let name = "gateway_tokens_total";
    header(
        &mut out,
        name,
        "counter",
        "Tokens used by requests whose usage is known, by type (prompt, completion).",
    );
    for ((ns, model), agg) in s.by_model.iter().filter(|(_, a)| a.with_usage > 0) {
        sample(
            &mut out,
            name,
            &[("namespace", ns), ("model", model), ("type", "prompt")],
            agg.prompt,
        );
        sample(
            &mut out,
            name,
            &[("namespace", ns), ("model", model), ("type", "completion")],
            agg.completion,
        );
    }
    let name = "gateway_requests_in_flight";
    header(
        &mut out,
        name,
        "gauge",
        "Requests in progress in gateway locations.",
    );
    for (ns, n) in &s.inflight {
        sample(&mut out, name, &[("namespace", ns)], n);
    }
    let name = "gateway_rejections_total";
    header(
        &mut out,
        name,
        "counter",
        "Requests the gateway answered itself, by namespace and reason.",
    );
    for ((ns, reason), n) in &s.rejections {
        sample(&mut out, name, &[("namespace", ns), ("reason", reason)], n);
    }
    let name = "gateway_policy_dry_run_total";
    header(
        &mut out,
        name,
        "counter",
        "Requests a dry-run policy would have refused (they went through), by namespace and reason.",
    );
    for ((ns, reason), n) in &s.dry_runs {
        sample(&mut out, name, &[("namespace", ns), ("reason", reason)], n);
    }
    let name = "gateway_upstream_requests_total";
    header(
        &mut out,
        name,
        "counter",
        "Attempts at an upstream, by upstream and status code (502/504 when no response).",
    );
    for ((upstream, code), n) in &s.upstream_attempts {
        sample(&mut out, name, &[("upstream", upstream), ("code", code)], n);
    }
    let name = "gateway_upstream_duration_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Time from connecting to an upstream to the end of its response, per attempt.",
    );
    for (upstream, agg) in &s.upstreams {
        histogram(
            &mut out,
            name,
            &[("upstream", upstream)],
            &agg.duration,
            &DURATION_LE,
            1e3,
        );
    }
    let name = "gateway_upstream_failovers_total";
    header(
        &mut out,
        name,
        "counter",
        "Upstream attempts that failed and were retried on another peer.",
    );
    for (upstream, agg) in &s.upstreams {
        sample(&mut out, name, &[("upstream", upstream)], agg.retried);
    }
    let name = "gateway_overhead_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Time spent in the gateway module per request (parsing, identification, accounting).",
    );
    let overhead = load(store.overhead());
    histogram(&mut out, name, &[], &overhead, &OVERHEAD_LE, 1e9);

    let name = "gateway_up_time_seconds";
    header(
        &mut out,
        name,
        "gauge",
        "Seconds since the gateway's metrics zone was created (nginx start; reloads keep it).",
    );
    sample(
        &mut out,
        name,
        &[],
        info.now_secs.saturating_sub(store.start_time()),
    );
    if let Some(version) = info.config_version {
        let name = "gateway_config_info";
        header(
            &mut out,
            name,
            "gauge",
            "The gateway config this worker serves.",
        );
        sample(
            &mut out,
            name,
            &[
                ("version", version),
                ("source", info.config_source),
                ("sha256", info.config_sha256),
            ],
            1,
        );
    }
    if let Some(sync) = info.sync {
        render_sync(&mut out, store, &sync);
    }
    if info.cluster {
        render_cluster(&mut out, store);
    }
    if info.access_log {
        render_access_log(&mut out, store);
    }
    let name = "gateway_build_info";
    header(
        &mut out,
        name,
        "gauge",
        "The module's version and the nginx version it was built for.",
    );
    sample(
        &mut out,
        name,
        &[
            ("version", info.module_version),
            ("nginx_version", info.nginx_version),
        ],
        1,
    );
    let name = "gateway_metrics_series";
    header(
        &mut out,
        name,
        "gauge",
        "Series in the metrics zone (overflow series not included).",
    );
    sample(&mut out, name, &[], store.series());
    let name = "gateway_metrics_series_max";
    header(
        &mut out,
        name,
        "gauge",
        "The series cap (max_series of ai_gateway_metrics_zone).",
    );
    sample(&mut out, name, &[], store.max_series());
    let name = "gateway_metrics_series_dropped_total";
    header(
        &mut out,
        name,
        "counter",
        "Samples recorded under an \"_overflow\" series because the series cap was reached.",
    );
    sample(&mut out, name, &[], store.dropped());
    out
}

/// `le` values of the Redis call buckets (seconds), as written.
const REDIS_LE: [&str; 11] = [
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25",
];
const REDIS_OPS: [&str; super::store::REDIS_OPS] = ["admit", "finish", "renew", "probe", "sync"];
const REDIS_OUTCOMES: [&str; super::store::REDIS_OUTCOMES] = ["ok", "error", "timeout"];

/// The cluster limits' metrics.
fn render_cluster(out: &mut String, store: &Store) {
    let name = "gateway_redis_calls_total";
    header(
        out,
        name,
        "counter",
        "Redis calls of the cluster limits, by operation and result.",
    );
    let calls = store.redis_calls();
    for (o, op) in REDIS_OPS.iter().enumerate() {
        for (r, result) in REDIS_OUTCOMES.iter().enumerate() {
            let n = calls[o * REDIS_OUTCOMES.len() + r];
            sample(out, name, &[("op", op), ("result", result)], n);
        }
    }
    let name = "gateway_redis_call_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Duration of the cluster limits' Redis calls (timeouts included).",
    );
    let d = load(store.redis_duration());
    histogram(out, name, &[], &d, &REDIS_LE, 1e6);
    let (opened, open, closed) = store.cluster_counts();
    let name = "gateway_redis_breaker_opened_total";
    header(
        out,
        name,
        "counter",
        "Times a worker's circuit breaker in front of Redis opened.",
    );
    sample(out, name, &[], opened);
    let name = "gateway_cluster_limit_degraded_total";
    header(
        out,
        name,
        "counter",
        "Requests decided without Redis: limited on the node (fail_open) or refused (fail_closed).",
    );
    sample(out, name, &[("on_failure", "fail_open")], open);
    sample(out, name, &[("on_failure", "fail_closed")], closed);
}

/// The usage logs' metrics (counter indexes as in `log_stats::Count`).
fn render_access_log(out: &mut String, store: &Store) {
    let (c, g) = store.log_counts();
    let counter = |out: &mut String, name: &str, help: &str, n: u64| {
        header(out, name, "counter", help);
        sample(out, name, &[], n);
    };
    counter(
        out,
        "gateway_log_queued_total",
        "Access-log records put into the workers' buffers.",
        c[0],
    );
    let name = "gateway_log_shipped_total";
    header(
        out,
        name,
        "counter",
        "Access-log records shipped off the node: to the Redis stream, or straight to MySQL.",
    );
    sample(out, name, &[("to", "redis")], c[1]);
    sample(out, name, &[("to", "mysql")], c[2]);
    counter(
        out,
        "gateway_log_spooled_total",
        "Access-log records written to the local spool (the store unreachable or full).",
        c[3],
    );
    counter(
        out,
        "gateway_log_replayed_total",
        "Access-log records read back from the local spool and shipped.",
        c[4],
    );
    counter(
        out,
        "gateway_log_ingested_total",
        "Access-log rows this node inserted into MySQL.",
        c[5],
    );
    counter(
        out,
        "gateway_log_duplicates_total",
        "Access-log records found already in MySQL (sent twice) and skipped.",
        c[6],
    );
    let name = "gateway_log_dropped_total";
    header(
        out,
        name,
        "counter",
        "Access-log records lost: buffer full, spool full, or not a record.",
    );
    sample(out, name, &[("reason", "buffer_full")], c[7]);
    sample(out, name, &[("reason", "spool_full")], c[8]);
    sample(out, name, &[("reason", "invalid")], c[9]);
    let name = "gateway_log_ingest_lag_seconds";
    header(
        out,
        name,
        "gauge",
        "Age of the oldest record waiting in the stream, as this node's ingestor last saw it.",
    );
    sample(out, name, &[], g[0] as f64 / 1000.0);
    let name = "gateway_log_spool_bytes";
    header(
        out,
        name,
        "gauge",
        "Bytes waiting in the node's local spool.",
    );
    sample(out, name, &[], g[1]);
    let name = "gateway_log_ingestor";
    header(
        out,
        name,
        "gauge",
        "1 while this node holds the ingestor lease (inserts the cluster's records).",
    );
    sample(out, name, &[], g[2]);
}

/// The configuration sync metrics (Redis source).
fn render_sync(out: &mut String, store: &Store, sync: &SyncInfo) {
    let (applied, success_ms, errors) = store.sync_counts();
    let name = "gateway_config_applied_total";
    header(
        out,
        name,
        "counter",
        "Configuration snapshots applied by the workers at run time.",
    );
    sample(out, name, &[], applied);
    let name = "gateway_config_sync_errors_total";
    header(
        out,
        name,
        "counter",
        "Failed configuration sync steps, by reason (each worker syncs).",
    );
    for (i, reason) in sync.reasons.iter().enumerate() {
        sample(
            out,
            name,
            &[("reason", reason)],
            errors.get(i).copied().unwrap_or(0),
        );
    }
    let name = "gateway_config_last_success_timestamp_seconds";
    header(
        out,
        name,
        "gauge",
        "When a worker last found itself on the published snapshot.",
    );
    sample(out, name, &[], success_ms / 1000);
    let name = "gateway_config_seconds_behind";
    header(
        out,
        name,
        "gauge",
        "How long the published snapshot has not been the one this worker serves.",
    );
    sample(out, name, &[], sync.seconds_behind);
}

#[cfg(test)]
mod tests {
    use super::super::store::tests::memory;
    use super::super::store::{RequestSample, UpstreamAttempt, Usage, OVERHEAD_BOUNDS_NS};
    use super::*;

    fn info() -> RenderInfo<'static> {
        RenderInfo {
            now_secs: 1_100,
            config_version: Some("v\"1"),
            config_source: "file",
            config_sha256: "ab12",
            sync: None,
            cluster: false,
            access_log: true,
            module_version: "0.1.0",
            nginx_version: "1.28.3",
        }
    }

    fn lines(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn renders_counters_histograms_and_info() {
        let mem = memory(Store::words_needed(64));
        let store = Store::create(&mem, 1_000, None).expect("fits");
        for (status, ms) in [(200, 40), (200, 300), (429, 1)] {
            store.record_request(&RequestSample {
                namespace: "alpha",
                model: "gpt-4o",
                status,
                duration_ms: ms,
                usage: (status == 200).then_some(Usage {
                    prompt: 10,
                    completion: 5,
                }),
            });
        }
        store.record_upstream(&UpstreamAttempt {
            upstream: "mock",
            status: 502,
            duration_ms: Some(2),
            retried: true,
        });
        store.record_upstream(&UpstreamAttempt {
            upstream: "mock",
            status: 200,
            duration_ms: Some(30),
            retried: false,
        });
        store.record_rejection("alpha", "rate_limit_exceeded");
        let e = store.inflight_enter("alpha");
        store.observe_overhead(7_000);
        let text = render(&store, &info());

        assert_eq!(
            lines(&text, "gateway_requests_total{"),
            [
                r#"gateway_requests_total{namespace="alpha",model="gpt-4o",code="200"} 2"#,
                r#"gateway_requests_total{namespace="alpha",model="gpt-4o",code="429"} 1"#,
            ]
        );
        assert!(text
            .contains("gateway_requests_success_total{namespace=\"alpha\",model=\"gpt-4o\"} 2\n"));
        assert!(text
            .contains("gateway_requests_failed_total{namespace=\"alpha\",model=\"gpt-4o\"} 1\n"));
        let d = r#"gateway_request_duration_seconds_bucket{namespace="alpha",model="gpt-4o",le="#;
        assert!(text.contains(&format!("{d}\"0.005\"}} 1\n")));
        assert!(text.contains(&format!("{d}\"0.05\"}} 2\n")));
        assert!(text.contains(&format!("{d}\"0.25\"}} 2\n")));
        assert!(text.contains(&format!("{d}\"0.5\"}} 3\n")));
        assert!(text.contains(&format!("{d}\"+Inf\"}} 3\n")));
        assert!(text.contains(
            "gateway_request_duration_seconds_sum{namespace=\"alpha\",model=\"gpt-4o\"} 0.341\n"
        ));
        assert!(text.contains(
            "gateway_tokens_total{namespace=\"alpha\",model=\"gpt-4o\",type=\"prompt\"} 20\n"
        ));
        assert!(text.contains(
            "gateway_tokens_total{namespace=\"alpha\",model=\"gpt-4o\",type=\"completion\"} 10\n"
        ));
        assert!(text.contains("gateway_requests_in_flight{namespace=\"alpha\"} 1\n"));
        assert!(text.contains(
            "gateway_rejections_total{namespace=\"alpha\",reason=\"rate_limit_exceeded\"} 1\n"
        ));
        assert!(
            text.contains("gateway_upstream_requests_total{upstream=\"mock\",code=\"502\"} 1\n")
        );
        assert!(text.contains("gateway_upstream_failovers_total{upstream=\"mock\"} 1\n"));
        assert!(text.contains("gateway_upstream_duration_seconds_count{upstream=\"mock\"} 2\n"));
        assert!(text.contains("gateway_overhead_seconds_bucket{le=\"0.000005\"} 0\n"));
        assert!(text.contains("gateway_overhead_seconds_bucket{le=\"0.00001\"} 1\n"));
        assert!(text.contains("gateway_overhead_seconds_sum 0.000007\n"));
        assert!(text.contains("gateway_up_time_seconds 100\n"));
        assert!(text.contains(
            "gateway_config_info{version=\"v\\\"1\",source=\"file\",sha256=\"ab12\"} 1\n"
        ));
        assert!(!text.contains("gateway_config_sync_errors_total"));
        assert!(text.contains("gateway_metrics_series 6\n"));
        assert!(text.contains("gateway_metrics_series_dropped_total 0\n"));
        assert!(!text.contains("=\"_overflow\""));
        store.inflight_leave(e);
        assert!(
            render(&store, &info()).contains("gateway_requests_in_flight{namespace=\"alpha\"} 0\n")
        );
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let mem = memory(Store::words_needed(32));
        let store = Store::create(&mem, 0, None).expect("fits");
        let text = render(&store, &RenderInfo::default());
        let types = lines(&text, "# TYPE ");
        let mut names: Vec<&str> = types.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(lines(&text, "# HELP ").len(), n);
        assert!(names.contains(&"gateway_up_time_seconds"));
        assert!(
            !names.contains(&"gateway_config_info"),
            "no config, no info"
        );
        // no requests: no request samples, histogram without labels still complete
        assert!(lines(&text, "gateway_requests_total").is_empty());
        assert_eq!(lines(&text, "gateway_overhead_seconds_bucket").len(), 11);
    }

    #[test]
    fn overflow_series_appear_with_their_status_class() {
        let mem = memory(Store::words_needed(64));
        let store = Store::create(&mem, 0, Some(1)).expect("fits");
        for (model, status) in [("a", 200), ("b", 200), ("c", 503), ("d", 0)] {
            store.record_request(&RequestSample {
                namespace: "n",
                model,
                status,
                duration_ms: 1,
                usage: None,
            });
        }
        let text = render(&store, &info());
        assert!(text.contains(
            "gateway_requests_total{namespace=\"_overflow\",model=\"_overflow\",code=\"2xx\"} 1\n"
        ));
        assert!(text.contains(
            "gateway_requests_total{namespace=\"_overflow\",model=\"_overflow\",code=\"5xx\"} 1\n"
        ));
        assert!(text.contains("gateway_requests_total{namespace=\"_overflow\",model=\"_overflow\",code=\"_overflow\"} 1\n"));
        assert!(text.contains(
            "gateway_requests_success_total{namespace=\"_overflow\",model=\"_overflow\"} 1\n"
        ));
        assert!(text.contains(
            "gateway_requests_failed_total{namespace=\"_overflow\",model=\"_overflow\"} 2\n"
        ));
        assert!(text.contains("gateway_metrics_series_dropped_total 3\n"));
        assert!(text.contains("gateway_metrics_series 1\n"));
        assert!(text.contains("gateway_metrics_series_max 1\n"));
    }

    #[test]
    fn bucket_bounds_are_written_in_seconds() {
        for (le, ms) in DURATION_LE.iter().zip(DURATION_BOUNDS_MS) {
            assert_eq!(*le, (ms as f64 / 1e3).to_string());
        }
        for (le, ns) in OVERHEAD_LE.iter().zip(OVERHEAD_BOUNDS_NS) {
            assert_eq!(*le, (ns as f64 / 1e9).to_string());
        }
        assert_eq!(DURATION_LE.len(), DURATION_BOUNDS_MS.len());
        assert_eq!(OVERHEAD_LE.len(), OVERHEAD_BOUNDS_NS.len());
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for v in [0, 7, 10, 12_345, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string());
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        labels(&mut out, &[("model", "a\\b\"c\nd")]);
        assert_eq!(out, r#"{model="a\\b\"c\nd"}"#);
    }

    #[test]
    fn sync_metrics_when_the_redis_source_is_on() {
        let mem = memory(4096);
        let store = Store::create(&mem, 1_000, None).unwrap();
        store.sync_applied();
        store.sync_applied();
        store.sync_success(1_700_000_000_500);
        store.sync_success(1_600_000_000_000);
        store.sync_error(1);
        store.sync_error(99);
        let reasons = ["unreachable", "bad_head"];
        let mut i = info();
        i.sync = Some(SyncInfo {
            reasons: &reasons,
            seconds_behind: 3,
        });
        let text = render(&store, &i);
        assert!(text.contains("gateway_config_applied_total 2\n"));
        assert!(text.contains("gateway_config_sync_errors_total{reason=\"unreachable\"} 0\n"));
        assert!(text.contains("gateway_config_sync_errors_total{reason=\"bad_head\"} 1\n"));
        assert!(text.contains("gateway_config_last_success_timestamp_seconds 1700000000\n"));
        assert!(text.contains("gateway_config_seconds_behind 3\n"));
    }

    #[test]
    fn renders_the_usage_log_counts() {
        let mem = memory(Store::words_needed(64));
        let store = Store::create(&mem, 1_000, None).expect("fits");
        let mut counts = [0; super::super::store::LOG_COUNTERS];
        counts[0] = 7;
        counts[8] = 2;
        store.log_add(&counts);
        store.log_gauge(0, 2500);
        let text = render(&store, &info());
        assert_eq!(
            lines(&text, "gateway_log_queued_total"),
            ["gateway_log_queued_total 7"]
        );
        assert!(text.contains("gateway_log_dropped_total{reason=\"spool_full\"} 2\n"));
        assert!(text.contains("gateway_log_ingest_lag_seconds 2.5\n"));
        let without = render(
            &store,
            &RenderInfo {
                access_log: false,
                ..info()
            },
        );
        assert!(!without.contains("gateway_log_"));
    }
}
