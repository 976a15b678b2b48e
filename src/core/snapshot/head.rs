//! The Redis source's rules, as pure functions: the head `{version, sha256, epoch}` that says
//! which snapshot is current, which heads a node takes, the check of a fetched document
//! against its head, and the last-known-good file (the head, a newline, the document).

use serde_json::Value;

use super::{sha256_hex, Origin, Source};

/// `<prefix>:cfg:head`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub version: u64,
    pub sha256: String,
    pub epoch: String,
}

impl Head {
    /// Parses a head as published (`{"version": 12, "sha256": "<64 hex>", "epoch": "..."}`).
    pub fn parse(bytes: &[u8]) -> Result<Head, String> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("head is not JSON: {e}"))?;
        let obj = v.as_object().ok_or("head is not an object")?;
        let version = obj
            .get("version")
            .and_then(Value::as_u64)
            .filter(|v| *v > 0)
            .ok_or("head.version must be a positive integer")?;
        let sha256 = obj
            .get("sha256")
            .and_then(Value::as_str)
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or("head.sha256 must be 64 hex digits")?
            .to_ascii_lowercase();
        let epoch = match obj.get("epoch") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.len() <= 128 && !s.chars().any(char::is_control) => {
                s.clone()
            }
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err("head.epoch must be a short string".into()),
        };
        Ok(Head {
            version,
            sha256,
            epoch,
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({"version": self.version, "sha256": self.sha256, "epoch": self.epoch})
            .to_string()
    }

    /// Whether `origin` is the snapshot this head names.
    pub fn names(&self, origin: &Origin) -> bool {
        origin.source != Source::File
            && origin.version == self.version
            && origin.epoch == self.epoch
            && origin.sha256 == self.sha256
    }
}

/// What a node does with a head it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Fetch and apply the snapshot it names.
    Take,
    /// It names the snapshot the node serves.
    Current,
    /// A lower version of the node's epoch: ignored.
    Older,
    /// The node's version and epoch with another document: refused (a version is never
    /// reused for other content).
    Conflict,
}

/// Takes a higher version, or any version of a new epoch; a node serving its file takes
/// whatever is published.
pub fn verdict(current: &Origin, head: &Head) -> Verdict {
    if current.source == Source::File || current.epoch != head.epoch {
        return Verdict::Take;
    }
    match head.version.cmp(&current.version) {
        std::cmp::Ordering::Greater => Verdict::Take,
        std::cmp::Ordering::Less => Verdict::Older,
        std::cmp::Ordering::Equal if head.sha256 == current.sha256 => Verdict::Current,
        std::cmp::Ordering::Equal => Verdict::Conflict,
    }
}

/// Checks a fetched document against the head that named it.
pub fn check_document(head: &Head, document: &[u8]) -> Result<(), String> {
    let sha = sha256_hex(document);
    if sha != head.sha256 {
        return Err(format!(
            "snapshot {} has sha256 {sha}, the head says {}",
            head.version, head.sha256
        ));
    }
    Ok(())
}

/// The last-known-good file: the head as one JSON line, then the document.
pub fn lkg_encode(head: &Head, document: &[u8]) -> Vec<u8> {
    let mut out = head.to_json().into_bytes();
    out.push(b'\n');
    out.extend_from_slice(document);
    out
}

/// Reads a last-known-good file back: its head and document (checked against each other).
pub fn lkg_decode(bytes: &[u8]) -> Result<(Head, &[u8]), String> {
    let nl = memchr::memchr(b'\n', bytes).ok_or("no head line")?;
    let head = Head::parse(&bytes[..nl])?;
    let document = &bytes[nl + 1..];
    check_document(&head, document)?;
    Ok((head, document))
}

/// Remembers the last snapshot refused, so a bad snapshot is logged and counted once, not
/// at every poll while it stays published.
#[derive(Debug, Default)]
pub struct Refused {
    last: Option<Head>,
}

impl Refused {
    /// True the first time `head` is refused.
    pub fn first(&mut self, head: &Head) -> bool {
        if self.last.as_ref() == Some(head) {
            return false;
        }
        self.last = Some(head.clone());
        true
    }

    /// Whether `head` was refused already (it is not fetched again).
    pub fn is(&self, head: &Head) -> bool {
        self.last.as_ref() == Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(source: Source, version: u64, epoch: &str, sha: &str) -> Origin {
        Origin {
            source,
            version,
            epoch: epoch.into(),
            sha256: sha.into(),
        }
    }

    fn head(version: u64, epoch: &str, sha: &str) -> Head {
        Head {
            version,
            sha256: sha.into(),
            epoch: epoch.into(),
        }
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn heads_parse_strictly() {
        let h = Head::parse(
            format!(
                r#"{{"version":3,"sha256":"{}","epoch":"e1"}}"#,
                A.to_uppercase()
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(h, head(3, "e1", A), "sha256 kept in lower case");
        let h =
            Head::parse(format!(r#"{{"version":3,"sha256":"{A}","epoch":7}}"#).as_bytes()).unwrap();
        assert_eq!(h.epoch, "7");
        assert_eq!(Head::parse(&h.to_json().into_bytes()).unwrap(), h);
        for bad in [
            "".to_string(),
            "[]".to_string(),
            format!(r#"{{"version":0,"sha256":"{A}"}}"#),
            format!(r#"{{"version":-1,"sha256":"{A}"}}"#),
            format!(r#"{{"version":"3","sha256":"{A}"}}"#),
            r#"{"version":3,"sha256":"abc"}"#.to_string(),
            format!(r#"{{"version":3,"sha256":"{}"}}"#, "g".repeat(64)),
            format!(r#"{{"version":3,"sha256":"{A}","epoch":{{}}}}"#),
            format!(r#"{{"version":3,"sha256":"{A}","epoch":"a\nb"}}"#),
        ] {
            assert!(Head::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn verdicts() {
        let file = origin(Source::File, 0, "", A);
        assert_eq!(verdict(&file, &head(1, "", B)), Verdict::Take);
        let cur = origin(Source::Redis, 5, "e1", A);
        assert_eq!(verdict(&cur, &head(6, "e1", B)), Verdict::Take);
        assert_eq!(verdict(&cur, &head(5, "e1", A)), Verdict::Current);
        assert_eq!(verdict(&cur, &head(5, "e1", B)), Verdict::Conflict);
        assert_eq!(verdict(&cur, &head(4, "e1", B)), Verdict::Older);
        // a new epoch is taken whatever its version
        assert_eq!(verdict(&cur, &head(1, "e2", B)), Verdict::Take);
        let lkg = origin(Source::LastKnownGood, 5, "e1", A);
        assert_eq!(verdict(&lkg, &head(5, "e1", A)), Verdict::Current);
        assert!(head(5, "e1", A).names(&lkg));
        assert!(!head(5, "e1", A).names(&file));
    }

    #[test]
    fn documents_are_checked_against_their_head() {
        let doc = br#"{"namespaces":[]}"#;
        let h = head(2, "e", &sha256_hex(doc));
        assert!(check_document(&h, doc).is_ok());
        let err = check_document(&h, br#"{"namespaces":[ ]}"#).unwrap_err();
        assert!(err.contains("the head says"), "{err}");
    }

    #[test]
    fn last_known_good_round_trips_and_refuses_damage() {
        let doc = br#"{"namespaces":[]}"#;
        let h = head(9, "e", &sha256_hex(doc));
        let file = lkg_encode(&h, doc);
        let (h2, d2) = lkg_decode(&file).unwrap();
        assert_eq!((h2, d2), (h.clone(), &doc[..]));
        let mut cut = file.clone();
        cut.pop();
        assert!(lkg_decode(&cut).is_err(), "truncated");
        assert!(lkg_decode(doc).is_err(), "no head line");
        let mut flipped = file;
        let n = flipped.len();
        flipped[n - 3] ^= 1;
        assert!(lkg_decode(&flipped).is_err(), "a changed byte");
    }

    #[test]
    fn a_refusal_is_reported_once_per_head() {
        let mut r = Refused::default();
        let h = head(3, "e", A);
        assert!(r.first(&h));
        assert!(!r.first(&h));
        assert!(r.is(&h));
        assert!(r.first(&head(4, "e", A)));
        assert!(!r.is(&h));
    }
}
