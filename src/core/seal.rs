//! Sealed values: provider credentials that the configuration carries encrypted, so that a
//! snapshot (in Redis, in the last-known-good file, in the config center) never holds a
//! provider key in clear. Only nodes with the key (`ai_gateway_secret_key`) open them.
//!
//! A sealed value is `v1:<key id>:<data>`:
//! - the key is 32 bytes (written as 64 hex digits); its id is the first 8 hex digits of
//!   the sha256 of those bytes, so a node with several keys knows which one opens a value,
//!   and an error can say which key a value needs without showing any key;
//! - `<data>` is unpadded base64url of `nonce (12 bytes) || ciphertext || tag (16 bytes)`,
//!   AES-256-GCM with `v1:<key id>` as associated data (a value moved under another key id
//!   does not open).
//!
//! Errors say what is wrong and never include the plaintext or a key.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The version prefix of what [`SealKey::seal`] writes.
const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Hex digits of a key id.
pub const KEY_ID_LEN: usize = 8;

/// What a key's text must be (the error of [`SealKey::parse`]).
pub const KEY_TEXT: &str = "must hold 64 hexadecimal digits (a 32-byte key) on one line";

const NOT_SEALED: &str = "not a sealed value (expected v1:<key id>:<data>)";

/// A 32-byte sealing key. `Debug` shows its id only.
#[derive(Clone)]
pub struct SealKey {
    key: [u8; 32],
    id: String,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey").field("id", &self.id).finish()
    }
}

impl SealKey {
    /// A key from its bytes.
    pub fn from_bytes(key: [u8; 32]) -> SealKey {
        let digest = Sha256::digest(key);
        let id = digest[..KEY_ID_LEN / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        SealKey { key, id }
    }

    /// A key written as 64 hex digits on one line (a file's one trailing `\n` or `\r\n` is
    /// allowed). The error says what is wrong with the text, never what it holds.
    pub fn parse(text: &str) -> Result<SealKey, String> {
        let hex = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        let bytes = hex.as_bytes();
        let problem = || KEY_TEXT.to_string();
        if bytes.len() != 64 {
            return Err(problem());
        }
        let mut key = [0u8; 32];
        for (slot, pair) in key.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(problem)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(problem)?;
            *slot = (hi * 16 + lo) as u8;
        }
        Ok(SealKey::from_bytes(key))
    }

    /// The key id: the first 8 hex digits of sha256(key), in every value it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext` with this key and `nonce`. A nonce must never be used twice with
    /// one key: use [`SealKey::seal_random`] unless a fixed output is the point (tests).
    /// Fails only for a plaintext too long for AES-GCM (64 GiB).
    pub fn seal(&self, plaintext: &str, nonce: [u8; NONCE_LEN]) -> Result<String, String> {
        let header = format!("{VERSION}:{}", self.id);
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: header.as_bytes(),
                },
            )
            .map_err(|_| "the value is too long to seal".to_string())?;
        let mut data = Vec::with_capacity(NONCE_LEN + sealed.len());
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&sealed);
        Ok(format!("{header}:{}", URL_SAFE_NO_PAD.encode(&data)))
    }

    /// Seals `plaintext` with a random nonce from the operating system (what the config
    /// center uses). Fails when the system has no randomness to give.
    pub fn seal_random(&self, plaintext: &str) -> Result<String, String> {
        self.seal(plaintext, random_nonce()?)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.key))
    }
}

/// A nonce from the operating system's random source.
pub fn random_nonce() -> Result<[u8; NONCE_LEN], String> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|e| format!("no random nonce: {e}"))?;
    Ok(nonce)
}

/// The parts of a sealed value: key id, nonce || ciphertext || tag.
fn split(text: &str) -> Result<(&str, Vec<u8>), String> {
    let rest = text
        .strip_prefix(VERSION)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or(NOT_SEALED)?;
    let (id, data) = rest.split_once(':').ok_or(NOT_SEALED)?;
    if id.len() != KEY_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(NOT_SEALED.into());
    }
    let data = URL_SAFE_NO_PAD.decode(data).map_err(|_| NOT_SEALED)?;
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(NOT_SEALED.into());
    }
    Ok((id, data))
}

/// Checks that `text` has the form of a sealed value, without opening it (the config parser
/// does this; opening needs the node's keys).
pub fn check_format(text: &str) -> Result<(), String> {
    split(text).map(|_| ())
}

/// The key id a sealed value names, when it has the form of one.
pub fn key_id_of(text: &str) -> Option<&str> {
    split(text).ok().map(|(id, _)| id)
}

/// Opens a sealed value with whichever of `keys` has its key id.
pub fn open(text: &str, keys: &[SealKey]) -> Result<String, String> {
    let (id, data) = split(text)?;
    let Some(key) = keys.iter().find(|k| k.id == id) else {
        let have = if keys.is_empty() {
            "no key".to_string()
        } else {
            keys.iter().map(SealKey::id).collect::<Vec<_>>().join(", ")
        };
        return Err(format!("sealed with key id {id}, this node has {have}"));
    };
    let (nonce, sealed) = data.split_at(NONCE_LEN);
    let header = format!("{VERSION}:{id}");
    let plain = key
        .cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: header.as_bytes(),
            },
        )
        .map_err(|_| format!("does not decrypt with key {id} (tampered or another key)"))?;
    String::from_utf8(plain).map_err(|_| format!("opens with key {id} to bytes that are not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "3f1c9a5e7b2d48e6a0c4f8b1d3e5a7c9f0b2d4e6a8c0e2f4a6b8d0f2e4c6a8b0";
    const KEY_B: &str = "c0ffee00112233445566778899aabbccddeeff00112233445566778899aabbcc";

    fn key(hex: &str) -> SealKey {
        SealKey::parse(hex).unwrap()
    }

    #[test]
    fn round_trip() {
        let a = key(KEY_A);
        for plain in ["sk-provider-key", "", "ключ", &"x".repeat(5000)] {
            let sealed = a.seal_random(plain).unwrap();
            assert!(sealed.starts_with(&format!("v1:{}:", a.id())), "{sealed}");
            assert!(!sealed.contains(plain) || plain.is_empty());
            assert_eq!(open(&sealed, std::slice::from_ref(&a)).unwrap(), plain);
        }
        // random nonces: the same plaintext seals differently each time
        assert_ne!(a.seal_random("k").unwrap(), a.seal_random("k").unwrap());
    }

    #[test]
    fn fixed_nonce_gives_a_fixed_value() {
        let a = key(KEY_A);
        let one = a.seal("sk-provider-key", [7; 12]).unwrap();
        assert_eq!(one, a.seal("sk-provider-key", [7; 12]).unwrap());
        // 12 + 15 + 16 bytes of data: 58 base64url characters
        let data = one.rsplit(':').next().unwrap();
        assert_eq!(data.len(), 58);
        assert!(data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(open(&one, &[a]).unwrap(), "sk-provider-key");
    }

    #[test]
    fn key_ids() {
        let a = key(KEY_A);
        let expected: String = Sha256::digest(a.key)[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(a.id(), expected);
        assert_eq!(a.id().len(), 8);
        // sha256 of 32 zero bytes starts 66687aad
        assert_eq!(SealKey::from_bytes([0; 32]).id(), "66687aad");
        assert_ne!(key(KEY_A).id(), key(KEY_B).id());
        // the same key in upper case, with a line break, is the same key
        assert_eq!(key(&format!("{}\n", KEY_A.to_uppercase())).id(), a.id());
        assert_eq!(key(&format!("{KEY_A}\r\n")).id(), a.id());
    }

    #[test]
    fn key_text_errors_never_show_the_text() {
        let message = "must hold 64 hexadecimal digits (a 32-byte key) on one line";
        for bad in [
            "".to_string(),
            "\n".to_string(),
            KEY_A[..63].to_string(),
            format!("{KEY_A}0"),
            format!("{KEY_A}\n\n"),
            format!(" {KEY_A}"),
            format!("{KEY_A} \n"),
            format!("{}g", &KEY_A[..63]),
            format!("{}\n{}", &KEY_A[..32], &KEY_A[32..]),
        ] {
            let e = SealKey::parse(&bad).unwrap_err();
            assert_eq!(e, message, "{bad:?}");
        }
        let debug = format!("{:?}", key(KEY_A));
        assert!(!debug.contains(&KEY_A[..16]), "{debug}");
        assert!(debug.contains(key(KEY_A).id()), "{debug}");
    }

    #[test]
    fn the_wrong_key_is_named_by_id() {
        let (a, b) = (key(KEY_A), key(KEY_B));
        let sealed = b.seal_random("sk-secret-value").unwrap();
        let e = open(&sealed, std::slice::from_ref(&a)).unwrap_err();
        assert_eq!(
            e,
            format!("sealed with key id {}, this node has {}", b.id(), a.id())
        );
        let e = open(&sealed, &[]).unwrap_err();
        assert_eq!(
            e,
            format!("sealed with key id {}, this node has no key", b.id())
        );
        // a value moved under another key's id does not open with that key
        let moved = sealed.replacen(b.id(), a.id(), 1);
        assert_eq!(
            open(&moved, &[a.clone(), b.clone()]).unwrap_err(),
            format!(
                "does not decrypt with key {} (tampered or another key)",
                a.id()
            )
        );
        assert!(!e.contains("sk-secret-value"));
    }

    #[test]
    fn a_tampered_byte_is_refused() {
        let a = key(KEY_A);
        let sealed = a.seal("sk-secret-value", [1; 12]).unwrap();
        let (head, data) = sealed.rsplit_once(':').unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(data).unwrap();
        // every byte of nonce, ciphertext and tag, flipped one at a time
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            let text = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&changed));
            let e = open(&text, std::slice::from_ref(&a)).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "does not decrypt with key {} (tampered or another key)",
                    a.id()
                ),
                "byte {i}"
            );
        }
        // cut short: the tag no longer matches
        let short = format!(
            "{head}:{}",
            URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1])
        );
        assert!(open(&short, &[a])
            .unwrap_err()
            .starts_with("does not decrypt"));
    }

    #[test]
    fn bad_formats() {
        let a = key(KEY_A);
        let good = a.seal("k", [2; 12]).unwrap();
        let data = good.rsplit(':').next().unwrap();
        let id = a.id();
        for bad in [
            "".to_string(),
            "sk-plain-key".to_string(),
            format!("v2:{id}:{data}"),
            format!("V1:{id}:{data}"),
            format!("v1:{data}"),
            format!("v1:{}:{data}", id.to_uppercase()),
            format!("v1:{}:{data}", &id[..7]),
            format!("v1:{id}0:{data}"),
            format!("v1:{id}:"),
            format!("v1:{id}:{data}="),
            format!(
                "v1:{id}:{}",
                data.replace(|c: char| c.is_ascii_alphanumeric(), "+")
            ),
            format!("v1:{id}:{}", &data[..36]),
            format!("v1:{id}:{data} "),
            format!("v1:{id}:{data}\n"),
        ] {
            assert_eq!(
                open(&bad, std::slice::from_ref(&a)).unwrap_err(),
                NOT_SEALED,
                "{bad:?}"
            );
            assert!(check_format(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_format(&good), Ok(()));
        assert_eq!(key_id_of(&good), Some(id));
        assert_eq!(key_id_of("v1:zz"), None);
    }

    #[test]
    fn two_keys_each_open_what_they_sealed() {
        let (a, b) = (key(KEY_A), key(KEY_B));
        let keys = [a.clone(), b.clone()];
        let by_a = a.seal_random("sealed-by-a").unwrap();
        let by_b = b.seal_random("sealed-by-b").unwrap();
        assert_eq!(open(&by_a, &keys).unwrap(), "sealed-by-a");
        assert_eq!(open(&by_b, &keys).unwrap(), "sealed-by-b");
        // the order of the keys does not matter for opening
        assert_eq!(open(&by_b, &[b, a]).unwrap(), "sealed-by-b");
    }

    /// The sealed values of t/123-keys-expiry-sealed.t, made with the keys of
    /// t/fixtures/seal/ and fixed nonces (`print_test_vectors` writes them again).
    const FIXTURE_A: &str = include_str!("../../t/fixtures/seal/node-a.key");
    const FIXTURE_B: &str = include_str!("../../t/fixtures/seal/node-b.key");
    const VECTORS: [(&str, u8, &str); 3] = [
        ("a", 1, "sk-sealed-provider-key"),
        ("b", 2, "sk-sealed-provider-key"),
        ("a", 3, "sk-sealed\r\nX-Injected: 1"),
    ];

    fn fixture_vectors() -> Vec<(String, &'static str)> {
        let (a, b) = (key(FIXTURE_A), key(FIXTURE_B));
        VECTORS
            .iter()
            .map(|(k, n, plain)| {
                let k = if *k == "a" { &a } else { &b };
                (k.seal(plain, [*n; 12]).unwrap(), *plain)
            })
            .collect()
    }

    #[test]
    fn fixture_vectors_are_the_ones_in_t123() {
        let t = include_str!("../../t/123-keys-expiry-sealed.t");
        let keys = [key(FIXTURE_A), key(FIXTURE_B)];
        for (sealed, plain) in fixture_vectors() {
            assert!(t.contains(&sealed), "t/123 lacks {sealed}");
            assert_eq!(open(&sealed, &keys).unwrap(), plain);
        }
    }

    /// `cargo test --release --locked print_test_vectors -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn print_test_vectors() {
        println!(
            "key ids: a {} b {}",
            key(FIXTURE_A).id(),
            key(FIXTURE_B).id()
        );
        for (sealed, plain) in fixture_vectors() {
            println!("{plain:?}: {sealed}");
        }
    }
}
