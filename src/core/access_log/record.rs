//! One request's access-log record: what the log phase knows of it once it ended, never a
//! prompt, a response or a key (the key only as its id, a prefix of its hash).
//!
//! A record travels as one line of JSON, an array in a fixed order beginning with the
//! format's version, written straight into the worker's buffer (no allocation per record)
//! and read back by the ingestor, which trusts nothing of it: every field is checked and a
//! line that does not hold a record is refused.

use std::borrow::Cow;

use crate::core::short_text::decimal;

use serde_json::Value;

/// The line format's version (the array's first element).
pub const FORMAT: u64 = 1;

/// Longest request id, node, namespace, route, target and error code kept (bytes).
pub const NAME_MAX: usize = 64;
/// Longest model name kept (bytes): longer ones are cut at a character boundary.
pub const MODEL_MAX: usize = 128;
/// Longest key id (the gateway's are 12 hex digits).
pub const KEY_ID_MAX: usize = 16;
/// Longest line a record can make (every text at its maximum, escaped, numbers at theirs).
pub const LINE_MAX: usize = 6 * (7 * NAME_MAX + MODEL_MAX + KEY_ID_MAX) + 512;

/// Where a record's token counts come from (`$ai_gateway_usage_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    Unknown,
    Provider,
    Counted,
    Estimated,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Unknown => "unknown",
            Source::Provider => "provider",
            Source::Counted => "counted",
            Source::Estimated => "estimated",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Some(match s {
            "unknown" => Source::Unknown,
            "provider" => Source::Provider,
            "counted" => Source::Counted,
            "estimated" => Source::Estimated,
            _ => return None,
        })
    }
}

/// Token counts of a record (`None`: not known).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tokens {
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
    pub cached: Option<u64>,
    pub reasoning: Option<u64>,
}

/// See the module documentation. Texts borrow from the request when written and are owned
/// when read back.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record<'a> {
    pub request_id: Cow<'a, str>,
    /// When the request started, unix milliseconds.
    pub ts_ms: u64,
    pub node: Cow<'a, str>,
    /// The namespace's code; empty when none was identified.
    pub namespace: Cow<'a, str>,
    pub key_id: Cow<'a, str>,
    pub model: Cow<'a, str>,
    pub route: Cow<'a, str>,
    /// The target that answered last (or was tried last).
    pub target: Cow<'a, str>,
    /// The status sent to the client (0: none, the client went away first).
    pub status: u16,
    /// The gateway's error code (`error.code` of its JSON errors), empty when none.
    pub error: Cow<'a, str>,
    pub latency_ms: u32,
    /// Time to the response header, when one was sent.
    pub ttfb_ms: Option<u32>,
    pub tokens: Tokens,
    pub source: Source,
    /// Upstream attempts (0: answered by the gateway itself).
    pub attempts: u8,
    pub stream: bool,
}

pub use crate::core::short_text::truncate as cut;

fn text(out: &mut Vec<u8>, s: &str, max: usize) {
    let s = cut(s, max);
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        // the common case (ids, codes, names): nothing to escape
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\",");
        return;
    }
    // writing a str into a Vec cannot fail
    let _ = serde_json::to_writer(&mut *out, s);
    out.push(b',');
}

fn number(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => out.extend_from_slice(decimal(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
}

impl Record<'_> {
    /// Appends the record's line (with its newline) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        number(out, Some(FORMAT));
        text(out, &self.request_id, NAME_MAX);
        number(out, Some(self.ts_ms));
        text(out, &self.node, NAME_MAX);
        text(out, &self.namespace, NAME_MAX);
        text(out, &self.key_id, KEY_ID_MAX);
        text(out, &self.model, MODEL_MAX);
        text(out, &self.route, NAME_MAX);
        text(out, &self.target, NAME_MAX);
        number(out, Some(u64::from(self.status)));
        text(out, &self.error, NAME_MAX);
        number(out, Some(u64::from(self.latency_ms)));
        number(out, self.ttfb_ms.map(u64::from));
        let t = |n: Option<u64>| n.map(|n| n.min(TOKENS_MAX));
        number(out, t(self.tokens.prompt));
        number(out, t(self.tokens.completion));
        number(out, t(self.tokens.cached));
        number(out, t(self.tokens.reasoning));
        text(out, self.source.as_str(), NAME_MAX);
        number(out, Some(u64::from(self.attempts)));
        out.extend_from_slice(if self.stream { b"1]\n" } else { b"0]\n" });
    }

    /// The hundreds digit of the status (0 when there was none).
    pub fn status_class(&self) -> u8 {
        match self.status {
            100..=599 => (self.status / 100) as u8,
            _ => 0,
        }
    }

    /// Whether the request failed: no 1xx-3xx answer, or a gateway error.
    pub fn is_error(&self) -> bool {
        !matches!(self.status_class(), 1..=3) || !self.error.is_empty()
    }
}

/// Largest token count a record can hold (the table's column is 32 bits; the gateway
/// refuses far smaller provider numbers already).
pub const TOKENS_MAX: u64 = u32::MAX as u64;

/// Why a line is not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

fn owned_text(v: &Value, max: usize, what: &'static str) -> Result<Cow<'static, str>, Invalid> {
    let s = v.as_str().ok_or(Invalid(what))?;
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(Invalid(what));
    }
    Ok(Cow::Owned(s.to_string()))
}

fn count(v: &Value, max: u64, what: &'static str) -> Result<Option<u64>, Invalid> {
    match v {
        Value::Null => Ok(None),
        v => match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(Invalid(what)),
        },
    }
}

fn required(v: &Value, max: u64, what: &'static str) -> Result<u64, Invalid> {
    count(v, max, what)?.ok_or(Invalid(what))
}

/// Reads one line (without its newline) back into a record.
pub fn parse_line(line: &[u8]) -> Result<Record<'static>, Invalid> {
    if line.len() > LINE_MAX {
        return Err(Invalid("line too long"));
    }
    let v: Value = serde_json::from_slice(line).map_err(|_| Invalid("not JSON"))?;
    let a = v.as_array().ok_or(Invalid("not an array"))?;
    if a.len() != 20 || a[0].as_u64() != Some(FORMAT) {
        return Err(Invalid("unknown format"));
    }
    let request_id = owned_text(&a[1], NAME_MAX, "request_id")?;
    if request_id.is_empty() {
        return Err(Invalid("request_id"));
    }
    // the years 2000 to 2200
    let ts_ms = required(&a[2], 7_258_118_400_000, "ts")?;
    if ts_ms < 946_684_800_000 {
        return Err(Invalid("ts"));
    }
    let source = a[17]
        .as_str()
        .and_then(Source::parse)
        .ok_or(Invalid("usage_source"))?;
    Ok(Record {
        request_id,
        ts_ms,
        node: owned_text(&a[3], NAME_MAX, "node")?,
        namespace: owned_text(&a[4], NAME_MAX, "namespace")?,
        key_id: owned_text(&a[5], KEY_ID_MAX, "key_id")?,
        model: owned_text(&a[6], MODEL_MAX, "model")?,
        route: owned_text(&a[7], NAME_MAX, "route")?,
        target: owned_text(&a[8], NAME_MAX, "target")?,
        status: required(&a[9], 999, "status")? as u16,
        error: owned_text(&a[10], NAME_MAX, "error")?,
        latency_ms: required(&a[11], u64::from(u32::MAX), "latency_ms")? as u32,
        ttfb_ms: count(&a[12], u64::from(u32::MAX), "ttfb_ms")?.map(|n| n as u32),
        tokens: Tokens {
            prompt: count(&a[13], TOKENS_MAX, "prompt_tokens")?,
            completion: count(&a[14], TOKENS_MAX, "completion_tokens")?,
            cached: count(&a[15], TOKENS_MAX, "cached_tokens")?,
            reasoning: count(&a[16], TOKENS_MAX, "reasoning_tokens")?,
        },
        source,
        attempts: required(&a[18], 255, "attempts")? as u8,
        stream: match a[19].as_u64() {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(Invalid("stream")),
        },
    })
}

/// Every record of a block of lines; lines that are not records (a line cut short by a
/// crash while it was spooled, anything else) are counted, not kept.
pub fn parse_lines(block: &[u8]) -> (Vec<Record<'static>>, u64) {
    let mut records = Vec::new();
    let mut invalid = 0;
    for line in block.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(line) {
            Ok(r) => records.push(r),
            Err(_) => invalid += 1,
        }
    }
    (records, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Record<'static> {
        Record {
            request_id: "4f1c2a".into(),
            ts_ms: 1_796_000_000_123,
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
                prompt: Some(12),
                completion: Some(34),
                cached: Some(0),
                reasoning: None,
            },
            source: Source::Provider,
            attempts: 2,
            stream: true,
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let r = sample();
        let mut out = Vec::new();
        r.write_line(&mut out);
        assert_eq!(*out.last().unwrap(), b'\n');
        assert!(out.len() < 200, "{}", out.len());
        let back = parse_line(&out[..out.len() - 1]).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn long_and_odd_texts_are_cut_and_escaped() {
        let long = "é".repeat(100);
        let r = Record {
            model: long.as_str().into(),
            namespace: "a\"b\\c".into(),
            ..sample()
        };
        let mut out = Vec::new();
        r.write_line(&mut out);
        let back = parse_line(&out[..out.len() - 1]).unwrap();
        assert_eq!(back.model.len(), 128);
        assert_eq!(back.namespace, "a\"b\\c");
        // a model with a newline in it cannot break the line
        let r = Record {
            model: "x\ny".into(),
            ..sample()
        };
        let mut out = Vec::new();
        r.write_line(&mut out);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        // control characters are refused when read back (the stream is not trusted)
        assert_eq!(parse_line(&out[..out.len() - 1]), Err(Invalid("model")));
    }

    #[test]
    fn lines_that_are_not_records_are_refused() {
        let mut good = Vec::new();
        sample().write_line(&mut good);
        let cut_short = &good[..good.len() / 2];
        for bad in [
            &b"[2,\"x\"]"[..],
            b"{}",
            b"not json",
            cut_short,
            b"[1,\"\",1796000000123,\"n\",\"\",\"\",\"\",\"\",\"\",200,\"\",1,null,null,null,null,null,\"unknown\",0,0]",
            b"[1,\"r\",5,\"n\",\"\",\"\",\"\",\"\",\"\",200,\"\",1,null,null,null,null,null,\"unknown\",0,0]",
            b"[1,\"r\",1796000000123,\"n\",\"\",\"\",\"\",\"\",\"\",200,\"\",1,null,-1,null,null,null,\"unknown\",0,0]",
            b"[1,\"r\",1796000000123,\"n\",\"\",\"\",\"\",\"\",\"\",200,\"\",1,null,null,null,null,null,\"guess\",0,0]",
            b"[1,\"r\",1796000000123,\"n\",\"\",\"\",\"\",\"\",\"\",200,\"\",1,null,null,null,null,null,\"unknown\",0,2]",
            b"[1,\"r\",1796000000123,\"n\",\"\",\"\",\"\",\"\",\"\",1000,\"\",1,null,null,null,null,null,\"unknown\",0,0]",
        ] {
            assert!(parse_line(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut block = good.clone();
        block.extend_from_slice(cut_short);
        block.push(b'\n');
        block.extend_from_slice(&good);
        block.extend_from_slice(cut_short);
        let (records, invalid) = parse_lines(&block);
        assert_eq!((records.len(), invalid), (2, 2));
    }

    #[test]
    fn status_classes_and_errors() {
        let mut r = sample();
        assert_eq!((r.status_class(), r.is_error()), (2, false));
        r.status = 429;
        r.error = "rate_limited".into();
        assert_eq!((r.status_class(), r.is_error()), (4, true));
        r.status = 0;
        r.error = "".into();
        assert_eq!((r.status_class(), r.is_error()), (0, true));
        r.status = 200;
        r.error = "stream_cut".into();
        assert!(r.is_error());
    }

    #[test]
    fn the_longest_record_fits_the_line_bound() {
        let big = "\u{1}".repeat(200);
        let r = Record {
            request_id: big.as_str().into(),
            node: big.as_str().into(),
            namespace: big.as_str().into(),
            key_id: big.as_str().into(),
            model: big.as_str().into(),
            route: big.as_str().into(),
            target: big.as_str().into(),
            error: big.as_str().into(),
            ts_ms: u64::MAX,
            latency_ms: u32::MAX,
            ttfb_ms: Some(u32::MAX),
            tokens: Tokens {
                prompt: Some(TOKENS_MAX),
                completion: Some(TOKENS_MAX),
                cached: Some(TOKENS_MAX),
                reasoning: Some(TOKENS_MAX),
            },
            ..sample()
        };
        let mut out = Vec::new();
        r.write_line(&mut out);
        assert!(out.len() <= LINE_MAX, "{} > {LINE_MAX}", out.len());
    }
}
