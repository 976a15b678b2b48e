//! Series identity: a kind and its label values, packed into fixed-size words so a key can
//! live in shared memory and be compared word by word.

use crate::core::short_text::truncate;

/// What a series counts; each kind has its own label names and value layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A request the gateway handled: `namespace`, `model`, `code`.
    Request = 1,
    /// One attempt at an upstream: `upstream`, `code`.
    Upstream = 2,
    /// A request the gateway answered itself: `namespace`, `reason`.
    Rejection = 3,
    /// Requests in progress: `namespace`.
    InFlight = 4,
    /// Requests a dry-run policy would have refused: `namespace`, `reason`.
    DryRun = 5,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Request,
        Kind::Upstream,
        Kind::Rejection,
        Kind::InFlight,
        Kind::DryRun,
    ];

    pub fn label_names(self) -> &'static [&'static str] {
        match self {
            Kind::Request => &["namespace", "model", "code"],
            Kind::Upstream => &["upstream", "code"],
            Kind::Rejection | Kind::DryRun => &["namespace", "reason"],
            Kind::InFlight => &["namespace"],
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

/// Label values longer than this are cut (at a character boundary).
pub const LABEL_MAX_BYTES: usize = 96;
/// The value every label of an overflow series carries (and `code` carries `"2xx"` etc.).
pub const OVERFLOW_LABEL: &str = "_overflow";

/// Words of a packed key: a kind byte and up to three labels, each followed by a separator.
pub const KEY_WORDS: usize = 40;
const KEY_MAX_BYTES: usize = KEY_WORDS * 8;
const _: () = assert!(3 * (LABEL_MAX_BYTES + 1) < KEY_MAX_BYTES);

/// Ends each label value; never part of UTF-8 text.
const SEPARATOR: u8 = 0xFF;

/// A series key, packed little-endian into words (zero padded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub words: [u64; KEY_WORDS],
    pub len: usize,
    pub hash: u64,
}

impl Key {
    /// The key of `kind` with `values` (missing values are empty, extra ones ignored).
    pub fn new(kind: Kind, values: &[&str]) -> Key {
        let mut key = Key {
            words: [0; KEY_WORDS],
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        };
        key.push(kind as u8);
        for i in 0..kind.label_names().len() {
            let value = values.get(i).copied().unwrap_or("");
            for &b in truncate(value, LABEL_MAX_BYTES).as_bytes() {
                key.push(b);
            }
            key.push(SEPARATOR);
        }
        // zero marks an empty index slot elsewhere; keep hashes non-zero
        key.hash |= 1;
        key
    }

    fn push(&mut self, b: u8) {
        self.words[self.len / 8] |= u64::from(b) << (8 * (self.len % 8));
        self.len += 1;
        // FNV-1a
        self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }

    /// Number of words the key occupies.
    pub fn used_words(&self) -> usize {
        self.len.div_ceil(8)
    }
}

/// Unpacks a key stored as `words` holding `len` bytes.
pub fn decode(words: impl Iterator<Item = u64>, len: usize) -> Option<(Kind, Vec<String>)> {
    let len = len.min(KEY_MAX_BYTES);
    let bytes: Vec<u8> = words
        .flat_map(u64::to_le_bytes)
        .take(len)
        .collect::<Vec<u8>>();
    let (&first, rest) = bytes.split_first()?;
    let kind = Kind::from_byte(first)?;
    let mut values: Vec<String> = rest
        .split(|b| *b == SEPARATOR)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    // the last separator leaves an empty tail
    values.pop();
    (values.len() == kind.label_names().len()).then_some((kind, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(kind: Kind, values: &[&str]) -> (Kind, Vec<String>) {
        let key = Key::new(kind, values);
        decode(key.words.iter().copied(), key.len).expect("decodes")
    }

    #[test]
    fn keys_roundtrip_and_differ_by_every_part() {
        assert_eq!(
            roundtrip(Kind::Request, &["alpha", "gpt-4o", "200"]),
            (
                Kind::Request,
                vec!["alpha".into(), "gpt-4o".into(), "200".into()]
            )
        );
        assert_eq!(
            roundtrip(Kind::InFlight, &[""]),
            (Kind::InFlight, vec![String::new()])
        );
        let a = Key::new(Kind::Request, &["ab", "c", "200"]);
        let b = Key::new(Kind::Request, &["a", "bc", "200"]);
        let c = Key::new(Kind::Rejection, &["ab", "c"]);
        assert_ne!(a, b);
        assert_ne!(a.words, c.words);
        assert_ne!(a.hash, b.hash);
        assert_eq!(a, Key::new(Kind::Request, &["ab", "c", "200"]));
    }

    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        let long = "模".repeat(100); // 3 bytes each
        let (_, values) = roundtrip(Kind::Request, &[&long, &long, &long]);
        for v in &values {
            assert_eq!(v.len(), 96);
            assert!(v.chars().all(|c| c == '模'));
        }
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode([0u64].into_iter(), 0).is_none());
        assert!(decode([0x09u64].into_iter(), 1).is_none());
        let key = Key::new(Kind::Request, &["a", "b", "c"]);
        assert!(decode(key.words.iter().copied(), key.len - 2).is_none());
    }
}
