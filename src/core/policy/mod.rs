//! Namespace policies: their configuration ([`rules`]), the limiter counters ([`slot`]) in a
//! fixed table ([`table`]) that lives in a shared memory zone, and the evaluation order,
//! admission and settlement ([`engine`]).

pub mod clamp;
pub mod engine;
pub mod glob;
pub mod rules;
pub mod slot;
pub mod stream_cap;
pub mod table;

pub use engine::{admit, precheck, release, settle, Admission, Denial, Facts, Gauge, Plan};
pub use engine::{PromptTokens, RateHeaders, Refusal, Take};
pub use rules::{Policy, Rule};
pub use table::{Table, TableHeader};

/// OpenAI's `x-ratelimit-reset-*` form of a duration: `"250ms"`, `"6s"`, `"1m30s"`, `"2h0m5s"`.
pub fn reset_text(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms.div_ceil(1000);
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reset_texts() {
        assert_eq!(super::reset_text(0), "0ms");
        assert_eq!(super::reset_text(250), "250ms");
        assert_eq!(super::reset_text(1000), "1s");
        assert_eq!(super::reset_text(1001), "2s");
        assert_eq!(super::reset_text(90_000), "1m30s");
        assert_eq!(super::reset_text(7_205_000), "2h0m5s");
    }
}
