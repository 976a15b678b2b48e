use serde::de::IgnoredAny;

use super::*;

/// What serde says of a text (as a whole document), with the UTF-8 check serde skips for
/// the strings it ignores.
fn serde_accepts(text: &[u8]) -> bool {
    std::str::from_utf8(text).is_ok_and(|t| serde_json::from_str::<IgnoredAny>(t).is_ok())
}

fn accepts(text: &[u8]) -> bool {
    std::str::from_utf8(text).is_ok() && Check::new(text).document().is_ok()
}

const CORPUS: &[&str] = &[
    r#"{}"#,
    r#"[]"#,
    r#" { } "#,
    r#"{"a":1}"#,
    r#"{"a":[1,2,{"b":null}],"c":"x\"y\\z\/\b\f\n\r\t\u00e9"}"#,
    r#"[1,-0,0.5,-1.5e10,2E-3,3e+4,1e0]"#,
    r#"[true,false,null]"#,
    r#""plain""#,
    r#"  12  "#,
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi there, a longer text to cross a word"}]}"#,
    r#"{"nested":{"deep":{"deeper":[[[[{"x":[]}]]]]}}}"#,
    "{\"ü\":\"模型\"}",
    r#"{"a" : 1 , "b" : [ 1 , 2 ] }"#,
    "{\n\t\"a\"\r\n:\n1}",
];

const BAD: &[&str] = &[
    "",
    " ",
    "{",
    "}",
    "[1,]",
    "[,1]",
    r#"{"a":1,}"#,
    r#"{"a"}"#,
    r#"{"a":}"#,
    r#"{a:1}"#,
    r#"{"a":1 "b":2}"#,
    "[01]",
    "[1.]",
    "[.5]",
    "[1e]",
    "[-]",
    "[+1]",
    "[tru]",
    "[nul]",
    "[True]",
    r#"["\x"]"#,
    r#"["\u12"]"#,
    r#"["\u12g4"]"#,
    "[\"a\tb\"]",
    "[\"a\nb\"]",
    "[\"unterminated]",
    "[1]x",
    "[1][2]",
    "{\"a\":1}}",
    "[1}",
    "{\"a\":1]",
    "\u{feff}{}",
];

#[test]
fn the_corpus_is_judged_as_serde_judges_it() {
    for text in CORPUS {
        assert!(serde_accepts(text.as_bytes()), "serde: {text}");
        assert!(accepts(text.as_bytes()), "check: {text}");
    }
    for text in BAD {
        assert!(!serde_accepts(text.as_bytes()), "serde: {text}");
        assert!(!accepts(text.as_bytes()), "check: {text}");
    }
    // bytes that are not UTF-8, inside a string and outside one
    for text in [
        &b"[\"\xff\"]"[..],
        b"[\"\xc3\"]",
        b"[\xc3\xa9]",
        b"[\"\xed\xa0\x80\"]",
    ] {
        assert!(!accepts(text), "{text:?}");
    }
    assert!(accepts("[\"é\"]".as_bytes()));
    // past the first sixteen bytes of a string (where the check goes by memchr): a raw
    // control byte, an escape and the closing quote at every distance
    for at in 0..80 {
        let mut text = format!("[\"{}\"]", "x".repeat(80)).into_bytes();
        let ok = text.clone();
        text[2 + at] = b'\n';
        assert!(!accepts(&text), "{at}");
        assert!(!serde_accepts(&text), "{at}");
        let mut esc = ok.clone();
        esc[2 + at] = b'\\';
        assert_eq!(accepts(&esc), serde_accepts(&esc), "{at}");
        let mut cut = ok.clone();
        cut.truncate(2 + at);
        cut.extend_from_slice(b"\"]");
        assert!(accepts(&cut), "{at}");
    }
}

/// A small deterministic generator (no dependency for tests).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes JSON gives a meaning to, and a few it does not.
const BYTES: &[u8] = b"{}[]\",:\\ \n\t0123456789.-+eEtrufalsn/bx\x00\x1f\x7f\xc3\xa9\xff";

/// One byte at `pos` replaced, removed or inserted.
fn mutate(t: &mut Vec<u8>, pos: usize, rng: &mut Rng) {
    let byte = BYTES[rng.below(BYTES.len())];
    match rng.below(3) {
        0 if pos < t.len() => t[pos] = byte,
        1 if pos < t.len() => {
            t.remove(pos);
        }
        _ => t.insert(pos, byte),
    }
}

fn judged_alike(t: &[u8]) {
    assert_eq!(
        accepts(t),
        serde_accepts(t),
        "{:?}",
        String::from_utf8_lossy(t)
    );
}

#[test]
fn mutations_are_judged_as_serde_judges_them() {
    // every corpus text with one byte replaced, inserted or removed, at every position
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut seen = 0;
    for text in CORPUS {
        let text = text.as_bytes();
        for pos in 0..=text.len() {
            for _ in 0..6 {
                let mut t = text.to_vec();
                mutate(&mut t, pos, &mut rng);
                judged_alike(&t);
                seen += 1;
            }
        }
    }
    // and a few thousand texts with up to four changes each
    for _ in 0..20_000 {
        let mut t = CORPUS[rng.below(CORPUS.len())].as_bytes().to_vec();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(t.len() + 1);
            mutate(&mut t, pos, &mut rng);
        }
        judged_alike(&t);
        seen += 1;
    }
    assert!(seen > 20_000);
}

#[test]
fn values_end_where_they_end() {
    let text = br#"{"a": [1, {"b": "c"}] , "d": 2}"#;
    let mut check = Check::new(text);
    let at = check.member_start(1).unwrap();
    assert_eq!(&text[at..at + 1], b"[");
    let end = check.value(at).unwrap();
    assert_eq!(&text[at..end], br#"[1, {"b": "c"}]"#);
    assert_eq!(check.string(1).unwrap(), (4, false));
    assert_eq!(Check::new(br#""a\nb""#).string(0).unwrap(), (6, true));
}

#[test]
fn depth_costs_no_recursion() {
    for depth in [1, 63, 64, 65, 128, 129, 100_000] {
        let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(Check::new(text.as_bytes()).document().is_ok(), "{depth}");
        let text = format!("{}1{}", "{\"k\":[".repeat(depth), "]}".repeat(depth));
        assert!(Check::new(text.as_bytes()).document().is_ok(), "{depth}");
        // one bracket short, or the wrong one at the deepest level
        let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth - 1));
        assert!(Check::new(text.as_bytes()).document().unwrap_err().eof);
        let text = format!("{{\"k\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        assert!(Check::new(text.as_bytes()).document().is_ok());
        let text = format!("{}1}}{}", "[".repeat(depth), "]".repeat(depth - 1));
        let stop = Check::new(text.as_bytes()).document().unwrap_err();
        assert_eq!((stop.at, stop.eof), (depth + 1, false));
    }
}

#[test]
fn stops_name_line_and_column_as_serde_does() {
    for text in [
        "{\"model\":}",
        "{\"a\":1,\n \"b\":x}",
        "[1,\n2,\n\n tru]",
        "{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"secret\"",
        "[1]  x",
    ] {
        let stop = Check::new(text.as_bytes()).document().unwrap_err();
        let e = serde_json::from_str::<IgnoredAny>(text).unwrap_err();
        assert_eq!(
            stop.line_column(text.as_bytes()),
            (e.line(), e.column()),
            "{text}"
        );
        assert_eq!(stop.eof, e.is_eof(), "{text}");
    }
}
