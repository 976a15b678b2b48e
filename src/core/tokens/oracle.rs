//! The oracle test: every text and chat request of `t/fixtures/tokens/corpus.jsonl` must get
//! exactly the count OpenAI's own `tiktoken` gave it (see `make_corpus.py` there), for both
//! encodings.

use serde::Deserialize;

use super::{count_prompt, Encoding, Source};

const CORPUS: &str = include_str!("../../../t/fixtures/tokens/corpus.jsonl");

#[derive(Deserialize)]
struct Entry {
    kind: String,
    text: Option<String>,
    repeat: Option<String>,
    times: Option<usize>,
    o200k_base: Option<u64>,
    cl100k_base: Option<u64>,
    request: Option<String>,
    encoding: Option<String>,
    prompt_tokens: Option<u64>,
}

fn entries() -> Vec<Entry> {
    CORPUS
        .lines()
        .skip(1) // the generator line
        .map(|l| serde_json::from_str(l).expect("corpus line"))
        .collect()
}

#[test]
fn texts_agree_with_tiktoken() {
    let mut checked = 0;
    for (i, e) in entries().iter().enumerate() {
        let text = match (&e.text, &e.repeat) {
            (Some(t), _) => t.clone(),
            (None, Some(unit)) => unit.repeat(e.times.expect("times")),
            _ => continue,
        };
        for (enc, want) in [
            (Encoding::O200k, e.o200k_base),
            (Encoding::Cl100k, e.cl100k_base),
        ] {
            let want = want.expect("count");
            assert_eq!(
                enc.count(&text),
                want,
                "entry {i} ({}, {} bytes), {}",
                e.kind,
                text.len(),
                enc.name()
            );
            checked += 1;
        }
    }
    assert!(checked >= 200, "{checked} counts checked");
}

#[test]
fn chat_requests_agree_with_tiktoken_and_the_framing() {
    let mut checked = 0;
    for e in entries().iter().filter(|e| e.kind == "chat") {
        let body = e.request.as_deref().expect("request");
        let c = count_prompt(body.as_bytes(), None).expect("countable");
        assert_eq!(Some(c.encoding.name()), e.encoding.as_deref());
        assert_eq!(
            Some(c.tokens),
            e.prompt_tokens,
            "{}",
            &body[..body.len().min(80)]
        );
        assert_eq!(c.source, Source::Counted);
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[test]
fn four_megabyte_runs_do_not_panic() {
    // beyond what the oracle can check (Python tiktoken panics on ~1 MB of spaces)
    for unit in [" ", "a", "\n", " \n", "的"] {
        let text = unit.repeat((4 << 20) / unit.len());
        for enc in [Encoding::O200k, Encoding::Cl100k] {
            assert!(enc.count(&text) > 0);
        }
    }
}
