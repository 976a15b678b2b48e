//! Namespace policies: their configuration ([`rules`]), the limiter counters ([`slot`]) in a
//! fixed table ([`table`]) that lives in a shared memory zone, and the evaluation order,
//! admission and settlement ([`engine`]).

pub mod approx;
pub mod clamp;
pub mod cluster_mode;
pub mod engine;
pub mod glob;
pub mod judge;
pub mod rules;
pub mod slot;
pub mod stream_cap;
pub mod table;

pub use engine::{admit, precheck, release, settle, Admission, Denial, Facts, Gauge, Plan};
pub use engine::{PromptTokens, RateHeaders, Refusal, Take};
pub use rules::{Policy, Rule};
pub use table::{Table, TableHeader};

use crate::core::short_text::ShortText;

/// OpenAI's `x-ratelimit-reset-*` form of a duration: `"250ms"`, `"6s"`, `"1m30s"`, `"2h0m5s"`.
pub fn reset_text(ms: u64) -> ShortText {
    let mut t = ShortText::default();
    if ms < 1000 {
        t.number(ms).push(b"ms");
        return t;
    }
    let s = ms.div_ceil(1000);
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => t.number(sec).push(b"s"),
        (0, m, sec) => t.number(m).push(b"m").number(sec).push(b"s"),
        (h, m, sec) => t
            .number(h)
            .push(b"h")
            .number(m)
            .push(b"m")
            .number(sec)
            .push(b"s"),
    };
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn reset_texts() {
        assert_eq!(super::reset_text(0).as_str(), "0ms");
        assert_eq!(super::reset_text(250).as_str(), "250ms");
        assert_eq!(super::reset_text(1000).as_str(), "1s");
        assert_eq!(super::reset_text(1001).as_str(), "2s");
        assert_eq!(super::reset_text(90_000).as_str(), "1m30s");
        assert_eq!(super::reset_text(7_205_000).as_str(), "2h0m5s");
    }
}
