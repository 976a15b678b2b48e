//! Query arguments (`?limit=50&cursor=...&dry_run=true`) and keyset pagination: a list is
//! ordered by a key, a page ends with `next_cursor`, the key of its last item (opaque to
//! clients), and the next page starts after it. Pages stay right while items come and go.

use serde_json::{json, Value};

use super::error::ApiError;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Decoded `name=value` pairs.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &str) -> Query {
        Query(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean argument: absent is false; `true`/`1` and `false`/`0`.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(_) => Err(ApiError::invalid(
                format!("?{name}"),
                "must be true or false",
            )),
        }
    }

    /// `limit` and `cursor`.
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(
                        "?limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    ))
                }
            },
        };
        let after = match self.get("cursor") {
            None | Some("") => None,
            Some(c) => Some(
                cursor_decode(c)
                    .ok_or_else(|| ApiError::invalid("?cursor", "is not a cursor of this list"))?,
            ),
        };
        Ok(Page { limit, after })
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: usize,
    /// The key of the last item of the previous page.
    pub after: Option<String>,
}

/// A cursor: the key in hex (opaque, URL-safe).
pub fn cursor_encode(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

pub fn cursor_decode(c: &str) -> Option<String> {
    if c.len() % 2 != 0 || c.len() > 2048 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..c.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(c.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// One page of `items` (key, item), already in key order: `{items, next_cursor}`.
pub fn paginate(items: impl IntoIterator<Item = (String, Value)>, page: &Page) -> Value {
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in items {
        if page
            .after
            .as_ref()
            .is_some_and(|a| k.as_str() <= a.as_str())
        {
            continue;
        }
        if out.len() == page.limit {
            more = true;
            break;
        }
        last = Some(k);
        out.push(v);
    }
    json!({
        "items": out,
        "next_cursor": if more { last.map(|k| cursor_encode(&k)) } else { None },
    })
}

/// A page of rows read newest first with one row more than the page (`LIMIT limit + 1`):
/// `{items, next_cursor}`, the cursor being the last shown row's id.
pub fn page_of_rows<T>(
    rows: &[T],
    limit: usize,
    id: impl Fn(&T) -> String,
    view: impl Fn(&T) -> Value,
) -> Value {
    let next = (rows.len() > limit)
        .then(|| {
            rows.get(limit.saturating_sub(1))
                .map(|r| cursor_encode(&id(r)))
        })
        .flatten();
    json!({"items": rows.iter().take(limit).map(view).collect::<Vec<_>>(), "next_cursor": next})
}

/// The id a cursor of a newest-first page names (`None`: the first page).
pub fn before_id<T: std::str::FromStr>(page: &Page) -> Result<Option<T>, ApiError> {
    page.after
        .as_deref()
        .map(|c| {
            c.parse::<T>()
                .map_err(|_| ApiError::invalid("?cursor", "is not a cursor of this list"))
        })
        .transpose()
}

/// A sort key of a number that orders as the number does.
pub fn numeric_key(n: u64) -> String {
    format!("{n:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let q = Query::parse("limit=2&cursor=&dry_run=true&q=a%20b+c&bad=%zz");
        assert_eq!(q.get("q"), Some("a b c"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert!(q.flag("dry_run").unwrap());
        assert!(!q.flag("other").unwrap());
        assert_eq!(
            q.page().unwrap(),
            Page {
                limit: 2,
                after: None
            }
        );
        assert!(Query::parse("limit=0").page().is_err());
        assert!(Query::parse("cursor=zz").page().is_err());
        assert!(Query::parse("dry_run=maybe").flag("dry_run").is_err());
        assert_eq!(Query::parse("x=%4").get("x"), Some("%4"));
    }

    #[test]
    fn pages_follow_the_keys() {
        let items = || ["a", "b", "c", "d", "e"].map(|k| (k.to_string(), Value::from(k)));
        let p = paginate(
            items(),
            &Page {
                limit: 2,
                after: None,
            },
        );
        assert_eq!(p["items"], json!(["a", "b"]));
        let c = p["next_cursor"].as_str().unwrap().to_string();
        let p = paginate(
            items(),
            &Page {
                limit: 2,
                after: cursor_decode(&c),
            },
        );
        assert_eq!(p["items"], json!(["c", "d"]));
        let c = p["next_cursor"].as_str().unwrap().to_string();
        let p = paginate(
            items(),
            &Page {
                limit: 2,
                after: cursor_decode(&c),
            },
        );
        assert_eq!(p["items"], json!(["e"]));
        assert!(p["next_cursor"].is_null());
        // exactly a page's worth: no cursor
        let p = paginate(
            items(),
            &Page {
                limit: 5,
                after: None,
            },
        );
        assert!(p["next_cursor"].is_null());
        assert!(numeric_key(9) < numeric_key(10));
        let rows = [5u64, 4, 3];
        let p = page_of_rows(&rows, 2, |r| r.to_string(), |r| Value::from(*r));
        assert_eq!(p["items"], json!([5, 4]));
        let after = before_id::<u64>(&Page {
            limit: 2,
            after: cursor_decode(p["next_cursor"].as_str().unwrap()),
        });
        assert_eq!(after.unwrap(), Some(4));
        assert!(
            page_of_rows(&rows[..2], 2, |r| r.to_string(), |r| Value::from(*r))["next_cursor"]
                .is_null()
        );
    }
}
